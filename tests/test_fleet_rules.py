"""The fleet's attention rules (``gate_daemon.core.fleet``): what a status says, what needs a person.

Pure functions on plain values: unit cases for each condition at its threshold, and
hypothesis for the properties: a heartbeat's short status reads as the whole snapshot
does, a threshold is crossed exactly when the figure is over it, ranking keeps every
gate and puts the ones needing attention first, and any JSON at all reads without a crash.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gate_daemon.core.fleet import (
    Condition,
    GateView,
    Thresholds,
    assemble,
    conditions,
    explain,
    heartbeat_status,
    observe,
    rank,
)
from gate_daemon.core.snapshot import GateSnapshot

LIMITS = Thresholds(manifest_age_s=3600, clock_s=5, lag_s=60, silent_s=30, backlog=100)


def snapshot(
    *,
    gate: str = "north-1",
    in_service: bool = True,
    problem: str | None = None,
    manifest_age: int = 120,
    active: bool = True,
    offset: float | None = 0.25,
    lags: tuple[float | None, ...] = (1.5,),
    pending: int = 3,
    up: bool = True,
    decision: str = "local",
    online_mode: str = "online",
    lane: dict[str, Any] | None = None,
) -> GateSnapshot:
    """A whole gate status as ``/v1/status`` serves it (JSON round trip included)."""
    manifest: dict[str, Any] = {"active": active}
    if active:
        manifest |= {
            "version": 7,
            "event": "live-2026",
            "tickets": 10,
            "issued_at": "2026-12-07T20:00:00Z",
            "age_seconds": manifest_age,
            "expires_at": "2026-12-08T20:00:00Z",
            "expired": False,
        }
    peers = [
        {
            "address": f"10.0.0.{n}:8710",
            "gate": f"peer-{n}",
            "up": lag is not None,
            "lag_seconds": lag,
            "last_error": None,
            "pushed": 1,
            "pulled": 2,
            "refused": 0,
            "failures": 0,
            "dropped": 0,
        }
        for n, lag in enumerate(lags)
    ]
    status: dict[str, Any] = {
        "gate": gate,
        "event": "live-2026",
        "zone": "floor",
        "session": None,
        "mode": "entry",
        "decision": decision,
        "input": "none",
        "signals": "console",
        "uptime_seconds": 60,
        "in_service": in_service,
        "problem": problem,
        "turnstile": None,
        "input_state": None,
        "manifest": manifest,
        "ledger": {"path": "/var/lib/gate/ledger.sqlite", "epoch": "e1"},
        "counters": {"scans": 40, "offline_scans": 38, "conflicts": 1, "outcome:allow": 30},
        "since_start": {},
        "replication": {
            "problem": None,
            "key": "kid",
            "peers": peers,
            "callers": {},
            "refused_requests": {},
            "logs": 2,
            "conflicts": 2,
        },
        "upstream": {
            "url": "http://central:8700",
            "up": up,
            "pending": pending,
            "cursor": 5,
            "loops": {},
            "pushed": 1,
            "results": {},
            "pulled": 0,
            "learned": 0,
            "manifests": 1,
            "download": None,
        },
        "online": None
        if decision != "online-first"
        else {
            "mode": online_mode,
            "timeout_ms": 500.0,
            "switches": {},
            "offline_seconds": 0.0,
            "last_switch": None,
            "last_error": None,
            "calls": {},
            "to_release": 0,
            "released": 0,
            "latency_p50_ms": None,
            "latency_p99_ms": None,
        },
        "clock": {
            "now": 1.0,
            "floor": None,
            "floor_source": None,
            "offset_s": offset,
            "rtt_s": 0.01,
            "synchronised": True,
            "warning": None,
            "source": "system",
            "authenticated": True,
            "central_age_s": 1.0,
            "known": True,
            "unsigned_answers": 0,
        },
    }
    status["lane"] = {
        "state": "open",
        "since_ms": None,
        "by": None,
        "message": None,
        "mode_forced": None,
        "pending": None,
        **(lane or {}),
    }
    loaded: GateSnapshot = json.loads(json.dumps(status))
    return loaded


def test_a_whole_status_reads_into_every_column() -> None:
    view = observe("north-1", snapshot(lags=(1.5, 12.0, None)))
    assert view == GateView(
        gate="north-1",
        reachable=True,
        lane="open",
        mode="local",
        manifest_version=7,
        manifest_age_s=120.0,
        scans=40,
        offline_scans=38,
        pending_upstream=3,
        peer_lag_s=12.0,
        conflicts=2,
        clock_offset_s=0.25,
        last_heard_s=0.0,
        in_service=True,
        problem=None,
        central_up=True,
    )
    assert conditions(view, LIMITS) == ()


def test_the_heartbeat_carries_what_the_fleet_reads_and_ages_it() -> None:
    whole = snapshot(
        decision="online-first", online_mode="offline", lane={"state": "closed", "mode_forced": "offline"}
    )
    brief = json.loads(json.dumps(heartbeat_status(whole)))
    assert "ledger" not in brief and "counters" not in brief  # small: the counters travel beside it
    seen = observe("north-1", brief, counters=whole["counters"], heard_s=10)
    direct = observe("north-1", whole)
    assert seen.mode == direct.mode == "offline (forced)"
    assert seen.lane == "closed"
    assert seen.manifest_age_s == 130.0  # ten seconds older than when it was sent
    assert replace(seen, manifest_age_s=120.0, last_heard_s=0.0) == direct


def test_each_condition_at_its_threshold() -> None:
    cases = [
        (snapshot(in_service=False, problem="input failed"), Condition.OUT_OF_SERVICE),
        (snapshot(active=False), Condition.OUT_OF_SERVICE),
        (snapshot(lane={"state": "closed"}), Condition.LANE_CLOSED),
        (snapshot(up=False), Condition.CENTRAL_DOWN),
        (snapshot(offset=-5.5), Condition.CLOCK_OFF),
        (snapshot(manifest_age=3601), Condition.MANIFEST_OLD),
        (snapshot(lags=(61.0,)), Condition.LAG_HIGH),
        (snapshot(pending=101), Condition.UPSTREAM_BACKLOG),
    ]
    for status, expected in cases:
        view = observe("g", status)
        assert conditions(view, LIMITS) == (expected,), (expected, view)
        assert explain(view, expected, LIMITS)
    at_the_limit = snapshot(offset=5.0, manifest_age=3600, lags=(60.0,), pending=100)
    assert conditions(observe("g", at_the_limit), LIMITS) == ()
    assert conditions(observe("g", snapshot(lane={"state": "supervised"})), LIMITS) == ()


def test_no_manifest_is_out_of_service_with_a_reason() -> None:
    view = observe("g", snapshot(active=False))
    assert view.in_service is False and view.problem == "no valid manifest"
    assert explain(view, Condition.OUT_OF_SERVICE, LIMITS) == "no valid manifest"


def test_an_unreachable_gate_says_only_that() -> None:
    stale = observe("g", snapshot(in_service=False, offset=99), heard_s=31, reachable=False)
    assert conditions(stale, LIMITS) == (Condition.UNREACHABLE,)
    assert "not heard from for 31 s" in explain(stale, Condition.UNREACHABLE, LIMITS)
    refused = GateView("10.0.0.9:8710", reachable=False, error="ConnectError: refused")
    assert explain(refused, Condition.UNREACHABLE, LIMITS) == "ConnectError: refused"


def test_the_central_view_silent_gates_and_gates_never_heard() -> None:
    now = 10_000.0
    heard = [
        {
            "gate": "north-1",
            "last_seen": now - 5,
            "counters": {"scans": 4},
            "status": heartbeat_status(snapshot()),
        },
        {"gate": "south-1", "last_seen": now - 31, "counters": {}, "status": heartbeat_status(snapshot())},
        {"gate": None, "last_seen": "garbage"},
    ]
    ranked = assemble(["north-1", "south-1", "west-1"], heard, now, LIMITS)
    assert [(a.view.gate, a.conditions) for a in ranked] == [
        ("south-1", (Condition.UNREACHABLE,)),
        ("west-1", (Condition.UNREACHABLE,)),
        ("north-1", ()),
    ]
    assert ranked[1].view.error == "never heard from"
    assert ranked[0].reasons == ("not heard from for 31 s (over 30 s)",)
    assert ranked[1].reasons == ("never heard from",) and ranked[2].reasons == ()
    assert ranked[0].as_dict()["reasons"] == ["not heard from for 31 s (over 30 s)"]
    assert ranked[2].view.scans == 4 and ranked[2].view.last_heard_s == 5


@given(
    offset=st.floats(-1e6, 1e6),
    age=st.integers(0, 10**7),
    lag=st.floats(0, 1e6),
    pending=st.integers(0, 10**6),
)
def test_a_threshold_is_crossed_exactly_when_the_figure_is_over_it(
    offset: float, age: int, lag: float, pending: int
) -> None:
    found = set(
        conditions(
            observe("g", snapshot(offset=offset, manifest_age=age, lags=(lag,), pending=pending)), LIMITS
        )
    )
    assert (Condition.CLOCK_OFF in found) == (abs(offset) > LIMITS.clock_s)
    assert (Condition.MANIFEST_OLD in found) == (age > LIMITS.manifest_age_s)
    assert (Condition.LAG_HIGH in found) == (lag > LIMITS.lag_s)
    assert (Condition.UPSTREAM_BACKLOG in found) == (pending > LIMITS.backlog)


_VIEWS = st.builds(
    GateView,
    gate=st.text(min_size=1, max_size=8),
    reachable=st.booleans(),
    lane=st.sampled_from([None, "open", "supervised", "closed"]),
    manifest_age_s=st.none() | st.floats(0, 1e6),
    pending_upstream=st.none() | st.integers(0, 10**4),
    peer_lag_s=st.none() | st.floats(0, 1e4),
    clock_offset_s=st.none() | st.floats(-100, 100),
    in_service=st.none() | st.booleans(),
    central_up=st.none() | st.booleans(),
)


@given(st.lists(_VIEWS, max_size=12))
def test_ranking_keeps_every_gate_and_puts_attention_first(views: list[GateView]) -> None:
    ranked = rank(views, LIMITS)
    assert sorted(map(repr, (a.view for a in ranked))) == sorted(map(repr, views))
    needed = [a.needed for a in ranked]
    assert needed == sorted(needed, reverse=True)
    order = list(Condition)
    worst = [order.index(a.conditions[0]) for a in ranked if a.needed]
    assert worst == sorted(worst)
    assert rank(list(reversed(views)), LIMITS) == ranked or len({v.gate for v in views}) < len(views)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=30,
)
_KEYS = [
    "manifest",
    "clock",
    "upstream",
    "replication",
    "lane",
    "online",
    "decision",
    "in_service",
    "problem",
]


@given(st.dictionaries(st.sampled_from(_KEYS), _JSON), _JSON)
def test_any_json_reads_as_unknowns_never_a_crash(status: dict[str, Any], counters: Any) -> None:
    view = observe("g", status, counters=counters if isinstance(counters, dict) else None)
    found = conditions(view, LIMITS)
    for condition in found:
        assert isinstance(explain(view, condition, LIMITS), str)
    json.dumps(rank([view], LIMITS)[0].as_dict())
