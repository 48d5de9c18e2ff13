"""The seed's four failover KPIs, computed from what a drill saw (contract C of the parallel parts).

Pure. Definitions:

- ``mode_switch_s``: for each fault window, the time from its start to each affected
  gate's first switch to offline; the median over gates and windows.
- ``throughput_drop_pct``: per gate and window, scans a minute during the window against
  the same gate's rate over an equal span before it, as ``100 * (1 - during / before)``;
  the median (a gate with no scans before a window has no figure for it).
- ``conflict_rate``: conflicts / entries admitted.
- ``sync_restoration_s``: for each window, from its end to the moment the central holds
  every record scanned during it (the latest ``received_ms`` of those records minus the
  end, at least 0); the maximum over windows.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ScanPoint:
    """One scan: when, where, its outcome and the mode it was decided in."""

    at_ms: int
    gate: str
    outcome: str
    mode: str


@dataclass(frozen=True)
class Window:
    """A fault's span; ``gates`` are the gates it touches (``()``: all)."""

    start_ms: int
    end_ms: int
    label: str
    gates: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModeSwitch:
    """A gate switching mode."""

    at_ms: int
    gate: str
    to_mode: str


@dataclass(frozen=True)
class Arrival:
    """A record's scan time at its gate and when the central held it."""

    gate: str
    scanned_ms: int
    received_ms: int


@dataclass(frozen=True)
class Kpis:
    """The four figures; None where a drill gives nothing to measure."""

    mode_switch_s: float | None
    throughput_drop_pct: float | None
    conflict_rate: float | None
    sync_restoration_s: float | None

    def as_dict(self) -> dict[str, float | None]:
        """For report.json."""
        return {
            "mode_switch_s": _round(self.mode_switch_s),
            "throughput_drop_pct": _round(self.throughput_drop_pct),
            "conflict_rate": None if self.conflict_rate is None else round(self.conflict_rate, 5),
            "sync_restoration_s": _round(self.sync_restoration_s),
        }


def failover_kpis(
    scans: Sequence[ScanPoint],
    windows: Sequence[Window],
    switches: Sequence[ModeSwitch],
    arrivals: Sequence[Arrival],
    conflicts: int,
    entries: int,
) -> Kpis:
    """The venue's KPIs."""
    gates = sorted({s.gate for s in scans})
    return Kpis(
        mode_switch_s=_median(_switch_delays(windows, switches, gates)),
        throughput_drop_pct=_median(_drops(scans, windows, gates)),
        conflict_rate=conflicts / entries if entries else None,
        sync_restoration_s=_restoration(windows, arrivals),
    )


def kpis_per_gate(
    scans: Sequence[ScanPoint],
    windows: Sequence[Window],
    switches: Sequence[ModeSwitch],
    arrivals: Sequence[Arrival],
    conflicts: dict[str, int],
    entries: dict[str, int],
) -> dict[str, Kpis]:
    """The KPIs of each gate: its scans, its switches, its records; its conflicts as the loser's gate."""
    out = {}
    for gate in sorted({s.gate for s in scans} | set(entries)):
        own = [w for w in windows if not w.gates or gate in w.gates]
        out[gate] = Kpis(
            mode_switch_s=_median(_switch_delays(own, switches, [gate])),
            throughput_drop_pct=_median(_drops([s for s in scans if s.gate == gate], own, [gate])),
            conflict_rate=conflicts.get(gate, 0) / entries[gate] if entries.get(gate) else None,
            sync_restoration_s=_restoration(own, [a for a in arrivals if a.gate == gate]),
        )
    return out


def _switch_delays(
    windows: Iterable[Window], switches: Sequence[ModeSwitch], gates: list[str]
) -> list[float]:
    delays = []
    for window in windows:
        for gate in window.gates or gates:
            first = min(
                (
                    s.at_ms
                    for s in switches
                    if s.gate == gate
                    and s.to_mode == "offline"
                    and window.start_ms <= s.at_ms <= window.end_ms
                ),
                default=None,
            )
            if first is not None:
                delays.append((first - window.start_ms) / 1000)
    return delays


def _drops(scans: Sequence[ScanPoint], windows: Iterable[Window], gates: list[str]) -> list[float]:
    drops = []
    for window in windows:
        span = window.end_ms - window.start_ms
        if span <= 0:
            continue
        for gate in window.gates or gates:
            times = [s.at_ms for s in scans if s.gate == gate]
            before = sum(window.start_ms - span <= t < window.start_ms for t in times)
            during = sum(window.start_ms <= t < window.end_ms for t in times)
            if before:
                drops.append(100 * (1 - during / before))
    return drops


def _restoration(windows: Iterable[Window], arrivals: Sequence[Arrival]) -> float | None:
    figures = []
    for window in windows:
        held = [
            a.received_ms
            for a in arrivals
            if window.start_ms <= a.scanned_ms < window.end_ms
            and (not window.gates or a.gate in window.gates)
        ]
        if held:
            figures.append(max(0.0, (max(held) - window.end_ms) / 1000))
    return max(figures) if figures else None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
