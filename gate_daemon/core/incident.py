"""An incident, read from what the central holds: who scanned how much, who went dark, and the KPIs.

The central hears each gate in three ways: its heartbeats (``Beat``: every
``heartbeat_interval``, with the route it decides by), its evidence rows (``ScanMark``: one
per scan, uploaded once the central can be reached) and its records (``Receipt``: when
each was scanned and when the central held it). From these:

- *unheard* periods: a gate's heartbeats stop for longer than three of its usual
  intervals (the median of the shorter half of its intervals; at least ``MIN_GAP_S``):
  the central could not hear it (the central was down, or the link, or the gate). A
  gate still silent at the end is unheard to the end.
- *offline* periods: an online-first gate's beats say it decides offline (its breaker open).
- mode switches: a gate's route changing between two beats, or between two scans.
- fault windows: unheard periods of all gates merged where they overlap; these are the
  windows of the failover KPIs (``core.kpis``), measured from the last beat heard before
  the silence (the central cannot know the moment it began more closely).
- gates that need attention, each with its reasons.

Pure: ``analyse(IncidentData) -> Incident``.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from gate_daemon.core.kpis import (
    Arrival,
    Kpis,
    ModeSwitch,
    ScanPoint,
    Window,
    failover_kpis,
    kpis_per_gate,
    switches_from_scans,
)
from gate_daemon.core.times import format_instant

#: The shortest silence counted as unheard, whatever the gate's interval.
MIN_GAP_S = 3.0
#: A silence of this many usual intervals is unheard.
GAP_INTERVALS = 3
#: The most buckets a scans-per-time chart has (a long period gets wider buckets).
MAX_BUCKETS = 720
#: The fewest buckets a short period's chart has, and the widths tried for it (widest first).
MIN_BUCKETS = 30
SHORT_BUCKETS = (60, 30, 15, 10, 5, 1)
#: Denials that say the gate itself was in trouble, not the ticket.
GATE_FAULTS = frozenset({"manifest_missing", "manifest_expired", "ledger_unavailable"})


@dataclass(frozen=True, slots=True)
class ScanMark:
    """A scan the central holds evidence of: when (the gate's clock), where, its outcome and route."""

    wall: float
    gate: str
    outcome: str
    reason: str
    mode: str


@dataclass(frozen=True, slots=True)
class Beat:
    """A heartbeat: when the central heard it, the gate's route then and its counters."""

    gate: str
    at: float
    mode: str
    scans: int
    offline: int
    pending: int | None


@dataclass(frozen=True, slots=True)
class Receipt:
    """A record: its gate, kind, when it was scanned and when the central held it.

    ``voided``: an entry its own gate took back (not passed, not confirmed): nobody was
    admitted by it, so it is no entry admitted in the conflict rate.
    """

    gate: str
    kind: str
    forced: bool
    wall: float
    received_at: float
    voided: bool = False


@dataclass(frozen=True, slots=True)
class Collision:
    """A double entry: the losing entry's gate, time and uuid, and the winner's."""

    ticket_id: str
    loser_gate: str
    loser_wall: float
    loser: str
    winner_gate: str
    winner_wall: float
    winner: str


@dataclass(frozen=True, slots=True)
class IncidentData:
    """What the central holds of a period (scans from an equal span before it, beats with a margin)."""

    start: float
    end: float
    scans: list[ScanMark]
    beats: list[Beat]
    receipts: list[Receipt]
    collisions: list[Collision]
    gates: list[str]


@dataclass(frozen=True, slots=True)
class Period:
    """A span of a gate's time: ``unheard`` (no heartbeats) or ``offline`` (deciding offline)."""

    gate: str
    kind: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Attention:
    """A gate that needed attention, and why."""

    gate: str
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Incident:
    """The analysed period: what the page and ``--json`` show."""

    start: float
    end: float
    gates: tuple[str, ...]
    bucket_s: int
    #: Per gate, scans per bucket from ``start`` (the last bucket may be shorter).
    series: dict[str, list[int]]
    periods: list[Period]
    switches: list[ModeSwitch]
    windows: list[Window]
    kpis: Kpis
    per_gate: dict[str, Kpis]
    collisions: list[Collision]
    attention: list[Attention]
    totals: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        """The incident as one JSON object (times as RFC 3339 and UTC seconds)."""
        return {
            "from": format_instant(self.start),
            "to": format_instant(self.end),
            "gates": list(self.gates),
            "bucket_s": self.bucket_s,
            "scans_per_bucket": self.series,
            "periods": [asdict(p) for p in self.periods],
            "mode_switches": [{"at": s.at_ms / 1000, "gate": s.gate, "to": s.to_mode} for s in self.switches],
            "windows": [
                {"start": w.start_ms / 1000, "end": w.end_ms / 1000, "label": w.label, "gates": list(w.gates)}
                for w in self.windows
            ],
            "kpis": asdict(self.kpis),
            "kpis_per_gate": {gate: asdict(k) for gate, k in self.per_gate.items()},
            "conflicts": [asdict(c) for c in self.collisions],
            "attention": [{"gate": a.gate, "reasons": list(a.reasons)} for a in self.attention],
            "totals": self.totals,
        }


def analyse(data: IncidentData) -> Incident:
    """The incident in ``data`` (see the module's docstring)."""
    inside = [s for s in data.scans if data.start <= s.wall < data.end]
    gates = tuple(sorted({*data.gates, *(s.gate for s in data.scans), *(b.gate for b in data.beats)}))
    bucket = bucket_seconds(data.end - data.start)
    periods = unheard(data.beats, data.start, data.end) + offline(data.beats, data.start, data.end)
    points = [ScanPoint(int(s.wall * 1000), s.gate, s.outcome, s.mode) for s in data.scans]
    switches = sorted(
        [w for w in beat_switches(data.beats) + switches_from_scans(points) if _within(w, data)],
        key=lambda w: (w.at_ms, w.gate),
    )
    windows = fault_windows([p for p in periods if p.kind == "unheard"])
    arrivals = [Arrival(r.gate, int(r.wall * 1000), int(r.received_at * 1000)) for r in data.receipts]
    entries = Counter(r.gate for r in data.receipts if r.kind == "entry" and not r.forced and not r.voided)
    lost = Counter(c.loser_gate for c in data.collisions)
    return Incident(
        start=data.start,
        end=data.end,
        gates=gates,
        bucket_s=bucket,
        series=per_bucket(inside, gates, data.start, data.end, bucket),
        periods=sorted(periods, key=lambda p: (p.start, p.gate)),
        switches=switches,
        windows=windows,
        kpis=failover_kpis(points, windows, switches, arrivals, len(data.collisions), sum(entries.values())),
        per_gate=kpis_per_gate(points, windows, switches, arrivals, lost, entries),
        collisions=data.collisions,
        attention=attention(gates, periods, inside, data, lost),
        totals={
            "scans": len(inside),
            "offline_scans": sum(1 for s in inside if s.mode == "offline"),
            "denials": sum(1 for s in inside if s.outcome != "allow"),
            "entries": sum(entries.values()),
            "conflicts": len(data.collisions),
        },
    )


def bucket_seconds(span: float) -> int:
    """The width of a chart's bucket: a minute; less for a period under half an hour (at least
    ``MIN_BUCKETS`` then), whole minutes past twelve hours (at most ``MAX_BUCKETS``)."""
    for short in SHORT_BUCKETS:
        if span / short >= MIN_BUCKETS:
            break
    else:
        return SHORT_BUCKETS[-1]
    if short < 60:
        return short
    return 60 * max(1, math.ceil(span / 60 / MAX_BUCKETS))


def per_bucket(
    scans: Sequence[ScanMark], gates: Sequence[str], start: float, end: float, bucket: int
) -> dict[str, list[int]]:
    """Per gate, how many scans fell in each bucket from ``start`` to ``end``."""
    count = max(1, math.ceil((end - start) / bucket))
    series = {gate: [0] * count for gate in gates}
    for scan in scans:
        index = min(count - 1, int((scan.wall - start) // bucket))
        series.setdefault(scan.gate, [0] * count)[index] += 1
    return series


def _gap(times: Sequence[float]) -> float:
    """How long a silence must be to count as unheard, from a gate's usual interval between beats."""
    steps = sorted(b - a for a, b in itertools.pairwise(times) if b > a)
    # The median of the shorter half: the silences themselves (and few beats) must not set the pace,
    # and a beat retried early after a failure now and then must not either.
    usual = statistics.median(steps[: (len(steps) + 1) // 2]) if steps else MIN_GAP_S
    return max(MIN_GAP_S, GAP_INTERVALS * usual)


def _by_gate(beats: Sequence[Beat]) -> dict[str, list[Beat]]:
    out: dict[str, list[Beat]] = {}
    for beat in sorted(beats, key=lambda b: (b.gate, b.at)):
        out.setdefault(beat.gate, []).append(beat)
    return out


def unheard(beats: Sequence[Beat], start: float, end: float) -> list[Period]:
    """Each gate's silences longer than its gap, clipped to the period; a silence at the end runs to it."""
    out = []
    for gate, mine in _by_gate(beats).items():
        times = [b.at for b in mine]
        gap = _gap(times)
        spans = [(a, b) for a, b in itertools.pairwise(times) if b - a > gap]
        if end - times[-1] > gap:
            spans.append((times[-1], end))
        out += [
            Period(gate, "unheard", max(a, start), min(b, end)) for a, b in spans if b > start and a < end
        ]
    return out


def offline(beats: Sequence[Beat], start: float, end: float) -> list[Period]:
    """Where an online-first gate's beats said it decided offline (gates never online are not counted)."""
    out = []
    for gate, mine in _by_gate(beats).items():
        if not any(b.mode == "online" for b in mine):
            continue
        began: float | None = None
        for beat in mine:
            if beat.mode == "offline" and began is None:
                began = beat.at
            elif beat.mode == "online" and began is not None:
                out.append((gate, began, beat.at))
                began = None
        if began is not None:
            out.append((gate, began, max(end, began)))
    return [Period(g, "offline", max(a, start), min(b, end)) for g, a, b in out if b > start and a < end]


def beat_switches(beats: Sequence[Beat]) -> list[ModeSwitch]:
    """A switch wherever a gate's route differs from its previous beat's (both known)."""
    out = []
    for gate, mine in _by_gate(beats).items():
        for before, after in itertools.pairwise(mine):
            if before.mode != after.mode and {before.mode, after.mode} <= {"online", "offline"}:
                out.append(ModeSwitch(int(after.at * 1000), gate, after.mode))
    return out


def _within(switch: ModeSwitch, data: IncidentData) -> bool:
    return data.start * 1000 <= switch.at_ms < data.end * 1000


def fault_windows(silences: Sequence[Period]) -> list[Window]:
    """Silences merged where they overlap: the windows of the KPIs, each naming its gates."""
    merged: list[tuple[float, float, set[str]]] = []
    for period in sorted(silences, key=lambda p: p.start):
        if merged and period.start <= merged[-1][1]:
            start, end, gates = merged[-1]
            merged[-1] = (start, max(end, period.end), gates | {period.gate})
        else:
            merged.append((period.start, period.end, {period.gate}))
    return [
        Window(
            int(a * 1000),
            int(b * 1000),
            f"{len(g)} gate{'s' if len(g) != 1 else ''} unheard {format_instant(a)} to {format_instant(b)}",
            tuple(sorted(g)),
        )
        for a, b, g in merged
    ]


def attention(
    gates: Sequence[str],
    periods: Sequence[Period],
    scans: Sequence[ScanMark],
    data: IncidentData,
    lost: Counter[str],
) -> list[Attention]:
    """The gates that needed attention in the period, the most reasons first."""
    out = []
    last_beat = {b.gate: b for b in sorted(data.beats, key=lambda b: b.at) if b.at < data.end}
    for gate in gates:
        reasons = []
        for p in periods:
            if p.gate == gate:
                what = "not heard" if p.kind == "unheard" else "deciding offline"
                reasons.append(f"{what} for {p.end - p.start:.0f} s from {format_instant(p.start)}")
        if lost[gate]:
            reasons.append(f"{lost[gate]} double entr{'ies' if lost[gate] != 1 else 'y'} admitted here")
        faults = Counter(s.reason for s in scans if s.gate == gate and s.reason in GATE_FAULTS)
        reasons += [f"{n} scans refused for {reason}" for reason, n in sorted(faults.items())]
        beat = last_beat.get(gate)
        if beat is not None and beat.pending:
            reasons.append(f"{beat.pending} records not yet at the central at its last beat")
        if beat is None and gate in data.gates:
            reasons.append("no heartbeat in the period")
        if reasons:
            out.append(Attention(gate, tuple(reasons)))
    return sorted(out, key=lambda a: (-len(a.reasons), a.gate))
