"""The crowd of a drill, planned before it starts: tickets, and who shows what when.

Pure and seeded: the same scenario and venue size plan the same crowd. Arrivals follow a
bell around the scenario's peak (doors-open), cut to the first four fifths of the drill
so the queues drain before the end. Each attendee holds one ticket of the mix (signed,
reference code, legacy ORDER-SEAT; single, three-entry, re-entry); a share of them pass a
screenshot of their code to a friend who shows it at another gate seconds or minutes
later; a share carry a canceled or a wrong-zone ticket; re-entry holders go out and come
back in; tickets canceled mid-drill (a ``cancel`` fault) are picked from holders who come
after the new manifest is published.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from gate_daemon.drill.scenario import Fault, Scenario

#: The zone every gate of the venue serves; wrong-zone tickets are for ``OTHER_ZONE``.
ZONE = "floor"
OTHER_ZONE = "balcony"
FORMATS = ("signed", "reference", "legacy")


@dataclass(frozen=True)
class Ticket:
    """One ticket as tickets.csv lists it, and how its holder shows it."""

    ticket_id: str
    order_id: str
    status: str
    zone: str
    #: "1", "3" or "reentry", as in tickets.csv.
    entries: str
    #: "signed", "reference" or "legacy".
    format: str
    #: The reference code (format "reference"), else "".
    code: str = ""

    def row(self, status: str | None = None) -> str:
        """Its tickets.csv line (``status`` overrides, for a cancellation)."""
        cells = (
            self.ticket_id,
            self.order_id,
            "1",
            status or self.status,
            "now",
            self.zone,
            self.entries,
            self.code,
        )
        return ",".join(cells)


@dataclass(frozen=True)
class Visit:
    """Someone showing a ticket at a gate."""

    at_s: float
    ticket_id: str
    #: "holder", "screenshot", "canceled", "wrong-zone", "reentry" or "late-canceled".
    purpose: str
    kind: str = "entry"
    #: For a screenshot: the visit whose code was shared (the friend avoids that gate).
    shared_from: int | None = None


@dataclass(frozen=True)
class Plan:
    """The whole crowd."""

    tickets: tuple[Ticket, ...]
    #: In order of arrival; ``Visit.shared_from`` indexes this tuple.
    visits: tuple[Visit, ...]
    #: Tickets canceled by each ``cancel`` fault, in the order of the scenario's faults.
    cancellations: tuple[tuple[str, ...], ...]

    def ticket(self, ticket_id: str) -> Ticket:
        """The ticket with this id."""
        return self._by_id[ticket_id]

    @property
    def _by_id(self) -> dict[str, Ticket]:
        return {t.ticket_id: t for t in self.tickets}


def plan_crowd(scenario: Scenario, gates: int) -> Plan:
    """The crowd for ``scenario`` at a venue of ``gates`` gates."""
    crowd = scenario.crowd
    rng = random.Random(scenario.seed * 1_000_003 + gates)
    horizon = scenario.duration_s * 0.8
    count = crowd.per_gate * gates
    times = sorted(_arrival(rng, crowd.peak_s, crowd.spread_s, horizon) for _ in range(count))
    tickets: list[Ticket] = []
    visits: list[tuple[float, Visit, int | None]] = []
    for n, at in enumerate(times, start=1):
        ticket, purpose = _ticket(rng, n, scenario)
        tickets.append(ticket)
        visits.append((at, Visit(at, ticket.ticket_id, purpose), None))
        if ticket.entries == "reentry" and purpose == "holder":
            out = min(at + rng.uniform(10, 40), horizon)
            back = min(out + rng.uniform(5, 20), horizon)
            visits.append((out, Visit(out, ticket.ticket_id, "reentry", kind="exit"), None))
            visits.append((back, Visit(back, ticket.ticket_id, "reentry"), None))
        elif purpose == "holder" and rng.random() < crowd.screenshot_share:
            later = at + rng.uniform(*crowd.screenshot_delay_s)
            if later < horizon:
                visits.append((later, Visit(later, ticket.ticket_id, "screenshot"), len(visits) - 1))
    ordered = sorted(range(len(visits)), key=lambda i: (visits[i][0], i))
    position = {old: new for new, old in enumerate(ordered)}
    final = tuple(
        Visit(v.at_s, v.ticket_id, v.purpose, v.kind, position[src] if src is not None else None)
        for _, v, src in (visits[i] for i in ordered)
    )
    cancellations = tuple(
        _cancel(rng, fault, final, {t.ticket_id: t for t in tickets})
        for fault in scenario.faults
        if fault.kind == "cancel"
    )
    late = {ticket for group in cancellations for ticket in group}
    final = tuple(
        Visit(v.at_s, v.ticket_id, "late-canceled", v.kind, v.shared_from)
        if v.ticket_id in late and v.purpose == "holder"
        else v
        for v in final
    )
    return Plan(tuple(tickets), final, cancellations)


def _arrival(rng: random.Random, peak: float, spread: float, horizon: float) -> float:
    while True:
        at = rng.gauss(peak, spread)
        if 0 <= at < horizon:
            return at


def _ticket(rng: random.Random, n: int, scenario: Scenario) -> tuple[Ticket, str]:
    crowd = scenario.crowd
    fmt = rng.choices(FORMATS, weights=crowd.mix)[0]
    roll = rng.random()
    status, zone, purpose = "completed", ZONE, "holder"
    if roll < crowd.canceled_share:
        status, purpose = "canceled", "canceled"
    elif roll < crowd.canceled_share + crowd.wrong_zone_share:
        zone, purpose = OTHER_ZONE, "wrong-zone"
    kind = rng.random()
    entries = "1"
    if kind < crowd.multi_share:
        entries = "3"
    elif kind < crowd.multi_share + crowd.reentry_share:
        entries = "reentry"
    code = f"DRILL-{rng.getrandbits(100):026x}" if fmt == "reference" else ""
    ticket = Ticket(f"T-{n:06d}", f"O{n}", status, zone, entries, fmt, code)
    return ticket, purpose


def _cancel(
    rng: random.Random, fault: Fault, visits: tuple[Visit, ...], tickets: dict[str, Ticket]
) -> tuple[str, ...]:
    """Tickets whose only holder comes well after the cancellation is published."""
    shown: dict[str, int] = {}
    for visit in visits:
        shown[visit.ticket_id] = shown.get(visit.ticket_id, 0) + 1
    candidates = sorted(
        {
            v.ticket_id
            for v in visits
            if v.purpose == "holder"
            and v.at_s > fault.at_s + 30
            and shown[v.ticket_id] == 1
            and tickets[v.ticket_id].entries == "1"
        }
    )
    return tuple(sorted(rng.sample(candidates, min(fault.count, len(candidates)))))
