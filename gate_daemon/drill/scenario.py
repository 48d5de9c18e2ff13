"""A drill's scenario: the crowd and the faults on a timeline, read from TOML.

The bundled scenarios live beside this module (``scenarios/NAME.toml``); a venue writes its
own the same way (docs/DRILL.md). Every key is checked: an unknown key, a missing one or a
value out of bounds is a ``ScenarioError`` naming the file and the key path.

Times are seconds from doors-open (the drill's start). Gates are named by number, 1 to
the venue's size; a number beyond the venue wraps around, so one scenario fits any size.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from gate_daemon.errors import GateError

#: The fault kinds and the keys each takes beside ``kind``, ``at_s`` and ``for_s``.
FAULT_KEYS: dict[str, frozenset[str]] = {
    "central-down": frozenset({"how"}),
    "split": frozenset({"islands"}),
    "loss": frozenset({"gates", "percent"}),
    "bandwidth": frozenset({"gates", "rate_kbit"}),
    "latency": frozenset({"gates", "delay_ms", "jitter_ms"}),
    "power-cut": frozenset({"gates"}),
    "clock-skew": frozenset({"gates", "offset"}),
    "cancel": frozenset({"count"}),
}
MIX = ("signed", "reference", "legacy")


class ScenarioError(GateError):
    """A scenario file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Crowd:
    """Who comes, when, with what."""

    per_gate: int = 60
    #: Arrivals follow a bell around ``peak_s`` with ``spread_s``, cut to ``[0, duration_s)``.
    peak_s: float = 20.0
    spread_s: float = 15.0
    #: Seconds a turnstile takes per person (the next scan never starts sooner).
    pace_s: float = 1.0
    screenshot_share: float = 0.05
    screenshot_delay_s: tuple[float, float] = (5.0, 60.0)
    canceled_share: float = 0.02
    wrong_zone_share: float = 0.02
    multi_share: float = 0.05
    reentry_share: float = 0.05
    mix: tuple[float, float, float] = (0.4, 0.3, 0.3)


@dataclass(frozen=True)
class Fault:
    """One fault: what, from when, for how long, where."""

    kind: str
    at_s: float
    for_s: float
    gates: tuple[int, ...] = ()
    how: str = "hang"
    islands: int = 2
    percent: int = 0
    rate_kbit: int = 0
    delay_ms: int = 0
    jitter_ms: int = 0
    offset: str = "-1d"
    count: int = 0

    @property
    def end_s(self) -> float:
        """When it heals."""
        return self.at_s + self.for_s

    def label(self) -> str:
        """A short name for the report."""
        detail = {
            "central-down": self.how,
            "split": f"{self.islands} islands",
            "loss": f"{self.percent}%",
            "bandwidth": f"{self.rate_kbit} kbit/s",
            "latency": f"{self.delay_ms}±{self.jitter_ms} ms",
            "clock-skew": self.offset,
            "cancel": f"{self.count} tickets",
            "power-cut": "SIGKILL",
        }[self.kind]
        return f"{self.kind} ({detail})"


@dataclass(frozen=True)
class Scenario:
    """A whole drill."""

    name: str
    description: str
    duration_s: float
    seed: int
    crowd: Crowd
    faults: tuple[Fault, ...]


def bundled() -> list[str]:
    """The names of the scenarios shipped with the package."""
    folder = resources.files(__package__ or "gate_daemon.drill") / "scenarios"
    return sorted(item.name.removesuffix(".toml") for item in folder.iterdir() if item.name.endswith(".toml"))


def load_scenario(name_or_path: str) -> Scenario:
    """A bundled scenario by name, or a scenario file by path."""
    if name_or_path in bundled():
        folder = resources.files(__package__ or "gate_daemon.drill") / "scenarios"
        source = f"scenario {name_or_path}"
        text = (folder / f"{name_or_path}.toml").read_text(encoding="utf-8")
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ScenarioError(
                f"{name_or_path}: no such file, and not a bundled scenario ({', '.join(bundled())})"
            )
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ScenarioError(f"{path}: cannot read it: {exc}") from None
    return parse_scenario(text, source)


def parse_scenario(text: str, source: str = "scenario") -> Scenario:
    """A scenario from TOML text; ``ScenarioError`` naming ``source`` and the key on any problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not TOML: {exc}") from None
    top = _Table(data, source, "")
    top.only({"name", "description", "duration_s", "seed", "crowd", "faults"})
    duration = top.number("duration_s", 10, 86400)
    crowd = _crowd(top.table("crowd"), duration)
    faults_data = data.get("faults", [])
    if not isinstance(faults_data, list):
        raise ScenarioError(f"{source}: faults must be an array of tables ([[faults]])")
    faults = tuple(
        _fault(_Table(item, source, f"faults[{i}]."), duration) for i, item in enumerate(faults_data)
    )
    return Scenario(
        name=top.text("name"),
        description=top.text("description", ""),
        duration_s=duration,
        seed=int(top.number("seed", 0, 2**31, default=1)),
        crowd=crowd,
        faults=faults,
    )


def _crowd(table: _Table, duration: float) -> Crowd:
    table.only(set(Crowd.__dataclass_fields__))
    base = Crowd()
    low, high = table.pair("screenshot_delay_s", base.screenshot_delay_s)
    mix = table.mix()
    shares = {
        name: table.number(name, 0, 1, default=getattr(base, name))
        for name in ("screenshot_share", "canceled_share", "wrong_zone_share", "multi_share", "reentry_share")
    }
    return Crowd(
        per_gate=int(table.number("per_gate", 1, 100000, default=base.per_gate)),
        peak_s=table.number("peak_s", 0, duration, default=min(base.peak_s, duration / 2)),
        spread_s=table.number("spread_s", 1, 86400, default=base.spread_s),
        pace_s=table.number("pace_s", 0.05, 600, default=base.pace_s),
        screenshot_delay_s=(low, high),
        mix=mix,
        **shares,
    )


def _fault(table: _Table, duration: float) -> Fault:
    kind = table.text("kind")
    if kind not in FAULT_KEYS:
        raise ScenarioError(f"{table.where('kind')}: {kind!r} is not one of {', '.join(FAULT_KEYS)}")
    table.only({"kind", "at_s", "for_s"} | FAULT_KEYS[kind])
    at = table.number("at_s", 0, duration, default=0)
    # A cancellation is a moment (the manifest is published), the other faults last to the end.
    span = table.number("for_s", 0, 86400, default=0 if kind == "cancel" else duration - at)
    values: dict[str, Any] = {}
    if "gates" in FAULT_KEYS[kind]:
        values["gates"] = table.gates()
    if kind == "central-down":
        values["how"] = table.choice("how", ("hang", "kill"), "hang")
    elif kind == "split":
        values["islands"] = int(table.number("islands", 2, 64, default=2))
    elif kind == "loss":
        values["percent"] = int(table.number("percent", 1, 100))
    elif kind == "bandwidth":
        values["rate_kbit"] = int(table.number("rate_kbit", 8, 10_000_000))
    elif kind == "latency":
        values["delay_ms"] = int(table.number("delay_ms", 0, 60000))
        values["jitter_ms"] = int(table.number("jitter_ms", 0, 60000, default=0))
    elif kind == "clock-skew":
        values["offset"] = table.offset()
    elif kind == "cancel":
        values["count"] = int(table.number("count", 1, 100000))
    return Fault(kind=kind, at_s=at, for_s=span, **values)


class _Table:
    """One TOML table and where it sits, for errors that say where."""

    def __init__(self, data: object, source: str, path: str) -> None:
        if not isinstance(data, dict):
            raise ScenarioError(f"{source}: {path.rstrip('.') or 'the file'} must be a table")
        self.data: dict[str, Any] = data
        self.source = source
        self.path = path

    def where(self, key: str) -> str:
        return f"{self.source}: {self.path}{key}"

    def only(self, keys: set[str] | frozenset[str]) -> None:
        unknown = sorted(set(self.data) - set(keys))
        if unknown:
            raise ScenarioError(f"{self.where(unknown[0])}: unknown key (known: {', '.join(sorted(keys))})")

    def table(self, key: str) -> _Table:
        return _Table(self.data.get(key, {}), self.source, f"{self.path}{key}.")

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if not isinstance(value, str) or (default is None and not value) or len(value) > 200:
            raise ScenarioError(f"{self.where(key)}: must be a text of 1 to 200 characters")
        return value

    def number(self, key: str, low: float, high: float, default: float | None = None) -> float:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise ScenarioError(
                f"{self.where(key)}: must be a number from {low:g} to {high:g}, not {value!r}"
            )
        return float(value)

    def choice(self, key: str, options: tuple[str, ...], default: str) -> str:
        value = self.data.get(key, default)
        if value not in options:
            raise ScenarioError(f"{self.where(key)}: must be one of {', '.join(options)}, not {value!r}")
        return str(value)

    def pair(self, key: str, default: tuple[float, float]) -> tuple[float, float]:
        value = self.data.get(key, list(default))
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            or not 0 <= value[0] <= value[1] <= 86400
        ):
            raise ScenarioError(f"{self.where(key)}: must be [low, high] seconds with 0 <= low <= high")
        return float(value[0]), float(value[1])

    def mix(self) -> tuple[float, float, float]:
        value = self.data.get("mix", dict(zip(MIX, Crowd().mix, strict=True)))
        if not isinstance(value, dict) or set(value) - set(MIX):
            raise ScenarioError(f"{self.where('mix')}: must be a table of {', '.join(MIX)} weights")
        weights = tuple(value.get(name, 0) for name in MIX)
        if any(isinstance(w, bool) or not isinstance(w, int | float) or w < 0 for w in weights) or not sum(
            weights
        ):
            raise ScenarioError(f"{self.where('mix')}: weights must be numbers >= 0, not all 0")
        return float(weights[0]), float(weights[1]), float(weights[2])

    def gates(self) -> tuple[int, ...]:
        value = self.data.get("gates", [1])
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 10000 for v in value)
        ):
            raise ScenarioError(f"{self.where('gates')}: must be a list of gate numbers (1, 2, ...)")
        return tuple(value)

    def offset(self) -> str:
        value = self.text("offset", "-1d")
        sign, amount, unit = value[:1], value[1:-1], value[-1:]
        if sign not in "+-" or not sign or not amount.isdigit() or unit not in ("s", "m", "h", "d"):
            raise ScenarioError(f"{self.where('offset')}: must be like -1d, +3h, -90m or +30s, not {value!r}")
        return value
