"""Which gates need attention, and why: the fleet's rules, pure.

A gate is seen either straight from its ``GET /v1/status`` (a whole ``GateSnapshot``)
or through the central, which keeps the last heartbeat of each gate: its counters and
the short status ``heartbeat_status`` cuts from the snapshot. ``observe`` reads either
into one ``GateView``; a reader that gets JSON from the network gets it through here,
so a field of the wrong type is read as unknown, never as a crash. ``conditions`` names
what needs a person (``Condition``), against ``Thresholds``; ``rank`` puts the gates
that need attention first, the worst condition first. ``gatectl fleet``, the central's
``GET /v1/fleet`` and its page ``/fleet`` all judge through ``rank``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from gate_daemon.core.snapshot import GateSnapshot
from gate_daemon.core.times import format_span


class Condition(StrEnum):
    """Something about a gate a person should look at; the order is the order of urgency.

    Each has an SOP card of the same name (``sop/NAME.md``, docs/FLEET.md).
    """

    #: No answer from the gate (``--gates``), or no heartbeat for ``silent_s`` (the central).
    UNREACHABLE = "unreachable"
    #: The gate refuses every scan: no valid manifest, or a fault it names.
    OUT_OF_SERVICE = "out_of_service"
    #: A supervisor closed the lane: every scan is refused (``lane_closed``).
    LANE_CLOSED = "lane_closed"
    #: The gate cannot reach the central (its drain has not worked lately).
    CENTRAL_DOWN = "central_down"
    #: The gate's clock is off the central's by more than ``clock_s``.
    CLOCK_OFF = "clock_off"
    #: The active manifest was issued more than ``manifest_age_s`` ago.
    MANIFEST_OLD = "manifest_old"
    #: A peer gate's records arrive more than ``lag_s`` late.
    LAG_HIGH = "lag_high"
    #: More than ``backlog`` records wait to go to the central.
    UPSTREAM_BACKLOG = "upstream_backlog"


_URGENCY = {condition: rank for rank, condition in enumerate(Condition)}


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Where a figure starts to need attention (``gatectl fleet`` flags, ``[central]`` keys)."""

    #: Seconds since the active manifest was issued.
    manifest_age_s: float = 86_400.0
    #: Seconds between the gate's clock and the central's, either way.
    clock_s: float = 5.0
    #: Seconds a peer's records arrive late.
    lag_s: float = 60.0
    #: Seconds without a heartbeat before the central calls a gate unreachable.
    silent_s: float = 60.0
    #: Records waiting for the central.
    backlog: int = 1000


@dataclass(frozen=True, slots=True)
class GateView:
    """One gate as the fleet sees it; None where the source does not say."""

    gate: str
    reachable: bool
    lane: str | None = None
    mode: str | None = None
    manifest_version: int | None = None
    manifest_age_s: float | None = None
    scans: int | None = None
    offline_scans: int | None = None
    pending_upstream: int | None = None
    peer_lag_s: float | None = None
    conflicts: int | None = None
    clock_offset_s: float | None = None
    #: Seconds since the gate was last heard (its answer, or its last heartbeat).
    last_heard_s: float | None = None
    in_service: bool | None = None
    problem: str | None = None
    central_up: bool | None = None
    #: Why it is unreachable (the connection's error), when it is.
    error: str | None = None
    #: People inside per capacity, as the gate counts them ("floor 42/100, 8 held"; docs/CAPACITY.md).
    capacity: str | None = None


@dataclass(frozen=True, slots=True)
class Attention:
    """A gate and the conditions it is in (none: all well)."""

    view: GateView
    conditions: tuple[Condition, ...]
    #: Each condition in words (``explain``), in the same order.
    reasons: tuple[str, ...] = ()

    @property
    def needed(self) -> bool:
        """Whether a person should look at this gate."""
        return bool(self.conditions)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the view's fields, ``conditions`` by name and their ``reasons``."""
        return {
            **asdict(self.view),
            "conditions": [str(c) for c in self.conditions],
            "reasons": list(self.reasons),
        }


# ------------------------------------------------------------------ reading a status


def _at(data: object, *path: str) -> object:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _count(counters: object, name: str) -> int | None:
    """A persisted counter: 0 when the counters say nothing of it yet, None without counters."""
    return _int(counters.get(name, 0)) if isinstance(counters, Mapping) else None


def _mode(status: Mapping[str, Any]) -> str | None:
    """How the gate decides: ``online``/``offline`` (online-first) or ``local``; ``(forced)`` by command."""
    decision = _str(status.get("decision"))
    mode = _str(_at(status, "online", "mode")) if decision == "online-first" else decision
    if mode is not None and _str(_at(status, "lane", "mode_forced")) is not None:
        mode += " (forced)"
    return mode


def _peer_lag(status: Mapping[str, Any]) -> float | None:
    peers = _at(status, "replication", "peers")
    lags = [_float(_at(p, "lag_seconds")) for p in peers] if isinstance(peers, list) else []
    known = [lag for lag in lags if lag is not None]
    return max(known) if known else None


def observe(
    gate: str,
    status: Mapping[str, Any],
    *,
    counters: Mapping[str, Any] | None = None,
    heard_s: float = 0.0,
    reachable: bool = True,
) -> GateView:
    """A gate's view from its status (whole or a heartbeat's), ``heard_s`` seconds old.

    ``counters`` default to the status's own (a whole snapshot carries them). Ages in the
    status grew by ``heard_s`` since it was made.
    """
    counts = counters if counters is not None else status.get("counters")
    manifest_active = _bool(_at(status, "manifest", "active"))
    age = _float(_at(status, "manifest", "age_seconds")) if manifest_active else None
    in_service = _bool(status.get("in_service"))
    problem = _str(status.get("problem"))
    if manifest_active is False or _bool(_at(status, "manifest", "expired")):
        in_service = False
        problem = problem or ("no valid manifest" if manifest_active is False else "the manifest expired")
    conflicts = _int(_at(status, "replication", "conflicts"))
    return GateView(
        gate=gate,
        reachable=reachable,
        lane=_str(_at(status, "lane", "state")),
        mode=_mode(status),
        manifest_version=_int(_at(status, "manifest", "version")) if manifest_active else None,
        manifest_age_s=None if age is None else age + heard_s,
        scans=_count(counts, "scans"),
        offline_scans=_count(counts, "offline_scans"),
        pending_upstream=_int(_at(status, "upstream", "pending")),
        peer_lag_s=_peer_lag(status),
        conflicts=conflicts if conflicts is not None else _count(counts, "conflicts"),
        clock_offset_s=_float(_at(status, "clock", "offset_s")),
        last_heard_s=heard_s,
        in_service=in_service,
        problem=problem,
        central_up=_bool(_at(status, "upstream", "up")),
        capacity=_capacity(status.get("capacity")),
    )


def _capacity(scopes: object) -> str | None:
    """Each capacity in a few words: "venue 420/500, floor 42/100 (8 held)"; None without any."""
    if not isinstance(scopes, list):
        return None
    parts = []
    for scope in scopes:
        name, limit = _str(_at(scope, "scope")), _int(_at(scope, "capacity"))
        if name is None or limit is None:
            continue
        inside, share = _int(_at(scope, "inside")), _int(_at(scope, "share"))
        held = "" if share is None else f" ({share} held)"
        count = "?" if inside is None else inside
        parts.append(f"{'venue' if name == '*' else name} {count}/{limit}{held}")
    return ", ".join(parts) or None


def from_heartbeat(
    gate: str, status: Mapping[str, Any], counters: Mapping[str, Any], heard_s: float, limits: Thresholds
) -> GateView:
    """A gate as the central holds it: reachable while its last heartbeat is at most ``silent_s`` old."""
    return observe(gate, status, counters=counters, heard_s=heard_s, reachable=heard_s <= limits.silent_s)


def never_heard(gate: str) -> GateView:
    """A gate of the roster the central has no heartbeat from."""
    return GateView(gate, reachable=False, error="never heard from")


def assemble(
    roster: Iterable[str], heard: Iterable[Mapping[str, Any]], now: float, limits: Thresholds
) -> list[Attention]:
    """The fleet as the central holds it, ranked: each heartbeat kept (``CentralStore.heard``) and
    each gate of ``roster`` never heard from."""
    views = []
    for beat in heard:
        gate, last_seen = _str(beat.get("gate")), _float(beat.get("last_seen"))
        if gate is None or last_seen is None:
            continue
        status, counters = beat.get("status"), beat.get("counters")
        views.append(
            from_heartbeat(
                gate,
                status if isinstance(status, Mapping) else {},
                counters if isinstance(counters, Mapping) else {},
                max(0.0, now - last_seen),
                limits,
            )
        )
    known = {view.gate for view in views}
    views += [never_heard(gate) for gate in roster if gate not in known]
    return rank(views, limits)


def heartbeat_status(snapshot: GateSnapshot) -> dict[str, Any]:
    """What a heartbeat carries of a gate's status: what ``observe`` reads, small and free of secrets."""
    upstream, replication, online = snapshot["upstream"], snapshot["replication"], snapshot["online"]
    brief: dict[str, Any] = {
        "mode": snapshot["mode"],
        "zone": snapshot["zone"],
        "manifest": snapshot["manifest"],
        "decision": snapshot["decision"],
        "clock": snapshot["clock"],
        "uptime_seconds": snapshot["uptime_seconds"],
        "in_service": snapshot["in_service"],
        "problem": snapshot["problem"],
        "lane": snapshot["lane"],
        "capacity": snapshot.get("capacity", []),
        "upstream": None if upstream is None else {"up": upstream["up"], "pending": upstream["pending"]},
        "online": None if online is None else {"mode": online["mode"]},
        "replication": None
        if replication is None
        else {
            "conflicts": replication["conflicts"],
            "peers": [
                {"gate": p["gate"], "up": p["up"], "lag_seconds": p["lag_seconds"]}
                for p in replication["peers"]
            ],
        },
        # For the central's heartbeat history (docs/REPORTS.md): how it decided, and its backlog.
        "route": "offline" if online is None else online["mode"],
        "pending": None if upstream is None else upstream["pending"],
    }
    return brief


# ------------------------------------------------------------------ judging


def conditions(view: GateView, limits: Thresholds) -> tuple[Condition, ...]:
    """What about ``view`` needs attention, most urgent first; an unreachable gate says nothing more."""
    if not view.reachable:
        return (Condition.UNREACHABLE,)
    found = []
    if view.in_service is False:
        found.append(Condition.OUT_OF_SERVICE)
    if view.lane == "closed":
        found.append(Condition.LANE_CLOSED)
    if view.central_up is False:
        found.append(Condition.CENTRAL_DOWN)
    if view.clock_offset_s is not None and abs(view.clock_offset_s) > limits.clock_s:
        found.append(Condition.CLOCK_OFF)
    if view.manifest_age_s is not None and view.manifest_age_s > limits.manifest_age_s:
        found.append(Condition.MANIFEST_OLD)
    if view.peer_lag_s is not None and view.peer_lag_s > limits.lag_s:
        found.append(Condition.LAG_HIGH)
    if view.pending_upstream is not None and view.pending_upstream > limits.backlog:
        found.append(Condition.UPSTREAM_BACKLOG)
    return tuple(found)


def span(seconds: float) -> str:
    """A duration for people: tenths of a second under 10 s, whole seconds under 2 min, then coarser."""
    if seconds < 10:
        return f"{max(0.0, seconds):.1f} s"
    return f"{seconds:.0f} s" if seconds < 120 else format_span(seconds)


def explain(view: GateView, condition: Condition, limits: Thresholds) -> str:
    """``condition`` of ``view`` in words, with the figure and the threshold it crossed."""
    match condition:
        case Condition.UNREACHABLE:
            if view.last_heard_s is not None:
                return f"not heard from for {span(view.last_heard_s)} (over {span(limits.silent_s)})"
            return view.error or "no answer"
        case Condition.OUT_OF_SERVICE:
            return view.problem or "out of service"
        case Condition.LANE_CLOSED:
            return "a supervisor closed the lane: every scan is refused"
        case Condition.CENTRAL_DOWN:
            return "the gate's last drain to the central failed"
        case Condition.CLOCK_OFF:
            return f"clock {view.clock_offset_s or 0:+.1f} s off the central's (over {limits.clock_s:g} s)"
        case Condition.MANIFEST_OLD:
            age = format_span(view.manifest_age_s or 0)
            return f"manifest v{view.manifest_version} issued {age} ago (over {span(limits.manifest_age_s)})"
        case Condition.LAG_HIGH:
            return f"a peer's records {span(view.peer_lag_s or 0)} late (over {span(limits.lag_s)})"
        case Condition.UPSTREAM_BACKLOG:
            return f"{view.pending_upstream} records wait for the central (over {limits.backlog})"


def rank(views: Iterable[GateView], limits: Thresholds) -> list[Attention]:
    """Every gate judged: those needing attention first (the most urgent condition first), then by id."""
    judged = []
    for view in views:
        found = conditions(view, limits)
        judged.append(Attention(view, found, tuple(explain(view, c, limits) for c in found)))

    def order(item: Attention) -> tuple[int, int, str]:
        worst = min((_URGENCY[c] for c in item.conditions), default=len(_URGENCY))
        return (0 if item.needed else 1, worst, item.view.gate)

    return sorted(judged, key=order)
