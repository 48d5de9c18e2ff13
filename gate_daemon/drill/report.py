"""What a drill found: the invariants checked, the KPIs, and figures per gate, as report.json.

Read at the end from what each machine holds (every gate's ledger, the central's
database, read-only) and from what the driver saw (every answer the crowd got):

- ``lost``: admissions a gate acknowledged that its own ledger or the central does not
  hold at the end (after power cuts and restarts); must be 0.
- ``converged``: every gate and the central hold the same records (the union of all).
- conflicts: a ticket admitted more often than it allows (counted over the union of
  records; a re-entry ticket's holder goes in and out in order, so it expects none) is a
  provoked double entry; each must be reported at every gate and at the central, as many
  times as its excess, and no other conflict anywhere.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from gate_daemon.core.kpis import Arrival, Kpis, ModeSwitch, ScanPoint, Window, failover_kpis, kpis_per_gate
from gate_daemon.drill import network
from gate_daemon.drill.driver import Driver, Scan
from gate_daemon.drill.faults import Timeline
from gate_daemon.drill.scenario import Scenario
from gate_daemon.drill.venue import Venue
from gate_daemon.errors import GateError
from gate_daemon.store.central.checkin_book import read_checkins, read_report
from gate_daemon.store.offline_reads import read_conflicts, read_records, read_scan_modes

#: Fault kinds the failover KPIs are measured over (the others are not outages).
OUTAGES = ("central-down", "split", "loss", "bandwidth", "latency", "power-cut")

#: A record as the drill compares them: (ticket, kind, origin, hlc).
Record = tuple[str, str, str, int]


@dataclass
class Holdings:
    """What every machine holds."""

    gates: dict[str, dict[str, Record]]
    central: dict[str, tuple[str, str, str, int, float]]
    modes: dict[str, dict[str, tuple[str, float]]]
    gate_conflicts: dict[str, Counter[str]]
    central_conflicts: Counter[str]

    def union(self) -> dict[str, Record]:
        """Every record held anywhere."""
        out = {uuid: record for held in self.gates.values() for uuid, record in held.items()}
        out.update({uuid: record[:4] for uuid, record in self.central.items()})
        return out

    def converged(self) -> bool:
        """Whether every gate and the central hold the union."""
        every = set(self.union())
        return all(set(held) == every for held in self.gates.values()) and set(self.central) == every


def read_holdings(venue: Venue) -> Holdings:
    """Read every ledger and the central's database now."""
    gates, modes, conflicts = {}, {}, {}
    for number in venue.machines:
        gate = venue.gate_id(number)
        path = venue.ledger(number)
        gates[gate] = read_records(path)
        modes[gate] = read_scan_modes(path)
        conflicts[gate] = Counter(c.ticket_id for c in read_conflicts(path))
    central_conflicts = Counter(c["ticket_id"] for c in read_report(venue.central_db)["conflicts"])
    return Holdings(gates, read_checkins(venue.central_db), modes, conflicts, central_conflicts)


def expected_conflicts(union: dict[str, Record], venue: Venue) -> Counter[str]:
    """Each ticket's double entries over the union of records.

    A counted ticket: its entries beyond what it allows. A re-entry ticket: its entries
    while inside, replayed in hybrid-clock order (the only order gates that could not talk
    share; uuid breaks ties), an exit letting it out.
    """
    moves: dict[str, list[tuple[int, str, str]]] = {}
    for uuid, (ticket, kind, _, hlc) in union.items():
        moves.setdefault(ticket, []).append((hlc, uuid, kind))
    out: Counter[str] = Counter()
    for ticket_id, rows in moves.items():
        allowed = venue.plan.ticket(ticket_id).entries
        if allowed == "reentry":
            inside, excess = False, 0
            for _, _, kind in sorted(rows):
                excess += kind == "entry" and inside
                inside = kind == "entry"
        else:
            excess = max(0, sum(kind == "entry" for _, _, kind in rows) - int(allowed))
        if excess:
            out[ticket_id] = excess
    return out


def settle(venue: Venue, timeout: float) -> tuple[Holdings, float]:
    """Wait (up to ``timeout``) until the venue converges and its conflicts are all reported."""
    started = time.monotonic()
    while True:
        holdings = read_holdings_safely(venue)
        if holdings is not None:
            expected = expected_conflicts(holdings.union(), venue)
            places = [*holdings.gate_conflicts.values(), holdings.central_conflicts]
            if holdings.converged() and all(found == expected for found in places):
                return holdings, time.monotonic() - started
        if time.monotonic() - started > timeout:
            final = read_holdings(venue)
            return final, time.monotonic() - started
        time.sleep(1.0)


def read_holdings_safely(venue: Venue) -> Holdings | None:
    """``read_holdings``, or None while a file is busy or not there yet."""
    try:
        return read_holdings(venue)
    except GateError:
        return None


def build_report(
    scenario: Scenario,
    venue: Venue,
    driver: Driver,
    timeline: Timeline,
    holdings: Holdings,
    settle_s: float,
) -> dict[str, Any]:
    """report.json's content."""
    union = holdings.union()
    expected = expected_conflicts(union, venue)
    acked = [s for s in driver.scans if s.outcome == "allow" and s.record_id]
    lost = [
        {"gate": venue.gate_id(s.gate), "record": s.record_id, "missing_at": _missing(s, holdings, venue)}
        for s in acked
        if _missing(s, holdings, venue)
    ]
    places = {**holdings.gate_conflicts, "central": holdings.central_conflicts}
    mismatched = {place: _diff(found, expected) for place, found in places.items() if found != expected}
    kpis, per_gate_kpis = _kpis(venue, driver, timeline, holdings)
    gates = _per_gate(venue, driver, holdings, per_gate_kpis)
    redemptions = sum(1 for s in acked)
    traffic = {k: sum(g["traffic"][k] for g in gates.values()) for k in next(iter(gates.values()))["traffic"]}
    return {
        "scenario": scenario.name,
        "description": scenario.description,
        "gates": venue.size,
        "latency_by": (
            "user-space relay (the kernel has no netem)"
            if any(f.kind == "latency" for f in scenario.faults)
            else "no latency fault"
        ),
        "kpis": kpis,
        "lost": len(lost),
        "lost_records": lost[:50],
        "converged": holdings.converged(),
        "records": len(union),
        "settle_s": round(settle_s, 1),
        "conflicts_expected": sum(expected.values()),
        "conflicts_found": sum(holdings.central_conflicts.values()),
        "conflicts_found_per_gate": {g: sum(c.values()) for g, c in holdings.gate_conflicts.items()},
        "conflicts_mismatched": mismatched,
        "invariants_hold": not lost and holdings.converged() and not mismatched,
        "screenshots_admitted": sum(
            1 for s in driver.scans if s.purpose == "screenshot" and s.outcome == "allow"
        ),
        "screenshots_refused": sum(
            1 for s in driver.scans if s.purpose == "screenshot" and s.outcome != "allow"
        ),
        "screenshots_refused_why": dict(
            Counter(str(s.reason) for s in driver.scans if s.purpose == "screenshot" and s.outcome != "allow")
        ),
        "visits": _visits(driver.scans),
        "latency_ms": _latency(driver.scans),
        "scans": len(driver.scans),
        "unanswered": sum(1 for s in driver.scans if s.answered_ms is None),
        "redemptions": redemptions,
        "traffic": traffic,
        "requests_per_redemption": _ratio(
            traffic["requests_central"] + traffic["requests_peers"], redemptions
        ),
        "bytes_per_redemption": _ratio(traffic["bytes_out"], redemptions),
        "cpu_s_per_gate": round(statistics.mean(g["cpu_s"] for g in gates.values()), 2),
        "central_cpu_s": round(venue.central.cpu_s, 2) if venue.central else None,
        "windows": [w.__dict__ for w in timeline.windows],
        "notes": timeline.notes,
        "doors_open_ms": int(driver.doors_open * 1000),
        "per_gate": gates,
    }


def _missing(scan: Scan, holdings: Holdings, venue: Venue) -> list[str]:
    own = venue.gate_id(scan.gate)
    missing = [] if scan.record_id in holdings.gates[own] else [own]
    return missing + ([] if scan.record_id in holdings.central else ["central"])


def _diff(found: Counter[str], expected: Counter[str]) -> dict[str, int]:
    """Per ticket: found minus expected (negative: a conflict not reported)."""
    return {t: found[t] - expected[t] for t in sorted(set(found) | set(expected)) if found[t] != expected[t]}


def _kpis(
    venue: Venue, driver: Driver, timeline: Timeline, holdings: Holdings
) -> tuple[dict[str, Any], dict[str, Any]]:
    sent = {s.record_id: s.sent_ms for s in driver.scans if s.record_id}
    points = [
        ScanPoint(
            int(s.answered_ms),
            venue.gate_id(s.gate),
            str(s.outcome),
            holdings.modes[venue.gate_id(s.gate)].get(s.record_id or "", ("unknown", 0.0))[0],
        )
        for s in driver.scans
        if s.answered_ms is not None
    ]
    switches = [ModeSwitch(at, venue.gate_id(n), to) for n, to, at in sorted(driver.switches)]
    arrivals = [
        Arrival(origin, sent[uuid], int(received * 1000))
        for uuid, (_, _, origin, _, received) in holdings.central.items()
        if uuid in sent
    ]
    windows = [Window(w.start_ms, w.end_ms, w.label, w.gates) for w in timeline.windows if w.kind in OUTAGES]
    admitted = Counter(venue.gate_id(s.gate) for s in driver.scans if s.outcome == "allow")
    union = holdings.union()
    losers = Counter(union[u][2] for u in _loser_ids(venue, holdings) if u in union)
    venue_kpis = failover_kpis(
        points, windows, switches, arrivals, sum(holdings.central_conflicts.values()), sum(admitted.values())
    )
    per_gate = kpis_per_gate(points, windows, switches, arrivals, dict(losers), dict(admitted))
    return _kpi_dict(venue_kpis), {g: _kpi_dict(k) for g, k in per_gate.items()}


def _kpi_dict(kpis: Kpis) -> dict[str, float | None]:
    """The four figures for report.json, rounded."""

    def rounded(value: float | None, digits: int = 3) -> float | None:
        return None if value is None else round(value, digits)

    return {
        "mode_switch_s": rounded(kpis.mode_switch_s),
        "throughput_drop_pct": rounded(kpis.throughput_drop_pct),
        "conflict_rate": rounded(kpis.conflict_rate, 5),
        "sync_restoration_s": rounded(kpis.sync_restoration_s),
    }


def _loser_ids(venue: Venue, holdings: Holdings) -> list[str]:
    report = read_report(venue.central_db)
    return [str(c["loser"]) for c in report["conflicts"]]


def _per_gate(
    venue: Venue, driver: Driver, holdings: Holdings, kpis: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    out = {}
    for number, machine in venue.machines.items():
        gate = venue.gate_id(number)
        scans = [s for s in driver.scans if s.gate == number]
        admitted = sum(1 for s in scans if s.outcome == "allow")
        counters = _counters(machine)
        out[gate] = {
            "scans": len(scans),
            "admitted": admitted,
            "offline_decided": sum(1 for m, _ in holdings.modes[gate].values() if m == "offline"),
            "latency_ms": _latency(scans),
            "kpis": kpis.get(gate, {}),
            "conflicts_reported": sum(holdings.gate_conflicts[gate].values()),
            "records_held": len(holdings.gates[gate]),
            "cpu_s": round(venue.gates[number].cpu_s, 2),
            "restarts": venue.gates[number].starts - 1,
            "traffic": {
                "requests_central": counters.get("requests-central", (0, 0))[0],
                "requests_peers": counters.get("requests-peers", (0, 0))[0],
                "bytes_out": counters.get("bytes-out", (0, 0))[1],
                "bytes_in": counters.get("bytes-in", (0, 0))[1],
            },
            "throughput": _per_minute(scans, driver.doors_open),
        }
    return out


def _counters(machine: network.Machine) -> dict[str, tuple[int, int]]:
    try:
        return network.counters(machine)
    except (network.NetworkError, ValueError):
        return {}


def _per_minute(scans: list[Scan], doors_open: float, bucket_s: int = 5) -> list[int]:
    """Answered scans per ``bucket_s`` seconds from doors-open, for the chart."""
    counts: Counter[int] = Counter(
        int((s.answered_ms / 1000 - doors_open) // bucket_s) for s in scans if s.answered_ms is not None
    )
    return [counts[i] for i in range(max(counts, default=-1) + 1)]


def _visits(scans: list[Scan]) -> dict[str, dict[str, int]]:
    """Per purpose of the visit: how many got each outcome and reason."""
    out: dict[str, Counter[str]] = {}
    for scan in scans:
        out.setdefault(scan.purpose, Counter())[f"{scan.outcome}:{scan.reason}"] += 1
    return {purpose: dict(counts) for purpose, counts in sorted(out.items())}


def _latency(scans: list[Scan]) -> dict[str, float | None]:
    values = sorted(s.latency_ms for s in scans if s.latency_ms is not None)
    if not values:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": round(values[len(values) // 2], 1),
        "p99": round(values[min(len(values) - 1, int(len(values) * 0.99))], 1),
        "max": round(values[-1], 1),
    }


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 2) if whole else None
