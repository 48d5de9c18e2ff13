"""``scripts/install-pi`` run for real, as a process, into a staging root (``--root``).

The staged root holds what a fresh 64-bit Raspberry Pi OS has that the installer reads
(os-release, rpi-issue, /boot/firmware/config.txt); every file, folder, mode and owner it
installs is checked against its record and the shipped files.
"""

from __future__ import annotations

import grp
import hashlib
import io
import os
import pwd
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gate_daemon.provision.pi_install import Installer, InstallFailed, missing_packages
from gate_daemon.provision.pi_plan import File, Folder, Run
from gate_daemon.provision.pi_target import InstallRefused, parse_os_release
from tests.test_deployment_files import directives

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "install-pi"
PI_OS = (
    'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
    "ID=debian\nVERSION_CODENAME=bookworm\n"
)
BOOT = "# For more options and information see\n# http://rptl.io/configtxt\ndtparam=audio=on\ncamera_auto_detect=1\n"
STRICT = "dtparam=strict_gpiod"

#: What the installer must install: path -> (kind, mode, owner, group, shipped source or None).
EXPECTED = {
    "/etc/sysusers.d/gate-daemon.conf": ("file", 0o644, "root", "root", "systemd/gate-daemon.sysusers"),
    "/etc/systemd/system/gate-daemon.service": ("file", 0o644, "root", "root", "systemd/gate-daemon.service"),
    "/etc/udev/rules.d/99-gate-scanner.rules": ("file", 0o644, "root", "root", "hw/99-gate-scanner.rules"),
    "/etc/modules-load.d/gate-scanner.conf": ("file", 0o644, "root", "root", None),
    "/etc/gate-daemon/gate.example.toml": ("file", 0o644, "root", "root", "config/gate.example.toml"),
    "/opt/gate-daemon": ("folder", 0o755, "root", "root", None),
    "/etc/gate-daemon": ("folder", 0o755, "root", "root", None),
    "/etc/gate-daemon/keys": ("folder", 0o700, "root", "root", None),
    "/var/lib/gate-daemon": ("folder", 0o750, "gate-daemon", "gate-daemon", None),
    "/var/lib/gate-daemon/incoming": ("folder", 0o750, "gate-daemon", "gate-daemon", None),
    "/usr/local/bin/gatectl": ("link", None, "root", "root", None),
    "/boot/firmware/config.txt": ("line", None, "root", "root", None),
}


def stage(root: Path, os_release: str = PI_OS, *, pi: bool = True, boot: str = BOOT) -> Path:
    """A staging root with what the installer reads of a fresh OS."""
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text(os_release)
    if pi:
        (root / "etc/rpi-issue").write_text("Raspberry Pi reference 2024-11-19\n")
        (root / "boot/firmware").mkdir(parents=True)
        (root / "boot/firmware/config.txt").write_text(boot)
    return root


def install_pi(root: Path, *args: str, arch: str = "arm64") -> subprocess.CompletedProcess[str]:
    """The installer as a process, on the staging root."""
    return subprocess.run(
        [str(SCRIPT), "--root", str(root), "--arch", arch, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def tree(root: Path) -> dict[str, tuple[int, str]]:
    """Every path under ``root``: its mode and its content's hash (a link: its target)."""
    out: dict[str, tuple[int, str]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            what = "-> " + os.readlink(path)
        elif stat.S_ISDIR(info.st_mode):
            what = "folder"
        else:
            what = hashlib.sha256(path.read_bytes()).hexdigest()
        out["/" + path.relative_to(root).as_posix()] = (stat.S_IMODE(info.st_mode), what)
    return out


def record(root: Path) -> dict[str, list[str]]:
    """The installer's record, by path: kind, mode, owner, group, content."""
    lines = (root / "etc/gate-daemon/installed.tsv").read_text().splitlines()
    assert lines[0].startswith("#")
    return {fields[0]: fields[1:] for fields in (line.split("\t") for line in lines[1:])}


@pytest.fixture
def staged(tmp_path: Path) -> Path:
    return stage(tmp_path / "root")


def test_the_install_puts_every_file_with_its_mode_and_owner(staged: Path) -> None:
    done = install_pi(staged)
    assert done.returncode == 0, done.stderr
    assert "Raspberry Pi OS" in done.stdout.splitlines()[0]
    held = record(staged)
    assert set(held) == set(EXPECTED)
    for path, (kind, mode, owner, group, source) in EXPECTED.items():
        on_disk = staged / path.lstrip("/")
        assert held[path][:4] == [kind, "-" if mode is None else f"{mode:04o}", owner, group], path
        if kind == "folder":
            assert on_disk.is_dir() and not on_disk.is_symlink(), path
            assert stat.S_IMODE(on_disk.stat().st_mode) == mode, path
        elif kind == "file":
            assert stat.S_IMODE(on_disk.lstat().st_mode) == mode, path
            assert held[path][4] == "sha256:" + hashlib.sha256(on_disk.read_bytes()).hexdigest(), path
            if source is not None:
                assert on_disk.read_bytes() == (ROOT / source).read_bytes(), path
    assert os.readlink(staged / "usr/local/bin/gatectl") == "/opt/gate-daemon/.venv/bin/gatectl"
    modules = (staged / "etc/modules-load.d/gate-scanner.conf").read_text().split()
    assert {"cdc_acm", "usbserial"} <= set(modules)
    boot = (staged / "boot/firmware/config.txt").read_text()
    assert boot.startswith(BOOT) and boot.splitlines()[-1] == STRICT
    # No gate.toml of the example's names: enrollment writes it (the example is beside it).
    assert not (staged / "etc/gate-daemon/gate.toml").exists()


def test_the_commands_it_would_run_are_printed_in_order(staged: Path) -> None:
    out = install_pi(staged).stdout
    wanted = [
        "apt-get install -y --no-install-recommends python3-venv python3-evdev python3-serial "
        "python3-picamera2 python3-lgpio",
        "python3 -m venv --system-site-packages /opt/gate-daemon/.venv",
        f"/opt/gate-daemon/.venv/bin/pip install --disable-pip-version-check '{ROOT}[pi]'",
        "systemd-sysusers /etc/sysusers.d/gate-daemon.conf",
        "systemctl daemon-reload",
        "udevadm control --reload",
        "systemctl disable getty@tty1.service",
    ]
    runs = [
        line.removeprefix("would run").strip() for line in out.splitlines() if line.startswith("would run")
    ]
    found = [next(i for i, line in enumerate(runs) if line.startswith(command)) for command in wanted]
    assert found == sorted(found)
    assert "disable --now getty" not in out  # the console an install may run from stays up
    assert "next             sudo gatectl enroll TOKEN" in out
    assert "systemctl enable gate-daemon" not in out  # not enrolled yet: nothing to start


def test_twice_is_the_same_tree_and_one_config_line(staged: Path) -> None:
    assert install_pi(staged).returncode == 0
    first = tree(staged)
    again = install_pi(staged)
    assert again.returncode == 0, again.stderr
    assert tree(staged) == first
    assert (staged / "boot/firmware/config.txt").read_text().count(STRICT) == 1
    changes = [
        line for line in again.stdout.splitlines() if line.startswith(("write ", "make ", "link ", "add "))
    ]
    assert changes == []


def test_a_line_the_tech_wrote_is_not_added_again_nor_removed(tmp_path: Path) -> None:
    boot = BOOT + "dtparam=strict_gpiod\n"
    root = stage(tmp_path / "root", boot=boot)
    assert install_pi(root).returncode == 0
    assert (root / "boot/firmware/config.txt").read_text() == boot
    assert install_pi(root, "--uninstall").returncode == 0
    assert (root / "boot/firmware/config.txt").read_text() == boot


def test_an_edited_scanner_rule_is_kept(staged: Path) -> None:
    assert install_pi(staged).returncode == 0
    rule = staged / "etc/udev/rules.d/99-gate-scanner.rules"
    edited = rule.read_text().replace("VVVV", "0c2e").replace("PPPP", "0b61")
    rule.write_text(edited)
    again = install_pi(staged)
    assert again.returncode == 0
    assert rule.read_text() == edited
    assert "keep             /etc/udev/rules.d/99-gate-scanner.rules" in again.stdout


def test_a_dry_run_prints_every_step_and_writes_nothing(staged: Path) -> None:
    before = tree(staged)
    done = install_pi(staged, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert tree(staged) == before
    for path, (kind, *_rest) in EXPECTED.items():
        verb = {
            "file": "would write",
            "folder": "would make",
            "link": "would link",
            "line": "would add line",
        }[kind]
        assert f"{verb:<16} {path}" in done.stdout, path


def test_uninstall_removes_what_it_added_and_keeps_the_ledger_config_and_keys(staged: Path) -> None:
    assert install_pi(staged, "--screen").returncode == 0
    assert (staged / "etc/systemd/user/gate-screen.service").read_bytes() == (
        ROOT / "systemd/gate-screen.service"
    ).read_bytes()
    ledger = staged / "var/lib/gate-daemon/ledger.sqlite"
    with sqlite3.connect(ledger) as db:
        db.execute("CREATE TABLE scans (id TEXT)")
        db.execute("INSERT INTO scans VALUES ('kept')")
    db.close()
    (staged / "etc/gate-daemon/gate.toml").write_text('[gate]\nid = "north-3"\n')
    (staged / "etc/gate-daemon/keys/gate.key").write_text("secret\n")
    done = install_pi(staged, "--uninstall")
    assert done.returncode == 0, done.stderr
    for path, (kind, *_rest) in EXPECTED.items():
        if kind in ("file", "link"):
            assert not (staged / path.lstrip("/")).is_symlink()
            assert not (staged / path.lstrip("/")).exists(), path
    assert not (staged / "etc/systemd/user/gate-screen.service").exists()
    assert not (staged / "etc/gate-daemon/installed.tsv").exists()
    assert (staged / "boot/firmware/config.txt").read_text() == BOOT
    with sqlite3.connect(ledger) as db:
        assert db.execute("SELECT id FROM scans").fetchall() == [("kept",)]
    db.close()
    assert (staged / "etc/gate-daemon/gate.toml").read_text() == '[gate]\nid = "north-3"\n'
    assert (staged / "etc/gate-daemon/keys/gate.key").read_text() == "secret\n"
    out = done.stdout
    assert "systemctl disable --now gate-daemon.service" in out
    assert "systemctl --global disable gate-screen.service" in out
    assert "systemctl enable getty@tty1.service" in out
    assert "kept             /var/lib/gate-daemon" in out


def test_an_enrolled_gate_is_enabled_and_restarted(staged: Path) -> None:
    (staged / "etc/gate-daemon").mkdir(parents=True)
    (staged / "etc/gate-daemon/gate.toml").write_text('[gate]\nid = "north-3"\n')
    done = install_pi(staged)
    assert done.returncode == 0, done.stderr
    assert "systemctl enable gate-daemon.service" in done.stdout
    assert "systemctl restart gate-daemon.service" in done.stdout
    assert "gatectl enroll" not in done.stdout
    assert (staged / "etc/gate-daemon/gate.toml").read_text() == '[gate]\nid = "north-3"\n'


@pytest.mark.parametrize(
    ("os_release", "arch", "words"),
    [
        (PI_OS, "armhf", ["32-bit", "zxing-cpp", "armhf"]),
        (
            'PRETTY_NAME="Raspbian GNU/Linux 12 (bookworm)"\nID=raspbian\nVERSION_CODENAME=bookworm\n',
            "armhf",
            ["32-bit"],
        ),
        (
            'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n',
            "arm64",
            ["unknown OS", "Ubuntu 24.04.1 LTS"],
        ),
        (
            'PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nID=debian\nVERSION_CODENAME=bullseye\n',
            "arm64",
            ["bullseye", "Python 3.11"],
        ),
        (PI_OS, "riscv64", ["unknown architecture", "riscv64"]),
        ("ID=debian\nthis is not an os-release line\n", "arm64", ["os-release:2", "not a KEY=value line"]),
    ],
)
def test_an_os_it_does_not_know_is_refused_by_name_and_nothing_is_written(
    tmp_path: Path, os_release: str, arch: str, words: list[str]
) -> None:
    root = stage(tmp_path / "root", os_release)
    before = tree(root)
    done = install_pi(root, arch=arch)
    assert done.returncode == 1
    assert done.stderr.startswith("InstallRefused: "), done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in done.stderr, word
    assert done.stdout == ""
    assert tree(root) == before


def test_no_os_release_is_an_unknown_os(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    done = install_pi(tmp_path / "root")
    assert done.returncode == 1 and "InstallRefused: unknown OS: no " in done.stderr
    assert list((tmp_path / "root").iterdir()) == []


def test_arch_stands_in_only_for_a_staged_root() -> None:
    done = subprocess.run(
        [str(SCRIPT), "--arch", "arm64", "--dry-run"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert "InstallRefused: --arch only stands in for a staged OS" in done.stderr


def test_the_installer_needs_nothing_but_the_standard_library() -> None:
    # -S: no site-packages at all, so any third-party import would fail here.
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); import gate_daemon.provision.pi_install"
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


@given(st.text(max_size=300))
def test_any_os_release_text_parses_or_is_refused_by_line(text: str) -> None:
    try:
        fields = parse_os_release(text, "os-release")
    except InstallRefused as exc:
        assert str(exc).startswith("os-release:")
    else:
        assert all(isinstance(value, str) for value in fields.values())


def quoted(value: str) -> str:
    """A value in double quotes, as os-release writes one with a quote or backslash in it."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@given(
    st.dictionaries(
        st.from_regex(r"[A-Z][A-Z_0-9]{0,15}", fullmatch=True),
        st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=40),
        max_size=6,
    )
)
def test_quoted_values_read_back(fields: dict[str, str]) -> None:
    text = "".join(f"{key}={quoted(value)}\n" for key, value in fields.items())
    assert parse_os_release(text, "os-release") == fields


def test_the_installed_unit_loads_the_gate_keys_from_the_folder_the_installer_makes(staged: Path) -> None:
    assert install_pi(staged).returncode == 0
    unit = directives((staged / "etc/systemd/system/gate-daemon.service").read_text())
    sources = dict(value.split(":", 1) for value in unit["LoadCredential"])
    # What gatectl enroll writes (docs/ENROLL.md) and the config names under ${CREDENTIALS_DIRECTORY}.
    assert sources == {
        "manifest-signer.pub": "/etc/gate-daemon/keys/manifest-signer.pub",
        "gate.key": "/etc/gate-daemon/keys/gate.key",
    }
    assert record(staged)["/etc/gate-daemon/keys"][:2] == ["folder", "0700"]


def test_a_failing_command_stops_the_install_by_name(tmp_path: Path) -> None:
    out = io.StringIO()
    installer = Installer(root=tmp_path, live=True, dry_run=False, out=out)
    later = File("/etc/later.conf", b"x\n")
    with pytest.raises(InstallFailed, match=r"^false exited with status 1$"):
        installer.carry_out([Run(("true",), "fine"), Run(("false",), "fails"), later])
    assert not (tmp_path / "etc/later.conf").exists()
    assert "run              true   # fine" in out.getvalue()


def test_a_missing_program_is_named(tmp_path: Path) -> None:
    installer = Installer(root=tmp_path, live=True, dry_run=False, out=io.StringIO())
    with pytest.raises(InstallFailed, match="no-such-program-here"):
        installer.carry_out([Run(("no-such-program-here",), "missing")])


@pytest.mark.skipif(os.geteuid() != 0, reason="setting an owner needs root")
def test_on_the_gate_itself_folders_get_their_owner(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid).gr_name
    installer = Installer(root=tmp_path, live=True, dry_run=False, out=io.StringIO())
    installer.carry_out([Folder("/var/lib/ledger", 0o750, "nobody", group)])
    info = (tmp_path / "var/lib/ledger").stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (nobody.pw_uid, nobody.pw_gid, 0o750)
    with pytest.raises(InstallFailed, match="no user or group gate-nobody-here"):
        installer.carry_out([Folder("/var/lib/other", 0o750, "gate-nobody-here", "gate-nobody-here")])


def test_something_else_where_a_file_or_folder_goes_is_named_and_left(staged: Path) -> None:
    (staged / "etc/systemd/system/gate-daemon.service").mkdir(parents=True)
    (staged / "var/lib").mkdir(parents=True)
    done = install_pi(staged)
    assert done.returncode == 1
    assert done.stderr == (
        "InstallFailed: /etc/systemd/system/gate-daemon.service exists and is not a regular file; "
        "move it away and run again\n"
    )
    assert (staged / "etc/systemd/system/gate-daemon.service").is_dir()


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a Debian machine")
def test_missing_packages_are_the_ones_dpkg_does_not_hold() -> None:
    assert missing_packages(["dpkg", "gate-daemon-no-such-package"], live=True) == (
        "gate-daemon-no-such-package",
    )


def test_a_file_where_a_folder_should_be_is_named_without_a_traceback(staged: Path) -> None:
    (staged / "etc/udev").write_text("not a folder\n")
    done = install_pi(staged)
    assert done.returncode == 1
    assert done.stderr.startswith("InstallFailed: ")
    assert "/etc/udev/rules.d/99-gate-scanner.rules" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers is not installed")
def test_the_installed_sysusers_file_makes_every_owner_and_group_the_unit_names(tmp_path: Path) -> None:
    root = stage(tmp_path / "root", pi=False)  # plain Debian: no gpio group of its own
    assert install_pi(root, arch="amd64").returncode == 0
    made = subprocess.run(
        ["systemd-sysusers", f"--root={root}"], capture_output=True, text=True, timeout=60, check=False
    )
    assert made.returncode == 0, made.stderr
    users = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}
    groups = {line.split(":")[0] for line in (root / "etc/group").read_text().splitlines()}
    assert users["gate-daemon"][5:] == ["/var/lib/gate-daemon", "/usr/sbin/nologin"]
    owners = {(fields[2], fields[3]) for fields in record(root).values()}
    assert {owner for owner, _ in owners} - {"root"} <= set(users)
    assert {group for _, group in owners} - {"root"} <= groups
    unit = directives((root / "etc/systemd/system/gate-daemon.service").read_text())
    assert "gpio" in unit["SupplementaryGroups"][0].split() and "gpio" in groups
