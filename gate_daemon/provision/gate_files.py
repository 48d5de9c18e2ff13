"""An enrolled gate's files (docs/ENROLL.md): its config, its key and the pinned manifest key.

``gatectl enroll`` writes ``ETC/gate.toml``, ``ETC/keys/gate.key`` (0600) and
``ETC/keys/manifest-signer.pub``, and makes ``STATE/incoming``. The config's ``[gate]``,
``[manifest]``, ``[lan]`` and ``[upstream]`` are the enrollment's; every other table of a
config already there (``[input]``, ``[signals]``, ``[turnstile]`` ... as the installer
wrote them from the example) is kept as it was, comments and all, and the old file is kept
as ``gate.toml.bak``. Without a config, those tables come from ``ETC/gate.example.toml``,
the example the installer puts there (the lane's camera, lights and relay); without either,
the gate gets manual scans and console signals. At the defaults (``/etc/gate-daemon``,
``/var/lib/gate-daemon``) paths are written as systemd gives them to the service
(``${CREDENTIALS_DIRECTORY}``, ``${STATE_DIRECTORY}``); elsewhere they are absolute.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from gate_daemon.config.load import load_config
from gate_daemon.core.keys import PublicKey, SecretKey
from gate_daemon.errors import GateError, SourceError
from gate_daemon.files import write_atomic

DEFAULT_ETC = Path("/etc/gate-daemon")
DEFAULT_STATE = Path("/var/lib/gate-daemon")
#: The tables an enrollment writes; the rest of a config is kept.
OWNED = ("gate", "manifest", "lan", "upstream")
_TABLE = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_-]+)")


@dataclass(frozen=True, slots=True)
class Placement:
    """Where an enrolled gate's files go."""

    etc: Path
    state: Path

    @property
    def config(self) -> Path:
        """The config file."""
        return self.etc / "gate.toml"

    @property
    def example(self) -> Path:
        """The example config the installer puts beside it (``scripts/install-pi``)."""
        return self.etc / "gate.example.toml"

    @property
    def keys(self) -> Path:
        """The key folder."""
        return self.etc / "keys"

    @property
    def systemd(self) -> bool:
        """Whether the gate runs as the systemd service (paths through its directories)."""
        return self.etc == DEFAULT_ETC and self.state == DEFAULT_STATE

    def paths(self) -> tuple[str, str, str]:
        """The gate key, the signer key and the state directory, as the config names them."""
        if self.systemd:
            return (
                "${CREDENTIALS_DIRECTORY}/gate.key",
                "${CREDENTIALS_DIRECTORY}/manifest-signer.pub",
                "${STATE_DIRECTORY}",
            )
        return (str(self.keys / "gate.key"), str(self.keys / "manifest-signer.pub"), str(self.state))

    def environ(self) -> dict[str, str]:
        """What systemd would set, for checking the config here."""
        return {
            "CREDENTIALS_DIRECTORY": str(self.keys),
            "STATE_DIRECTORY": str(self.state),
            "RUNTIME_DIRECTORY": str(self.state),
        }


@dataclass(frozen=True, slots=True)
class Enrolled:
    """What the enrollment decided about the gate."""

    gate_id: str
    event_id: str
    zone: str | None
    addr: str
    url: str


def base_config(placement: Placement) -> str | None:
    """The text whose tables other than the enrollment's the new config keeps: the config
    already there, else the installer's example beside it, else None."""
    for path in (placement.config, placement.example):
        try:
            return path.read_text()
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as exc:
            raise GateError(f"cannot read {path}: {exc}") from None
    return None


def kept_tables(text: str) -> str:
    """A config's text without the tables an enrollment writes (their sub-tables too)."""
    kept: list[str] = []
    owned = False
    for line in text.splitlines():
        match = _TABLE.match(line)
        if match is not None:
            owned = match.group(1) in OWNED
        if not owned:
            kept.append(line)
    return "\n".join(kept).strip("\n")


def config_text(placement: Placement, gate: Enrolled, existing: str | None) -> str:
    """The enrolled gate's config."""
    key, signer, state = placement.paths()
    lines = [
        "# [gate], [manifest], [lan] and [upstream] written by gatectl enroll (docs/ENROLL.md).",
        "[gate]",
        f"id = {json.dumps(gate.gate_id)}",
        f"event = {json.dumps(gate.event_id)}",
    ]
    if gate.zone is not None:
        lines.append(f"zone = {json.dumps(gate.zone)}")
    lines += [
        f"state_dir = {json.dumps(state)}",
        "",
        "[manifest]                      # the central sends new versions; this key must sign them",
        f"path = {json.dumps(str(placement.state / 'incoming' / 'manifest.gdm'))}",
        f"trusted_keys = [{json.dumps(signer)}]",
        "",
        "[lan]                           # peers come from the manifest's roster (docs/ENROLL.md)",
        f"listen = {json.dumps(gate.addr)}",
        f"key = {json.dumps(key)}",
        "",
        "[upstream]",
        f"url = {json.dumps(gate.url)}",
    ]
    rest = (
        kept_tables(existing)
        if existing is not None
        else '[input]\nkind = "none"\n\n[signals]\nkind = "console"'
    )
    return "\n".join(lines) + "\n\n" + rest + "\n"


def check_config(placement: Placement, text: str) -> None:
    """Load ``text`` as the gate will (from a scratch copy); ``SourceError`` naming what is wrong."""
    with tempfile.TemporaryDirectory(prefix="gate-enroll-") as scratch:
        path = Path(scratch) / "gate.toml"
        path.write_text(text)
        try:
            load_config(path, placement.environ())
        except SourceError as exc:  # named as the file it would be, whose other tables it keeps
            problems = [
                replace(p, message=p.message.replace(str(path), str(placement.config))) for p in exc.problems
            ]
            raise SourceError(f"{placement.config} (as gatectl enroll would write it)", problems) from None


def write_gate_files(placement: Placement, key: SecretKey, signer: PublicKey, text: str) -> Path:
    """Write the key, the pinned signer key and the config; the config's path."""
    try:
        placement.keys.mkdir(mode=0o750, parents=True, exist_ok=True)
        (placement.state / "incoming").mkdir(mode=0o750, parents=True, exist_ok=True)
    except OSError as exc:
        raise GateError(f"cannot make {exc.filename}: {exc.strerror}") from None
    write_atomic(placement.keys / "gate.key", (key.text() + "\n").encode(), mode=0o600)
    write_atomic(placement.keys / "gate.pub", (key.public.text() + "\n").encode())
    write_atomic(placement.keys / "manifest-signer.pub", (signer.text() + "\n").encode())
    config = placement.config
    if config.exists():
        backup = config.with_name("gate.toml.bak")
        write_atomic(backup, config.read_bytes(), mode=config.stat().st_mode & 0o777)
    write_atomic(config, text.encode(), mode=0o640)
    return config
