"""``gate-daemon``: run a gate in the foreground, or check a config file.

    gate-daemon --config /etc/gate-daemon/gate.toml
    gate-daemon check-config /etc/gate-daemon/gate.toml
    gate-daemon safe-state /etc/gate-daemon/gate.toml

Exit status: 0 after a clean stop (SIGTERM) or a valid config, 1 when the gate cannot
start or the config has problems (each printed as ``file:line: key: problem``), 2 for
a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from gate_daemon.config.load import load_config, load_pins_config
from gate_daemon.config.sections import GateConfig
from gate_daemon.config.toml import line_of, load
from gate_daemon.core.decision import Checkpoint
from gate_daemon.daemon.systemd import setup_logging
from gate_daemon.errors import (
    EXIT_ERROR,
    GateError,
    KeyFileError,
    ManifestRefused,
    Problem,
    SourceError,
    run_command,
)
from gate_daemon.store.manifest_file import read_manifest


def check_deployment(config: GateConfig) -> tuple[list[Problem], list[str]]:
    """Problems (fatal) and warnings beyond the file's own syntax: keys, manifest, folders.

    A manifest that does not fit the gate is a warning, not a problem: the gate starts
    anyway, refuses that manifest and says why, and a better one can be dropped while it
    runs (the unit runs this check before every start).
    """
    from gate_daemon.provision.keyfiles import read_public, read_secret

    _doc, text = load(config.source)
    problems: list[Problem] = []
    warnings: list[str] = []
    trusted = []
    for index, path in enumerate(config.manifest.trusted_keys):
        where = ("manifest", "trusted_keys", index)
        try:
            trusted.append(read_public(path))
        except KeyFileError as exc:
            problems.append(Problem(f"manifest.trusted_keys[{index}]", str(exc), line_of(text, where)))
    if config.input.path is not None and not config.input.path.is_dir():
        problems.append(
            Problem("input.path", f"{config.input.path} is not a folder", line_of(text, ("input", "path")))
        )
    problems += _device_problems(config, text)
    gate_key = None
    if config.lan.key is not None:
        try:
            gate_key = read_secret(config.lan.key)
        except KeyFileError as exc:
            problems.append(Problem("lan.key", str(exc), line_of(text, ("lan", "key"))))
    device = config.input.device
    if device is not None and not device.exists():
        warnings.append(
            f"{config.source}:{line_of(text, ('input', 'device'))}: input.device: {device} does not exist "
            "(yet): the gate starts out of service and opens it once the scanner is plugged in"
        )
    present = [p for p in (config.active_manifest_path, config.manifest.path) if p.exists()]
    for candidate in present:
        if not trusted:
            break
        try:
            manifest = read_manifest(candidate, trusted)
        except ManifestRefused as exc:
            warnings.append(f"manifest {candidate} would be refused ({exc.reason}): {exc.detail}")
            continue
        event_at = f"{config.source}:{line_of(text, ('gate', 'event'))}: gate.event"
        if manifest.event_id != config.gate.event:
            warnings.append(
                f"{event_at}: {config.gate.event!r}, but manifest {candidate} is for {manifest.event_id!r}: "
                "the gate will refuse it (wrong_event)"
            )
        for issue in Checkpoint(config.gate.zone, config.gate.session).problems(manifest):
            key = "zone" if issue.startswith("zone") else "session"
            warnings.append(
                f"{config.source}:{line_of(text, ('gate', key))}: gate.{key}: {issue}: "
                "the gate will refuse this manifest (wrong_checkpoint)"
            )
        listed = {gate.id: gate.key for gate in manifest.header.gates}.get(config.gate.id)
        if gate_key is not None and listed != gate_key.public:
            what = "does not list this gate" if listed is None else f"lists another key ({listed.kid})"
            warnings.append(
                f"{config.source}:{line_of(text, ('lan', 'key'))}: lan.key: manifest {candidate}'s roster "
                f"{what} for gate {config.gate.id!r} (key {gate_key.public.kid}): peers will refuse this gate"
            )
        break
    else:
        if not present:
            warnings.append(
                f"no manifest at {config.manifest.path} yet: the gate will deny every scan "
                "(manifest_missing) until one is dropped there"
            )
    return problems, warnings


def _device_problems(config: GateConfig, text: str) -> list[Problem]:
    """The libraries the configured input needs and cannot import (the gate would not start)."""
    from gate_daemon.config.sections import InputKind

    out = []
    kind = config.input.kind
    if kind in (InputKind.PICAMERA, InputKind.IMAGES):
        from gate_daemon.hardware.decoders import make_decoder

        try:
            make_decoder(config.input.decoder)
        except GateError as exc:
            out.append(Problem("input.decoder", str(exc), line_of(text, ("input", "decoder"))))
    if kind is InputKind.PICAMERA:
        from gate_daemon.hardware.picamera_input import picamera2_opener

        try:
            picamera2_opener()
        except GateError as exc:
            out.append(Problem("input.kind", str(exc), line_of(text, ("input", "kind"))))
    return out


def cmd_check(path: Path) -> int:
    """Validate a config file and what it points at."""
    config = load_config(path)
    problems, warnings = check_deployment(config)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if problems:
        raise SourceError(str(path), problems)
    gate = config.gate
    where = ", ".join(f"{k} {v}" for k, v in (("zone", gate.zone), ("session", gate.session)) if v)
    print(
        f"{path}: OK: gate {gate.id} for event {gate.event} ({gate.kind.value}"
        f"{', ' + where if where else ''}), input {config.input.kind.value}, "
        f"signals {config.signals.kind.value}, control socket {config.control.socket}"
        + (f", LAN on {config.lan.host}:{config.lan.port}" if config.lan.enabled else "")
        + (f", {len(config.lan.peers)} peers" if config.lan.peers else "")
    )
    return 0


def cmd_safe_state(path: Path) -> int:
    """Lock the relay and turn the lights off (the unit's ``ExecStopPost=``)."""
    from gate_daemon.hardware.safe_state import make_safe

    report = make_safe(load_pins_config(path))
    for line in report:
        print(f"safe-state: {line}")
    if not report:
        print("safe-state: this gate drives no GPIO outputs")
    return EXIT_ERROR if any("FAILED" in line for line in report) else 0


def cmd_run(path: Path) -> int:
    """Run the gate until SIGTERM."""
    from gate_daemon.daemon.app import run

    setup_logging()
    config = load_config(path)
    return asyncio.run(run(config))


def parser() -> argparse.ArgumentParser:
    """The command line."""
    top = argparse.ArgumentParser(
        prog="gate-daemon",
        description="Run a venue gate: scan, decide locally, record durably, signal.",
    )
    top.add_argument("--config", type=Path, metavar="FILE", help="run the gate configured in FILE")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")
    check = sub.add_parser("check-config", help="validate a config file and what it points at, then exit")
    check.add_argument("file", type=Path, metavar="FILE")
    safe = sub.add_parser(
        "safe-state", help="lock the relay and turn the lights off (after the daemon stopped), then exit"
    )
    safe.add_argument("file", type=Path, metavar="FILE")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run or check; errors become lines on stderr and a non-zero exit."""
    p = parser()
    args = p.parse_args(argv)

    def act() -> int:
        if args.command == "check-config":
            return cmd_check(args.file)
        if args.command == "safe-state":
            return cmd_safe_state(args.file)
        if args.config is None:
            p.error("--config FILE is required (or: gate-daemon check-config FILE)")
        return cmd_run(args.config)

    return run_command(act)


if __name__ == "__main__":
    sys.exit(main())
