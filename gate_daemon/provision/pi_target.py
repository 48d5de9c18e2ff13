"""The machine ``scripts/install-pi`` installs onto: its OS and architecture, or why not.

Standard library only: the installer runs before the gate's virtualenv exists.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from gate_daemon.errors import GateError

#: Debian releases the gate runs on (Python 3.11 or newer), by codename.
KNOWN_RELEASES = {"bookworm": "12", "trixie": "13"}

#: Architectures with wheels for every dependency (zxing-cpp above all).
KNOWN_ARCHES = ("arm64", "amd64")

#: 32-bit architectures, refused with the reason.
THIRTY_TWO_BIT = ("armhf", "armel", "i386")

#: The largest os-release the installer reads (the real one is under 1 kB).
OS_RELEASE_LIMIT = 64 * 1024


class InstallRefused(GateError):
    """The installer will not install here: an unknown or 32-bit OS, or a bad request; says why."""


@dataclass(frozen=True)
class Target:
    """What the installer found: the OS by name, its release, architecture, and whether it is a Pi."""

    name: str  # "Raspberry Pi OS" or "Debian"
    codename: str  # "bookworm"
    arch: str  # "arm64"
    raspberry_pi: bool  # Raspberry Pi OS: its packages (picamera2, lgpio) and /boot/firmware/config.txt

    def describe(self) -> str:
        """One line for the installer's first output line."""
        release = f"{KNOWN_RELEASES[self.codename]} ({self.codename})"
        if self.raspberry_pi:
            return f"{self.name}, Debian {release}, {self.arch}"
        return f"{self.name} {release}, {self.arch}"


def parse_os_release(text: str, where: str) -> dict[str, str]:
    """The ``KEY=value`` pairs of an os-release file (shell quoting); a bad line is named."""
    fields: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.replace("_", "").isalnum() or not key.isascii():
            raise InstallRefused(f"{where}:{number}: not a KEY=value line: {line[:80]!r}")
        try:
            words = shlex.split(value, posix=True)
        except ValueError as exc:
            raise InstallRefused(f"{where}:{number}: {key}: {exc}") from None
        fields[key] = " ".join(words)
    return fields


def read_os_release(root: Path) -> dict[str, str]:
    """``etc/os-release`` (or ``usr/lib/os-release``) under ``root``, parsed."""
    for relative in ("etc/os-release", "usr/lib/os-release"):
        path = root / relative
        try:
            data = path.read_bytes()[:OS_RELEASE_LIMIT]
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise InstallRefused(f"cannot read {path}: {exc.strerror}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InstallRefused(f"{path}: not UTF-8 text") from None
        return parse_os_release(text, str(path))
    raise InstallRefused(
        f"unknown OS: no {root / 'etc/os-release'}; the installer knows Debian and Raspberry Pi OS"
    )


def identify(fields: dict[str, str], arch: str, *, rpi_issue: bool) -> Target:
    """Decide whether the installer knows this OS and architecture; refuse with the reason if not.

    ``rpi_issue``: the image has ``/etc/rpi-issue``, as Raspberry Pi OS images do.
    """
    os_id = fields.get("ID", "")
    pretty = fields.get("PRETTY_NAME") or fields.get("NAME") or os_id or "an OS without a name"
    codename = fields.get("VERSION_CODENAME", "")
    if os_id == "raspbian" or arch in THIRTY_TWO_BIT:
        raise InstallRefused(
            f"32-bit OS ({pretty}, {arch}): zxing-cpp, the QR decoder, has no wheel for 32-bit ARM; "
            "install Raspberry Pi OS (64-bit) or Debian arm64"
        )
    if os_id != "debian":
        raise InstallRefused(
            f"unknown OS: {pretty} (ID={os_id or '?'}); the installer knows Debian 12 and 13 "
            "and Raspberry Pi OS (64-bit)"
        )
    if codename not in KNOWN_RELEASES:
        known = ", ".join(f"{name} ({number})" for name, number in KNOWN_RELEASES.items())
        raise InstallRefused(
            f"unknown Debian release: {pretty} (VERSION_CODENAME={codename or '?'}); "
            f"gate-daemon needs Python 3.11 or newer: {known}"
        )
    if arch not in KNOWN_ARCHES:
        raise InstallRefused(f"unknown architecture {arch!r}: the installer knows {', '.join(KNOWN_ARCHES)}")
    name = "Raspberry Pi OS" if rpi_issue else "Debian"
    return Target(name=name, codename=codename, arch=arch, raspberry_pi=rpi_issue)


def detect(root: Path, arch: str) -> Target:
    """The target under ``root`` (``/`` for this machine) with the given dpkg architecture."""
    return identify(read_os_release(root), arch, rpi_issue=(root / "etc/rpi-issue").exists())
