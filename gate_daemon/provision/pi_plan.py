"""What ``scripts/install-pi`` puts on a gate, as a list of steps: folders, files, links, lines, commands.

The plan is data: the installer (``pi_install``) carries it out, prints it (``--dry-run``) or
writes it into a staging root (``--root``), and ``--uninstall`` is built from the same paths.
Standard library only: the installer runs before the gate's virtualenv exists.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from gate_daemon.provision.pi_target import Target

VENV = "/opt/gate-daemon/.venv"
ETC = "/etc/gate-daemon"
KEYS = "/etc/gate-daemon/keys"
STATE = "/var/lib/gate-daemon"
CONFIG = "/etc/gate-daemon/gate.toml"
BOOT_CONFIG = "/boot/firmware/config.txt"
#: Every file, folder and link the installer wrote, with mode and owner (see docs/INSTALL.md).
RECORD = "/etc/gate-daemon/installed.tsv"
SERVICE = "gate-daemon.service"
SCREEN = "gate-screen.service"
STRICT_GPIOD = "dtparam=strict_gpiod"
#: The comment the installer writes above its config.txt line; --uninstall removes both.
BOOT_MARKER = "# gate-daemon (scripts/install-pi): released GPIO pins become inputs"

#: Debian packages on every target: the venv, the USB (evdev) and serial (pyserial) scanners.
PACKAGES = ("python3-venv", "python3-evdev", "python3-serial")
#: Raspberry Pi OS's own: the camera (picamera2) and gpiozero's pin backend (lgpio).
PI_PACKAGES = ("python3-picamera2", "python3-lgpio")

MODULES_LOAD = (
    "# gate-daemon: drivers for USB serial barcode scanners (hw/99-gate-scanner.rules)\ncdc_acm\nusbserial\n"
)


@dataclass(frozen=True)
class Folder:
    """A directory with its mode and owner; never removed by --uninstall (it may hold the ledger)."""

    path: str
    mode: int
    owner: str = "root"
    group: str = "root"


@dataclass(frozen=True)
class File:
    """A file with its content and mode, owned by root; ``keep_edits``: written only when absent."""

    path: str
    content: bytes
    mode: int = 0o644
    keep_edits: bool = False


@dataclass(frozen=True)
class Link:
    """A symbolic link to ``target``."""

    path: str
    target: str


@dataclass(frozen=True)
class Line:
    """A line that ``path`` must hold once; added under ``marker`` when missing (never twice)."""

    path: str
    line: str
    marker: str


@dataclass(frozen=True)
class Run:
    """A command run on the gate (printed, never run, under --root and --dry-run)."""

    argv: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class Remove:
    """A file or link --uninstall removes (a missing one is no error)."""

    path: str


@dataclass(frozen=True)
class Unline:
    """The line ``Line`` added, with its marker: --uninstall takes out both, and only that pair."""

    path: str
    line: str
    marker: str


Step = Folder | File | Link | Line | Run | Remove | Unline


@dataclass(frozen=True)
class Options:
    """What the installer was asked for and found on the target, beyond its OS."""

    source: Path  # the checkout it runs from: systemd/, hw/, config/ and the package
    screen: bool  # also the gate screen's kiosk unit (a user unit, enabled for every user)
    missing_packages: tuple[str, ...]  # Debian packages not installed yet
    venv_exists: bool
    configured: bool  # /etc/gate-daemon/gate.toml exists: enable and (re)start the service
    boot_config: bool  # /boot/firmware/config.txt exists (a Raspberry Pi)


def packages(target: Target) -> tuple[str, ...]:
    """The Debian packages the gate needs on this target."""
    return PACKAGES + (PI_PACKAGES if target.raspberry_pi else ())


def _shipped(options: Options, relative: str) -> bytes:
    return (options.source / relative).read_bytes()


def files(options: Options) -> list[File]:
    """Every file the installer writes (the same list --uninstall removes)."""
    out = [
        File("/etc/sysusers.d/gate-daemon.conf", _shipped(options, "systemd/gate-daemon.sysusers")),
        File(f"/etc/systemd/system/{SERVICE}", _shipped(options, "systemd/gate-daemon.service")),
        File(
            "/etc/udev/rules.d/99-gate-scanner.rules",
            _shipped(options, "hw/99-gate-scanner.rules"),
            keep_edits=True,
        ),
        File("/etc/modules-load.d/gate-scanner.conf", MODULES_LOAD.encode()),
        File(f"{ETC}/gate.example.toml", _shipped(options, "config/gate.example.toml")),
    ]
    if options.screen:
        out.append(File(f"/etc/systemd/user/{SCREEN}", _shipped(options, "systemd/gate-screen.service")))
    return out


def folders() -> list[Folder]:
    """The folders the gate uses; the service's user owns the state folder."""
    return [
        Folder("/opt/gate-daemon", 0o755),
        Folder(ETC, 0o755),
        # Keys reach the service as credentials: systemd reads them as root (LoadCredential).
        Folder(KEYS, 0o700),
        Folder(STATE, 0o750, "gate-daemon", "gate-daemon"),
        Folder(f"{STATE}/incoming", 0o750, "gate-daemon", "gate-daemon"),
    ]


def install_plan(target: Target, options: Options) -> list[Step]:
    """Every step of an install, in order; what is already in place is a step that changes nothing."""
    steps: list[Step] = []
    if options.missing_packages:
        steps.append(Run(("apt-get", "update"), "the package lists"))
        steps.append(
            Run(
                ("apt-get", "install", "-y", "--no-install-recommends", *options.missing_packages),
                "the Debian packages the gate uses",
            )
        )
    if not options.venv_exists:
        steps.append(Run(("python3", "-m", "venv", "--system-site-packages", VENV), "the gate's virtualenv"))
    extra = "[pi]" if target.raspberry_pi else ""
    steps.append(
        Run(
            (f"{VENV}/bin/pip", "install", "--disable-pip-version-check", f"{options.source}{extra}"),
            "gate-daemon from this checkout into the virtualenv",
        )
    )
    every_file = files(options)
    sysusers = every_file[0]
    steps.append(sysusers)
    steps.append(Run(("systemd-sysusers", sysusers.path), "the gate-daemon user and group"))
    steps.extend(folders())
    steps.extend(every_file[1:])
    steps.append(Link("/usr/local/bin/gatectl", f"{VENV}/bin/gatectl"))
    if options.boot_config:
        steps.append(Line(BOOT_CONFIG, STRICT_GPIOD, BOOT_MARKER))
    steps.append(Run(("systemctl", "daemon-reload"), "systemd reads the unit"))
    steps.append(Run(("udevadm", "control", "--reload"), "udev reads the scanner rule"))
    # Not --now: stopping the console's login would end an install run from that console.
    steps.append(
        Run(("systemctl", "disable", "getty@tty1.service"), "no console login for a scanner to type into")
    )
    if options.screen:
        steps.append(
            Run(("systemctl", "--global", "enable", SCREEN), "the gate screen's kiosk at desktop login")
        )
    if options.configured:
        steps.append(Run(("systemctl", "enable", SERVICE), "the gate starts at boot"))
        steps.append(Run(("systemctl", "restart", SERVICE), "the gate runs this version"))
    return steps


def uninstall_plan(options: Options, present: set[str]) -> list[Step]:
    """Every step of --uninstall: what the installer added goes; the ledger, config and keys stay.

    ``present``: the paths among the installer's files that exist on the target.
    """
    steps: list[Step] = []
    if f"/etc/systemd/system/{SERVICE}" in present:
        steps.append(Run(("systemctl", "disable", "--now", SERVICE), "the gate stops"))
    if f"/etc/systemd/user/{SCREEN}" in present:
        steps.append(Run(("systemctl", "--global", "disable", SCREEN), "no kiosk at desktop login"))
    steps.extend(Remove(item.path) for item in files(replace(options, screen=True)))
    steps.append(Remove("/usr/local/bin/gatectl"))
    if options.boot_config:
        steps.append(Unline(BOOT_CONFIG, STRICT_GPIOD, BOOT_MARKER))
    steps.append(Run(("systemctl", "enable", "getty@tty1.service"), "the console login is back"))
    steps.append(Run(("systemctl", "daemon-reload"), "systemd forgets the unit"))
    steps.append(Run(("udevadm", "control", "--reload"), "udev forgets the scanner rule"))
    if options.venv_exists:
        steps.append(Run(("rm", "-rf", VENV), "the gate's virtualenv"))
    steps.append(Remove(RECORD))
    return steps


#: What --uninstall keeps, and why (printed at its end).
KEPT = (
    (STATE, "the ledger: every scan this gate recorded"),
    (CONFIG, "the gate's config"),
    (KEYS, "the gate's keys"),
    ("the gate-daemon user", "it owns the ledger's files"),
    ("the Debian packages", "other software may use them"),
)
