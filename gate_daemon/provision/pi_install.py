"""``scripts/install-pi``: install a gate on Raspberry Pi OS (64-bit) or Debian, or take it off again.

One line of output per step (docs/INSTALL.md). ``--dry-run`` prints every step and changes
nothing; ``--root DIR`` writes the files into a staging root and prints the commands it would
run there (apt-get, systemd-sysusers, systemctl), so that CI can check every file, mode and
owner; ``--uninstall`` removes what the installer added and keeps the ledger, config and keys.
Standard library only: it runs before the gate's virtualenv exists.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import grp
import hashlib
import os
import pwd
import shlex
import stat
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from gate_daemon.errors import GateError, run_command
from gate_daemon.files import write_atomic
from gate_daemon.provision import pi_plan
from gate_daemon.provision.pi_plan import File, Folder, Line, Link, Options, Remove, Run, Step, Unline
from gate_daemon.provision.pi_target import InstallRefused, Target, detect

#: The checkout this module runs from: systemd/, hw/, config/ and pyproject.toml.
SOURCE = Path(__file__).resolve().parents[2]


class InstallFailed(GateError):
    """A step of the install failed on the gate: the command or file, and what it said."""


@dataclass
class Installer:
    """Carries out a plan under ``root``: for real (``live``), into a staging root, or only printed."""

    root: Path
    live: bool  # root is this machine's /: commands run and owners are set
    dry_run: bool
    out: TextIO
    record: list[str] = field(default_factory=list)
    added_line: bool = False

    def at(self, path: str) -> Path:
        """Where a target path is under the root."""
        return self.root / path.lstrip("/")

    def say(self, verb: str, text: str, *, change: bool = True) -> None:
        """One line of output; a change not made (dry run) says "would"."""
        if change and self.dry_run:
            verb = f"would {verb}"
        print(f"{verb:<16} {text}", file=self.out, flush=True)

    def carry_out(self, steps: Sequence[Step]) -> None:
        """Every step in order; the first failure stops the rest, named by its path."""
        for step in steps:
            try:
                self._one(step)
            except OSError as exc:
                where = shlex.join(step.argv) if isinstance(step, Run) else step.path
                raise InstallFailed(f"{where}: {exc.strerror or exc}") from None

    def _one(self, step: Step) -> None:
        if isinstance(step, Run):
            self.run(step)
        elif isinstance(step, Folder):
            self.folder(step)
        elif isinstance(step, File):
            self.file(step)
        elif isinstance(step, Link):
            self.link(step)
        elif isinstance(step, Line):
            self.line(step)
        elif isinstance(step, Unline):
            self.unline(step)
        else:
            self.remove(step)

    def run(self, step: Run) -> None:
        """A command: run on the gate itself, printed otherwise."""
        text = f"{shlex.join(step.argv)}   # {step.why}"
        if not self.live or self.dry_run:
            print(f"{'would run':<16} {text}", file=self.out, flush=True)
            return
        self.say("run", text)
        try:
            done = subprocess.run(step.argv, check=False)
        except OSError as exc:
            raise InstallFailed(f"{step.argv[0]}: {exc.strerror}") from None
        if done.returncode != 0:
            raise InstallFailed(f"{shlex.join(step.argv)} exited with status {done.returncode}")

    def folder(self, step: Folder) -> None:
        """A directory with its mode, and its owner on the gate itself."""
        path = self.at(step.path)
        mode = oct(step.mode)[2:].zfill(4)
        owner = f"{mode} {step.owner}:{step.group}"
        self.record.append(f"{step.path}\tfolder\t{mode}\t{step.owner}\t{step.group}\t-")
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            raise InstallFailed(f"{step.path} exists and is not a folder; move it away and run again")
        if not path.exists():
            self.say("make", f"{step.path} {owner}")
            if not self.dry_run:
                path.mkdir(parents=True, mode=step.mode)
                path.chmod(step.mode)  # mkdir's mode passes through the umask
        elif stat.S_IMODE(path.stat().st_mode) != step.mode:
            self.say("mode", f"{step.path} {owner}")
            if not self.dry_run:
                path.chmod(step.mode)
        else:
            self.say("unchanged", f"{step.path} {owner}", change=False)
        if self.live and not self.dry_run:
            _chown(path, step.owner, step.group)

    def file(self, step: File) -> None:
        """A file's content and mode; one edited on the gate (``keep_edits``) is kept."""
        path = self.at(step.path)
        mode = oct(step.mode)[2:].zfill(4)
        current = _read_regular(path, step.path)
        if current is not None and current != step.content and step.keep_edits:
            self.say(
                "keep",
                f"{step.path} (edited on this gate; the shipped one stays in the checkout)",
                change=False,
            )
            content = current
        elif current == step.content and stat.S_IMODE(path.stat().st_mode) == step.mode:
            self.say("unchanged", f"{step.path} {mode} root:root", change=False)
            content = current
        else:
            self.say("write", f"{step.path} {mode} root:root")
            content = step.content
            if not self.dry_run:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(path, step.content, mode=step.mode)
        digest = hashlib.sha256(content).hexdigest()
        self.record.append(f"{step.path}\tfile\t{mode}\troot\troot\tsha256:{digest}")

    def link(self, step: Link) -> None:
        """A symbolic link, replaced in one rename when it points elsewhere."""
        path = self.at(step.path)
        self.record.append(f"{step.path}\tlink\t-\troot\troot\t{step.target}")
        if path.is_symlink() and str(path.readlink()) == step.target:
            self.say("unchanged", f"{step.path} -> {step.target}", change=False)
            return
        if path.exists() and not path.is_symlink():
            raise InstallFailed(f"{step.path} exists and is not a link; move it away and run again")
        self.say("link", f"{step.path} -> {step.target}")
        if not self.dry_run:
            path.parent.mkdir(parents=True, exist_ok=True)
            spare = path.with_name(f".{path.name}.install-pi")
            spare.unlink(missing_ok=True)
            spare.symlink_to(step.target)
            spare.replace(path)

    def line(self, step: Line) -> None:
        """A line the file must hold: added once, under its marker, and never twice."""
        path = self.at(step.path)
        text = _text(path, step.path)
        self.record.append(f"{step.path}\tline\t-\troot\troot\t{step.line}")
        if step.line in (held.strip() for held in text.splitlines()):
            self.say("unchanged", f"{step.path}: {step.line}", change=False)
            return
        self.say("add line", f"{step.path}: {step.line}")
        self.added_line = True
        if not self.dry_run:
            lead = "" if not text or text.endswith("\n") else "\n"
            _replace_text(path, f"{text}{lead}{step.marker}\n{step.line}\n", step.path)

    def unline(self, step: Unline) -> None:
        """Take out the marker and the line after it, as ``line`` added them; a tech's own stays."""
        path = self.at(step.path)
        text = _text(path, step.path)
        lines = text.splitlines(keepends=True)
        kept: list[str] = []
        index = 0
        while index < len(lines):
            pair = [held.strip() for held in lines[index : index + 2]]
            if pair == [step.marker, step.line]:
                index += 2
                continue
            kept.append(lines[index])
            index += 1
        if len(kept) == len(lines):
            self.say("unchanged", f"{step.path}: no line added by the installer", change=False)
            return
        self.say("remove line", f"{step.path}: {step.line}")
        if not self.dry_run:
            _replace_text(path, "".join(kept), step.path)

    def remove(self, step: Remove) -> None:
        """A file or link the installer added."""
        path = self.at(step.path)
        if not path.is_symlink() and not path.exists():
            return
        if path.is_dir() and not path.is_symlink():
            raise InstallFailed(f"{step.path} is a folder; the installer wrote a file there")
        self.say("remove", step.path)
        if not self.dry_run:
            path.unlink()

    def write_record(self) -> None:
        """What the install wrote or found in place: path, kind, mode, owner, group, content."""
        if self.dry_run:
            return
        header = "# gate-daemon: written by scripts/install-pi (path, kind, mode, owner, group, content)\n"
        body = "".join(f"{entry}\n" for entry in self.record)
        content = (header + body).encode()
        path = self.at(pi_plan.RECORD)
        if _read_regular(path, pi_plan.RECORD) == content:
            self.say("unchanged", f"{pi_plan.RECORD} (this list)", change=False)
            return
        write_atomic(path, content, mode=0o644)
        self.say("write", f"{pi_plan.RECORD} (this list)", change=False)


def _chown(path: Path, owner: str, group: str) -> None:
    try:
        uid, gid = pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid
    except KeyError:
        raise InstallFailed(
            f"no user or group {owner}:{group}; systemd-sysusers should have made it"
        ) from None
    info = path.stat()
    if (info.st_uid, info.st_gid) != (uid, gid):
        os.chown(path, uid, gid)


def _read_regular(path: Path, name: str) -> bytes | None:
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise InstallFailed(f"{name} exists and is not a regular file; move it away and run again")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InstallFailed(f"cannot read {name}: {exc.strerror}") from None


def _text(path: Path, name: str) -> str:
    data = _read_regular(path, name)
    if data is None:
        raise InstallFailed(f"{name} is missing")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InstallFailed(f"{name}: not UTF-8 text; left as it is") from None


def _replace_text(path: Path, text: str, name: str) -> None:
    """Rewrite a file in one rename, keeping its mode: /boot/firmware is FAT, where chmod fails."""
    spare = path.with_name(f".{path.name}.install-pi")
    try:
        with spare.open("w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        spare.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            spare.unlink()
        raise InstallFailed(f"cannot write {name}: {exc.strerror}") from None


def parser() -> argparse.ArgumentParser:
    """The installer's command line."""
    top = argparse.ArgumentParser(
        prog="install-pi",
        description="Install gate-daemon on this Raspberry Pi (64-bit Raspberry Pi OS or Debian 12/13).",
    )
    top.add_argument("--dry-run", action="store_true", help="print every step, change nothing")
    top.add_argument(
        "--uninstall", action="store_true", help="remove what the installer added; keep the ledger"
    )
    top.add_argument("--screen", action="store_true", help="also the gate screen's kiosk (a desktop image)")
    top.add_argument(
        "--root",
        type=Path,
        metavar="DIR",
        help="write into a staging root instead of this machine (for tests)",
    )
    top.add_argument(
        "--arch", help="with --root: the staged OS's dpkg architecture (default: this machine's)"
    )
    return top


def _machine_arch() -> str:
    try:
        done = subprocess.run(
            ["/usr/bin/dpkg", "--print-architecture"], capture_output=True, text=True, check=False, timeout=30
        )
    except OSError:
        raise InstallRefused(
            "unknown OS: no dpkg here; the installer knows Debian and Raspberry Pi OS"
        ) from None
    if done.returncode != 0:
        raise InstallRefused(f"dpkg --print-architecture failed: {done.stderr.strip()[:200]}")
    return done.stdout.strip()


def missing_packages(wanted: Sequence[str], live: bool) -> tuple[str, ...]:
    """The packages dpkg does not hold installed; under --root, all of them (no dpkg database there)."""
    if not live:
        return tuple(wanted)
    try:
        done = subprocess.run(
            ["/usr/bin/dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\\n", *wanted],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    except OSError as exc:
        raise InstallRefused(
            f"dpkg-query: {exc.strerror}; the installer knows Debian and Raspberry Pi OS"
        ) from None
    installed = {words[0] for words in map(str.split, done.stdout.splitlines()) if words[1:2] == ["ii"]}
    return tuple(name for name in wanted if name not in installed)


def _options(args: argparse.Namespace, root: Path, target: Target, live: bool) -> Options:
    for relative in ("pyproject.toml", "systemd/gate-daemon.service", "hw/99-gate-scanner.rules"):
        if not (SOURCE / relative).is_file():
            raise InstallRefused(f"not a gate-daemon checkout: {SOURCE} has no {relative}")
    return Options(
        source=SOURCE,
        screen=args.screen,
        missing_packages=missing_packages(pi_plan.packages(target), live),
        venv_exists=(root / pi_plan.VENV.lstrip("/") / "bin" / "python").exists(),
        configured=(root / pi_plan.CONFIG.lstrip("/")).is_file(),
        boot_config=(root / pi_plan.BOOT_CONFIG.lstrip("/")).is_file(),
    )


def _install(installer: Installer, target: Target, options: Options) -> None:
    if target.raspberry_pi and not options.boot_config:
        installer.say("note", f"no {pi_plan.BOOT_CONFIG}: {pi_plan.STRICT_GPIOD} is not set", change=False)
    installer.carry_out(pi_plan.install_plan(target, options))
    installer.write_record()
    if installer.added_line:
        installer.say(
            "note", "reboot once: strict_gpiod, the console login off and scanner drivers", change=False
        )
    if not options.configured:
        installer.say(
            "next", "sudo gatectl enroll TOKEN, then sudo systemctl enable --now gate-daemon", change=False
        )


def _uninstall(installer: Installer, options: Options) -> None:
    everything = dataclasses.replace(options, screen=True)
    present = {item.path for item in pi_plan.files(everything) if installer.at(item.path).exists()}
    installer.carry_out(pi_plan.uninstall_plan(options, present))
    for path, why in pi_plan.KEPT:
        if path.startswith("/") and not installer.at(path).exists():
            continue
        installer.say("kept", f"{path}: {why}", change=False)


def install(args: argparse.Namespace, out: TextIO) -> int:
    """Install (or uninstall) as ``args`` ask; refuse an unknown or 32-bit OS before any change."""
    live = args.root is None
    if live and args.arch is not None:
        raise InstallRefused("--arch only stands in for a staged OS: give it with --root")
    if live and not args.dry_run and os.geteuid() != 0:
        raise InstallRefused("run as root: sudo scripts/install-pi")
    root = Path("/") if live else args.root.resolve()
    if not root.is_dir():
        raise InstallRefused(f"--root {args.root}: not a folder")
    target = detect(root, args.arch or _machine_arch())
    installer = Installer(root=root, live=live, dry_run=args.dry_run, out=out)
    where = "" if live else f" under {root}"
    print(f"install-pi: {target.describe()}{where}", file=out, flush=True)
    os.umask(0o022)  # the service's user reads the virtualenv and the units, whatever sudo's umask
    options = _options(args, root, target, live)
    if args.uninstall:
        _uninstall(installer, options)
    else:
        _install(installer, target, options)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``scripts/install-pi``'s entry point."""
    args = parser().parse_args(argv)
    return run_command(lambda: install(args, sys.stdout))
