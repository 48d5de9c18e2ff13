"""The failover KPIs: how gates behaved when the network or the central failed.

Four numbers, from what the central (or a drill) recorded; all pure, values in, a
``Kpis`` out. A *window* is a fault: a span of time during which some gates (or all)
could not rely on the network. Times are unix milliseconds; the results are seconds,
percent and a ratio, ``None`` when the data holds nothing to measure.

- ``mode_switch_s``: for each window, the time from its start to each affected gate's
  first switch to offline at or after the start and before the window's end; the median
  over every (window, gate) pair that switched. A gate that never switched inside a
  window (an offline-only gate, or one that kept its link) gives no sample.
- ``throughput_drop_pct``: per gate and window, the scans a minute during the window
  against the same gate's scans a minute over an equal span just before it:
  ``100 * (1 - during / before)``; the median over (window, gate) pairs with scans before.
  Negative when a gate scanned faster during the fault. Every scan counts, denials too:
  throughput is how many people the lane handled.
- ``conflict_rate``: conflicts (double entries found once records met) over the entries
  admitted; ``None`` without entries.
- ``sync_restoration_s``: for each window, from its end to the moment the central held
  every record scanned during it (the largest ``received_ms`` of those records, minus the
  end; 0 when all had arrived by the end); the largest over windows that had records.

A window's gates are ``Window.gates``, or every gate seen in the inputs when it is empty.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class ScanPoint:
    """One scan: when, where, its outcome (allow, deny, ...) and the gate's decision mode then."""

    at_ms: int
    gate: str
    outcome: str
    mode: str


@dataclass(frozen=True, slots=True)
class Window:
    """A fault: ``start_ms`` to ``end_ms`` (end excluded); ``gates`` affected, () for all."""

    start_ms: int
    end_ms: int
    label: str
    gates: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ModeSwitch:
    """A gate's decision mode changed to ``to_mode`` at ``at_ms``."""

    at_ms: int
    gate: str
    to_mode: str


@dataclass(frozen=True, slots=True)
class Arrival:
    """A record's scan time at its gate and the time the central held it."""

    gate: str
    scanned_ms: int
    received_ms: int


@dataclass(frozen=True, slots=True)
class Kpis:
    """The four failover numbers; ``None`` where nothing could be measured."""

    mode_switch_s: float | None
    throughput_drop_pct: float | None
    conflict_rate: float | None
    sync_restoration_s: float | None


def failover_kpis(
    scans: Iterable[ScanPoint],
    windows: Iterable[Window],
    switches: Iterable[ModeSwitch],
    arrivals: Iterable[Arrival],
    conflicts: int,
    entries: int,
) -> Kpis:
    """The venue's KPIs over every gate (definitions in the module's docstring)."""
    scans, windows, switches, arrivals = list(scans), list(windows), list(switches), list(arrivals)
    everyone = _gates(scans, switches, arrivals)
    return Kpis(
        mode_switch_s=_median(_switch_samples(windows, switches, everyone)),
        throughput_drop_pct=_median(_drop_samples(windows, scans, everyone)),
        conflict_rate=conflicts / entries if entries > 0 else None,
        sync_restoration_s=_restoration(windows, arrivals, everyone),
    )


def kpis_per_gate(
    scans: Iterable[ScanPoint],
    windows: Iterable[Window],
    switches: Iterable[ModeSwitch],
    arrivals: Iterable[Arrival],
    conflicts: Mapping[str, int],
    entries: Mapping[str, int],
) -> dict[str, Kpis]:
    """Each gate's own KPIs, keyed by gate id: the venue's definitions over that gate's data only.

    ``conflicts`` counts each conflict at the gate of the entry that lost; ``entries`` the
    entries each gate admitted. A window that names gates counts only for those.
    """
    scans, windows, switches, arrivals = list(scans), list(windows), list(switches), list(arrivals)
    gates = _gates(scans, switches, arrivals) | set(conflicts) | set(entries)
    out: dict[str, Kpis] = {}
    for gate in sorted(gates):
        mine = [w for w in windows if not w.gates or gate in w.gates]
        out[gate] = failover_kpis(
            [s for s in scans if s.gate == gate],
            [Window(w.start_ms, w.end_ms, w.label, (gate,)) for w in mine],
            [s for s in switches if s.gate == gate],
            [a for a in arrivals if a.gate == gate],
            conflicts.get(gate, 0),
            entries.get(gate, 0),
        )
    return out


def switches_from_scans(scans: Iterable[ScanPoint]) -> list[ModeSwitch]:
    """The mode switches a gate's scans show: each scan whose mode differs from its previous scan's.

    The first scan of each gate is no switch (nothing before it to switch from). In time
    order, gates interleaved.
    """
    last: dict[str, str] = {}
    out = []
    for scan in sorted(scans, key=lambda s: (s.at_ms, s.gate)):
        before = last.get(scan.gate)
        if before is not None and before != scan.mode:
            out.append(ModeSwitch(scan.at_ms, scan.gate, scan.mode))
        last[scan.gate] = scan.mode
    return out


def _gates(
    scans: Sequence[ScanPoint], switches: Sequence[ModeSwitch], arrivals: Sequence[Arrival]
) -> set[str]:
    return {s.gate for s in scans} | {s.gate for s in switches} | {a.gate for a in arrivals}


def _affected(window: Window, everyone: set[str]) -> set[str]:
    return set(window.gates) if window.gates else everyone


def _switch_samples(
    windows: Sequence[Window], switches: Sequence[ModeSwitch], everyone: set[str]
) -> list[float]:
    samples = []
    for window in windows:
        for gate in _affected(window, everyone):
            times = [
                s.at_ms
                for s in switches
                if s.gate == gate and s.to_mode == OFFLINE and window.start_ms <= s.at_ms < window.end_ms
            ]
            if times:
                samples.append((min(times) - window.start_ms) / 1000)
    return samples


def _drop_samples(windows: Sequence[Window], scans: Sequence[ScanPoint], everyone: set[str]) -> list[float]:
    samples = []
    for window in windows:
        span = window.end_ms - window.start_ms
        if span <= 0:
            continue
        for gate in _affected(window, everyone):
            times = [s.at_ms for s in scans if s.gate == gate]
            during = sum(1 for t in times if window.start_ms <= t < window.end_ms)
            before = sum(1 for t in times if window.start_ms - span <= t < window.start_ms)
            if before:
                # Equal spans: the ratio of counts is the ratio of rates a minute.
                samples.append(100 * (1 - during / before))
    return samples


def _restoration(windows: Sequence[Window], arrivals: Sequence[Arrival], everyone: set[str]) -> float | None:
    worst: float | None = None
    for window in windows:
        gates = _affected(window, everyone)
        held = [
            a.received_ms
            for a in arrivals
            if a.gate in gates and window.start_ms <= a.scanned_ms < window.end_ms
        ]
        if held:
            took = max(0, max(held) - window.end_ms) / 1000
            worst = took if worst is None else max(worst, took)
    return worst


def _median(samples: list[float]) -> float | None:
    return statistics.median(samples) if samples else None
