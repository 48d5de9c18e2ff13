"""The gate's configuration file, validated at load into frozen objects.

Unknown keys are refused, every number is bounded, and every problem names the file,
the key and its line (``SourceError``). Relative paths are relative to the config
file's folder. A path may start with ``${CREDENTIALS_DIRECTORY}``, ``${STATE_DIRECTORY}``
or ``${RUNTIME_DIRECTORY}``, which systemd sets for the service (``LoadCredential=``,
``StateDirectory=``, ``RuntimeDirectory=``). ``config/gate.example.toml`` documents
every key.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from gate_daemon.core.decision import ScanKind
from gate_daemon.tomlsource import Checker, KeyPath, load

IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
PIN = re.compile(r"(GPIO|BCM|BOARD|J8:|WPI)?[0-9]{1,2}")
_SYSTEMD_DIRS = ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "RUNTIME_DIRECTORY")
_VARIABLE = re.compile(r"\$\{([A-Z_]+)\}")
TOP_KEYS = {"gate", "manifest", "input", "signals", "control"}
GATE_KEYS = {"id", "event", "zone", "session", "state_dir", "mode", "repeat_window_ms"}
_E = TypeVar("_E", bound=StrEnum)


class InputKind(StrEnum):
    """Where scans come from."""

    STDIN = "stdin"
    IMAGES = "images"
    PICAMERA = "picamera"
    HID = "hid"
    NONE = "none"


class SignalsKind(StrEnum):
    """Where decisions are shown."""

    CONSOLE = "console"
    GPIO = "gpio"
    NONE = "none"


#: Input kinds whose adapters this version of gate-daemon carries.
AVAILABLE_INPUTS = frozenset({InputKind.STDIN, InputKind.IMAGES, InputKind.NONE})


@dataclass(frozen=True, slots=True)
class GateSection:
    """Who and where the gate is."""

    id: str
    event: str
    zone: str | None
    session: str | None
    state_dir: Path
    mode: ScanKind
    repeat_window_ms: int


@dataclass(frozen=True, slots=True)
class ManifestSection:
    """Where the manifest is dropped and which keys may sign it."""

    path: Path
    trusted_keys: tuple[Path, ...]
    poll_ms: int


@dataclass(frozen=True, slots=True)
class InputSection:
    """The scan input."""

    kind: InputKind
    path: Path | None
    poll_ms: int


@dataclass(frozen=True, slots=True)
class GpioPins:
    """gpiozero pin names (``GPIO17``, ``BOARD11``, or a BCM number) for the outputs."""

    green: str
    red: str
    yellow: str
    buzzer: str | None


@dataclass(frozen=True, slots=True)
class SignalsSection:
    """How decisions are shown."""

    kind: SignalsKind
    color: str
    hold_ms: int
    pins: GpioPins


@dataclass(frozen=True, slots=True)
class ControlSection:
    """The local control socket."""

    socket: Path


@dataclass(frozen=True, slots=True)
class GateConfig:
    """A whole, valid gate configuration."""

    source: Path
    gate: GateSection
    manifest: ManifestSection
    input: InputSection
    signals: SignalsSection
    control: ControlSection

    @property
    def ledger_path(self) -> Path:
        """The ledger's SQLite file."""
        return self.gate.state_dir / "ledger.sqlite"

    @property
    def active_manifest_path(self) -> Path:
        """The gate's private copy of the manifest it has verified and activated."""
        return self.gate.state_dir / "manifest.active"


DEFAULT_PINS = GpioPins(green="GPIO17", red="GPIO27", yellow="GPIO22", buzzer="GPIO23")


def load_config(path: Path, environ: dict[str, str] | None = None) -> GateConfig:
    """Read and validate a gate config file; raises ``SourceError`` listing every problem."""
    doc, text = load(path)
    env = dict(os.environ) if environ is None else environ
    check = Checker(path, text, TOP_KEYS)
    check.table(doc, (), TOP_KEYS, required={"gate", "manifest"})
    base = path.parent

    def resolve(raw: str, where: KeyPath) -> Path:
        if not raw or "\0" in raw:
            check.problem(where, "a path must not be empty or hold a NUL character")
            return Path()
        expanded = _expand(raw, env)
        if expanded is None:
            names = ", ".join(f"${{{n}}}" for n in _SYSTEMD_DIRS)
            check.problem(where, f"{raw!r}: only {names} may be used, and only when set")
            return Path()
        return base / expanded

    def path_value(tbl: dict[str, Any], at: KeyPath, key: str) -> Path:
        if key not in tbl:
            return Path()  # a required key's absence is reported by check.table
        raw = tbl[key]
        if not isinstance(raw, str):
            check.string(tbl, at, key)  # names the wrong type
            return Path()
        if len(raw.encode("utf-8", "surrogatepass")) > 1024:
            check.problem((*at, key), "longer than 1024 bytes")
            return Path()
        return resolve(raw, (*at, key))

    g = check.table(
        doc.get("gate", {}),
        ("gate",),
        GATE_KEYS,
        required={"id", "event", "state_dir"},
    )
    at: KeyPath = ("gate",)
    mode_text = check.string(g, at, "mode", default="entry")
    if mode_text not in {"entry", "exit"}:
        check.problem((*at, "mode"), f'{mode_text!r} must be "entry" or "exit"')
        mode_text = "entry"
    gate = GateSection(
        id=check.string(g, at, "id", pattern=IDENT, max_bytes=64),
        event=check.string(g, at, "event", pattern=IDENT, max_bytes=64),
        zone=check.string(g, at, "zone", pattern=IDENT, max_bytes=16) or None,
        session=check.string(g, at, "session", pattern=IDENT, max_bytes=16) or None,
        state_dir=path_value(g, at, "state_dir"),
        mode=ScanKind(mode_text),
        repeat_window_ms=check.integer(g, at, "repeat_window_ms", low=0, high=600_000, default=3000),
    )

    m = check.table(
        doc.get("manifest", {}),
        ("manifest",),
        {"path", "trusted_keys", "poll_ms"},
        required={"path", "trusted_keys"},
    )
    at = ("manifest",)
    keys: list[Path] = []
    raw_keys = check.strings(m, at, "trusted_keys")
    if m.get("trusted_keys") == []:
        check.problem((*at, "trusted_keys"), "list at least one .pub file")
    for index, raw in enumerate(raw_keys):
        keys.append(resolve(raw, (*at, "trusted_keys", index)))
    manifest = ManifestSection(
        path=path_value(m, at, "path"),
        trusted_keys=tuple(keys),
        poll_ms=check.integer(m, at, "poll_ms", low=100, high=3_600_000, default=2000),
    )

    i = check.table(doc.get("input", {}), ("input",), {"kind", "path", "poll_ms"})
    at = ("input",)
    kind = _choice(check, i, at, "kind", InputKind, InputKind.NONE)
    if kind not in AVAILABLE_INPUTS:
        check.problem(
            (*at, "kind"),
            f"{kind.value!r} needs the hardware adapters, which this version lacks "
            f"(available: {', '.join(sorted(k.value for k in AVAILABLE_INPUTS))})",
        )
    images = path_value(i, at, "path") if "path" in i else None
    if kind is InputKind.IMAGES and images is None:
        check.problem((*at, "path"), 'missing (required for kind = "images": the folder to watch)')
    inputs = InputSection(
        kind=kind,
        path=images,
        poll_ms=check.integer(i, at, "poll_ms", low=10, high=60_000, default=100),
    )

    s = check.table(doc.get("signals", {}), ("signals",), {"kind", "color", "hold_ms", "pins"})
    at = ("signals",)
    color = check.string(s, at, "color", default="auto")
    if color not in {"auto", "always", "never"}:
        check.problem((*at, "color"), f'{color!r} must be "auto", "always" or "never"')
    signals = SignalsSection(
        kind=_choice(check, s, at, "kind", SignalsKind, SignalsKind.CONSOLE),
        color=color,
        hold_ms=check.integer(s, at, "hold_ms", low=100, high=60_000, default=1500),
        pins=_pins(check, s.get("pins", {}), (*at, "pins")),
    )

    c = check.table(doc.get("control", {}), ("control",), {"socket"})
    socket = path_value(c, ("control",), "socket") if "socket" in c else gate.state_dir / "control.sock"
    if len(os.fsencode(socket)) > 100:
        check.problem(
            ("control", "socket"), f"{socket} is too long for a unix socket path (at most 100 bytes)"
        )
    check.finish()
    return GateConfig(
        source=path,
        gate=gate,
        manifest=manifest,
        input=inputs,
        signals=signals,
        control=ControlSection(socket=socket),
    )


def _choice(check: Checker, tbl: dict[str, Any], at: KeyPath, key: str, enum: type[_E], default: _E) -> _E:
    text = check.string(tbl, at, key, default=default.value)
    try:
        return enum(text)
    except ValueError:
        allowed = ", ".join(f'"{e.value}"' for e in enum)
        check.problem((*at, key), f"{text!r} is not one of {allowed}")
        return default


def _pins(check: Checker, value: object, at: KeyPath) -> GpioPins:
    tbl = check.table(value, at, {"green", "red", "yellow", "buzzer"})

    def pin(key: str, default: str | None) -> str | None:
        raw = tbl.get(key)
        if raw is None:
            return default
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = f"GPIO{raw}"
        if not isinstance(raw, str) or not PIN.fullmatch(raw):
            check.problem((*at, key), f"{raw!r} is not a pin (write GPIO17, BOARD11 or 17)")
            return default
        return raw

    return GpioPins(
        green=pin("green", DEFAULT_PINS.green) or DEFAULT_PINS.green,
        red=pin("red", DEFAULT_PINS.red) or DEFAULT_PINS.red,
        yellow=pin("yellow", DEFAULT_PINS.yellow) or DEFAULT_PINS.yellow,
        buzzer=pin("buzzer", DEFAULT_PINS.buzzer),
    )


def _expand(raw: str, env: dict[str, str]) -> str | None:
    """Expand the systemd directory variables in a path; None if another or an unset one is used."""
    failed = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal failed
        name = match.group(1)
        if name not in _SYSTEMD_DIRS or not env.get(name):
            failed = True
            return ""
        # systemd may list several directories separated by ':'; the first is ours.
        return env[name].split(":")[0]

    expanded = _VARIABLE.sub(substitute, raw)
    if failed or "${" in expanded:
        return None
    return expanded
