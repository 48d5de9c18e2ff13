"""The gate's status as Prometheus metrics, for fleet ops to scrape from every gate.

Made from one status snapshot (``gate_daemon.core.snapshot.GateSnapshot``) at each
scrape, through prometheus-client's exposition format. Each family of persisted counters
(``gate_daemon.core.counters``) becomes one metric with a label (``outcome:allow`` ->
``gate_scans_total{outcome="allow"}``).
Which gate it is comes from ``gate_info`` and from the scrape target, as Prometheus
labels targets.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from gate_daemon.core import counters as names
from gate_daemon.core.counters import Family
from gate_daemon.core.snapshot import (
    CapacityStatus,
    ClockStatus,
    GateSnapshot,
    LaneStatus,
    OnlineStatus,
    ReplicationStatus,
    UpstreamStatus,
)

#: Labelled counters: counter family -> (metric name, label, help).
_LABELLED = {
    Family.OUTCOME: ("gate_scans", "outcome", "Scans by outcome (allow, deny, already_used, too_early)."),
    Family.REASON: ("gate_scan_reasons", "reason", "Scans by reason code (docs/DECISIONS.md)."),
    Family.KIND: ("gate_scan_kinds", "kind", "Scans by kind (entry, exit)."),
    Family.RESOLUTION: ("gate_resolutions", "resolution", "What scans did (admitted, exited, refused, ...)."),
    Family.MANIFEST_REFUSED: ("gate_manifest_refusals", "reason", "Manifests refused, by reason."),
    Family.PASSAGE: (
        "gate_passages",
        "result",
        "Turnstile passages (passed, not_passed, unverified, unreleased).",
    ),
    Family.PEER: (
        "gate_replicated_records",
        "result",
        "Records from other gates: applied, refused (colliding), clock_ahead (stamp too far ahead).",
    ),
    Family.UPSTREAM: (
        "gate_upstream_records",
        "result",
        "Records answered by the central (applied, duplicate, conflict, rejected); manifests fetched.",
    ),
    Family.UPSTREAM_REFUSED: (
        "gate_upstream_refused_records",
        "reason",
        "Records pulled from the central that did not verify (unknown_origin, bad_signature, ...).",
    ),
    Family.MODE_SWITCH: (
        "gate_mode_switches",
        "to",
        "Online-first: switches to offline (the breaker opened) and back online.",
    ),
    Family.COMMAND: (
        "gate_commands",
        "result",
        "Supervisor commands: applied, or refused by reason (bad_signature, replayed, ...).",
    ),
    Family.LANE: (
        "gate_lane_entries",
        "result",
        "Supervised lane: allows confirmed by a steward, and voided for want of a confirmation.",
    ),
}
#: Plain counters: counter name -> (metric name, help).
_PLAIN = {
    names.SCANS: ("gate_scans_all", "Every scan, whatever its outcome."),
    names.route_scans("offline"): (
        "gate_offline_scans",
        "Scans decided offline (from the local manifest and ledger).",
    ),
    names.route_scans("online"): (
        "gate_online_scans",
        "Scans decided with the central's answer (online-first).",
    ),
    names.MANIFEST_ACTIVATIONS: ("gate_manifest_activations", "Manifests verified and activated."),
    names.UNREADABLE_IMAGES: (
        "gate_unreadable_images",
        "Files in the image input's folder that were not images.",
    ),
    names.MANUAL_RELEASES: ("gate_manual_releases", "Turnstile releases by the steward's button."),
    names.CONFLICTS: ("gate_conflicts_found", "Double entries found as records from other gates arrived."),
    names.OVERRIDES: ("gate_overrides", "Refused entries a supervisor's badge admitted (forced entries)."),
}


class _Snapshot:
    """A collector over one status snapshot (prometheus-client calls ``collect`` once)."""

    def __init__(self, status: GateSnapshot) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        status = self.status
        info = InfoMetricFamily("gate", "Which gate this is.")
        labels = {"gate": status["gate"], "event": status["event"], "mode": status["mode"]}
        labels["zone"] = status["zone"] or ""
        info.add_metric([], labels)
        yield info
        yield GaugeMetricFamily(
            "gate_in_service", "1 while the gate can admit people.", value=int(status["in_service"])
        )
        yield GaugeMetricFamily(
            "gate_uptime_seconds", "Seconds since the gate started.", value=status["uptime_seconds"]
        )
        manifest = status["manifest"]
        yield GaugeMetricFamily(
            "gate_manifest_active", "1 while a valid manifest is active.", value=int(manifest["active"])
        )
        if manifest["active"]:
            yield GaugeMetricFamily(
                "gate_manifest_version", "The active manifest's version.", value=manifest["version"]
            )
            yield GaugeMetricFamily(
                "gate_manifest_age_seconds",
                "Seconds since the active manifest was issued.",
                value=manifest["age_seconds"],
            )
            yield GaugeMetricFamily(
                "gate_manifest_tickets", "Tickets in the active manifest.", value=manifest["tickets"]
            )
        counters = status["counters"]
        for counted, (name, label, text) in _LABELLED.items():
            family = CounterMetricFamily(name, text, labels=[label])
            for tail, value in sorted(names.by_label(counters, counted).items()):
                family.add_metric([tail], value)
            yield family
        for key, (name, text) in _PLAIN.items():
            yield CounterMetricFamily(name, text, value=counters.get(key, 0))
        for key, value in status["since_start"].items():
            yield GaugeMetricFamily(
                f"gate_since_start_{key}",
                f"{key.replace('_', ' ').capitalize()} since the gate started.",
                value=value,
            )
        turnstile = status["turnstile"]
        if turnstile:
            yield GaugeMetricFamily(
                "gate_turnstile_pending", "Admissions released, not yet through.", value=turnstile["pending"]
            )
            yield GaugeMetricFamily(
                "gate_turnstile_sensor_ok",
                "0 while the passage sensor is not believed.",
                value=int(turnstile["problem"] is None),
            )
        yield from _replication(status["replication"])
        yield from _upstream(status["upstream"], status["online"])
        yield from _clock(status["clock"])
        yield from _lane(status["lane"])
        yield from _capacity(status.get("capacity", []))
        source = status["input_state"]
        stats = None if source is None else source.get("stats")
        if stats:
            yield CounterMetricFamily("gate_camera_frames", "Camera frames captured.", value=stats["frames"])
            yield CounterMetricFamily(
                "gate_camera_errors", "Camera failures (open, capture, stall).", value=stats["camera_errors"]
            )
            decode_ms = stats["last_decode_ms"]
            if decode_ms is not None:
                yield GaugeMetricFamily(
                    "gate_camera_decode_seconds",
                    "How long the last frame took to decode.",
                    value=decode_ms / 1000,
                )


def _replication(state: ReplicationStatus | None) -> Iterator[Metric]:
    """Peer links, callers and conflicts (gates that share redemptions only)."""
    if state is None:
        return
    yield GaugeMetricFamily(
        "gate_replication_ok", "1 while this gate can share redemptions.", value=int(state["problem"] is None)
    )
    yield GaugeMetricFamily("gate_conflicts", "Double entries recorded now.", value=state["conflicts"])
    up = GaugeMetricFamily("gate_peer_up", "1 while the last exchange with the peer worked.", labels=["peer"])
    lag = GaugeMetricFamily(
        "gate_peer_lag_seconds",
        "Seconds since a pull from the peer last found nothing more: how stale this gate's copy may be.",
        labels=["peer"],
    )
    pushed = CounterMetricFamily("gate_peer_pushed_records", "Records pushed to the peer.", labels=["peer"])
    pulled = CounterMetricFamily(
        "gate_peer_pulled_records", "New records pulled from the peer.", labels=["peer"]
    )
    failures = CounterMetricFamily("gate_peer_failures", "Failed exchanges with the peer.", labels=["peer"])
    dropped = CounterMetricFamily(
        "gate_peer_dropped_records", "Pushes given up (pulls carry them).", labels=["peer"]
    )
    for peer in state["peers"]:
        label = [peer["address"]]
        up.add_metric(label, int(peer["up"]))
        if peer["lag_seconds"] is not None:
            lag.add_metric(label, peer["lag_seconds"])
        pushed.add_metric(label, peer["pushed"])
        pulled.add_metric(label, peer["pulled"])
        failures.add_metric(label, peer["failures"])
        dropped.add_metric(label, peer["dropped"])
    yield from (up, lag, pushed, pulled, failures, dropped)
    offset = GaugeMetricFamily(
        "gate_peer_clock_offset_seconds",
        "The calling gate's clock minus this one's, at its last request.",
        labels=["gate"],
    )
    for gate, seen in sorted(state["callers"].items()):
        offset.add_metric([gate], seen["clock_offset_ms"] / 1000)
    yield offset
    refused = CounterMetricFamily(
        "gate_peer_refused_requests", "Peer requests refused, by error.", labels=["error"]
    )
    for name, value in sorted(state["refused_requests"].items()):
        refused.add_metric([name], value)
    yield refused


def _upstream(sync: UpstreamStatus | None, online: OnlineStatus | None) -> Iterator[Metric]:
    """The central: what waits to be sent, how stale the pull is, online-first's breaker."""
    if sync is not None:
        yield GaugeMetricFamily(
            "gate_upstream_up", "1 while the last drain to the central worked.", value=int(sync["up"])
        )
        yield GaugeMetricFamily(
            "gate_upstream_pending_records",
            "Records the central has not answered for yet.",
            value=sync["pending"],
        )
        yield GaugeMetricFamily(
            "gate_upstream_cursor", "The central's pull cursor reached.", value=sync["cursor"]
        )
        ok = GaugeMetricFamily(
            "gate_upstream_last_ok_timestamp_seconds",
            "When each upstream loop last succeeded (manifest, drain, pull, heartbeat).",
            labels=["loop"],
        )
        for name, loop in sorted(sync["loops"].items()):
            if loop["ok_at"] is not None:
                ok.add_metric([name], loop["ok_at"])
        yield ok
    if online is not None:
        yield GaugeMetricFamily(
            "gate_online",
            "Online-first: 1 while scans are put to the central first.",
            value=int(online["mode"] == "online"),
        )
        yield CounterMetricFamily(
            "gate_offline_time_seconds",
            "Online-first: time spent offline (the breaker open) since start.",
            value=online["offline_seconds"],
        )
        last = online["last_switch"]
        if last is not None:
            yield GaugeMetricFamily(
                "gate_mode_switch_duration_seconds",
                "Online-first: how long the last switch took (since the first bad call, or going offline).",
                value=last["took_s"],
            )
        if online["latency_p99_ms"] is not None:
            yield GaugeMetricFamily(
                "gate_online_latency_p99_seconds",
                "Online-first: 99th percentile of the central's validate latency (last 256 calls).",
                value=online["latency_p99_ms"] / 1000,
            )


def _clock(clock: ClockStatus) -> Iterator[Metric]:
    """The clock's estimated error, where decisions take the time from, and whether it is known."""
    if clock["offset_s"] is not None:
        yield GaugeMetricFamily(
            "gate_clock_offset_seconds",
            "The system clock minus the central's (its signed time, else its Date headers).",
            value=clock["offset_s"],
        )
    yield GaugeMetricFamily(
        "gate_clock_ok",
        "0 while the clock is known to be wrong (status says why).",
        value=int(clock["warning"] is None),
    )
    source = GaugeMetricFamily(
        "gate_clock_source",
        "1 for where decisions take the time from: system, central (its signed time) or floor.",
        labels=["source"],
    )
    for name in ("system", "central", "floor"):
        source.add_metric([name], int(clock["source"] == name))
    yield source
    yield GaugeMetricFamily(
        "gate_clock_authenticated",
        "1 while the offset comes from the central's signed time.",
        value=int(clock["authenticated"]),
    )
    if clock["known"] is not None:
        yield GaugeMetricFamily(
            "gate_clock_known",
            "0 while the gate cannot know the time (no synchronised clock, no signed time from the central).",
            value=int(clock["known"]),
        )
    if clock["central_age_s"] is not None:
        yield GaugeMetricFamily(
            "gate_clock_central_age_seconds",
            "Seconds since the central's signed time that steers decisions was read.",
            value=clock["central_age_s"],
        )
    yield CounterMetricFamily(
        "gate_clock_unsigned_answers",
        "Answers of the central whose signed time was missing or did not verify (since start).",
        value=clock["unsigned_answers"],
    )


def _lane(lane: LaneStatus) -> Iterator[Metric]:
    """The lane's state, one series per state (1 for the one it is in), and what it holds."""
    state = GaugeMetricFamily(
        "gate_lane_state",
        "1 for the lane's state (open, supervised, closed), by supervisors.",
        labels=["state"],
    )
    for name in ("open", "supervised", "closed"):
        state.add_metric([name], int(lane["state"] == name))
    yield state
    forced = GaugeMetricFamily(
        "gate_mode_forced", "1 for a decision mode a supervisor forced (online, offline).", labels=["mode"]
    )
    for name in ("online", "offline"):
        forced.add_metric([name], int(lane["mode_forced"] == name))
    yield forced
    yield GaugeMetricFamily(
        "gate_lane_pending",
        "1 while a supervised lane's allow waits for a steward.",
        value=int(bool(lane["pending"])),
    )
    unverified = CounterMetricFamily(
        "gate_commands_unverified",
        "Commands refused before their signature verified (never written to the ledger), by refusal.",
        labels=["refusal"],
    )
    for name in ("bad_command", "bad_signature", "unknown_supervisor"):
        unverified.add_metric([name], lane.get("unverified", {}).get(name, 0))
    yield unverified


def _capacity(scopes: list[CapacityStatus]) -> Iterator[Metric]:
    """Each capacity (scope ``*``: the venue): people inside as this gate counts them, and its share."""
    if not scopes:
        return
    capacity = GaugeMetricFamily(
        "gate_capacity", "The capacity the manifest sets, by scope.", labels=["scope"]
    )
    inside = GaugeMetricFamily(
        "gate_capacity_inside",
        "People inside (entries minus exits) as this gate counts them.",
        labels=["scope"],
    )
    share = GaugeMetricFamily(
        "gate_capacity_share",
        "Strict mode: the places this gate may still admit on its own.",
        labels=["scope"],
    )
    for scope in scopes:
        capacity.add_metric([scope["scope"]], scope["capacity"])
        inside.add_metric([scope["scope"]], scope["inside"])
        if scope["share"] is not None:
            share.add_metric([scope["scope"]], scope["share"])
    yield capacity
    yield inside
    yield share


def render(status: GateSnapshot) -> bytes:
    """The Prometheus text exposition of one status snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(status))
    return generate_latest(registry)
