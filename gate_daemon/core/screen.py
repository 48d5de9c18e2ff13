"""What the gate screen shows: a scan's decision and the gate's state, as a steward reads them.

Pure: ``scan_view`` turns a committed ``Decision`` (with the ticket's manifest entry, for
its seat and holder name) into a ``ScanView``, and ``status_view`` turns the gate's status
snapshot into a ``StatusView``; the screen server (``gate_daemon.net.screen``) sends both
as JSON events and the page (``gate_daemon/web/screen.js``) draws them. Every outcome has
one colour, a headline that reads from two metres, a plain-language reason and what to
do. Times are RFC 3339 instants (the page writes them in its own time zone) and spans
measured on the gate's decision clock (the page counts down from them, so a browser
whose clock is off still counts right).
"""

from __future__ import annotations

import time
from typing import NotRequired, TypedDict

from gate_daemon.core.decision import Decision
from gate_daemon.core.manifest import Manifest
from gate_daemon.core.reasons import Outcome, Reason
from gate_daemon.core.snapshot import GateSnapshot, LaneStatus, StaffStatus
from gate_daemon.core.ticket_record import TicketEntry
from gate_daemon.core.times import format_instant

COLOURS = {
    Outcome.ALLOW: "green",
    Outcome.DENY: "red",
    Outcome.ALREADY_USED: "yellow",
    Outcome.TOO_EARLY: "yellow",
    Outcome.STAFF: "purple",
}

HEADLINES = {
    Outcome.ALLOW: "Go ahead",
    Outcome.DENY: "No entry",
    Outcome.ALREADY_USED: "Already used",
    Outcome.TOO_EARLY: "Too early",
    Outcome.STAFF: "Staff badge",
}

#: The reason in plain words, where the decision's own message is not already plain
#: enough to read at a glance (it carries UTC instants, or a technical word).
PLAIN = {
    Reason.INVALID_PAYLOAD: "This is not a ticket code",
    Reason.MANIFEST_MISSING: "This gate has no ticket list",
    Reason.MANIFEST_EXPIRED: "This gate's ticket list has expired",
    Reason.UNKNOWN_KEY: "Ticket from an issuer this event does not accept",
    Reason.BAD_SIGNATURE: "Forged or damaged ticket",
    Reason.WRONG_EVENT: "Ticket for another event",
    Reason.UNKNOWN_TICKET: "Ticket not found",
    Reason.REVOKED: "Ticket revoked",
    Reason.BLOCKED: "Ticket blocked",
    Reason.UNPAID: "Order not paid",
    Reason.CANCELED: "Order canceled",
    Reason.REFUNDED: "Order refunded",
    Reason.TOO_EARLY: "Entry has not opened yet",
    Reason.ALREADY_USED: "This ticket has been used",
    Reason.NOT_INSIDE: "Not checked in: no entry to scan out",
    Reason.LEDGER_UNAVAILABLE: "This gate cannot record scans",
    Reason.MANUAL_RELEASE: "Released by staff",
    Reason.LANE_CLOSED: "This lane is closed",
    Reason.EXPIRED_CODE: "Old code: a screenshot, or the phone's clock is off",
}

#: What the steward does next.
ADVICE = {
    Reason.INVALID_PAYLOAD: "Scan again, or type the order code below",
    Reason.MANIFEST_MISSING: "Call the tech",
    Reason.MANIFEST_EXPIRED: "Call the tech",
    Reason.UNKNOWN_KEY: "Send to the box office",
    Reason.BAD_SIGNATURE: "Send to the box office",
    Reason.WRONG_EVENT: "Check the event on the ticket",
    Reason.UNKNOWN_TICKET: "Send to the box office",
    Reason.REVOKED: "Call a supervisor",
    Reason.BLOCKED: "Call a supervisor",
    Reason.UNPAID: "Send to the box office",
    Reason.CANCELED: "Send to the box office",
    Reason.REFUNDED: "Send to the box office",
    Reason.WRONG_ZONE: "Show the way to the right entrance",
    Reason.WRONG_SESSION: "Check the date on the ticket",
    Reason.TOO_EARLY: "Ask them to come back when entry opens",
    Reason.TOO_LATE: "Call a supervisor",
    Reason.ALREADY_USED: "Call a supervisor if the holder disputes it",
    Reason.NOT_INSIDE: "Scan the entry first, or call a supervisor",
    Reason.LEDGER_UNAVAILABLE: "Call the tech",
    Reason.LANE_CLOSED: "Send people to another lane",
    Reason.EXPIRED_CODE: "Ask for the live ticket page; compare its clock with this gate's",
    Reason.VENUE_FULL: "Ask them to wait: someone must leave first",
}

#: A supervised lane's allow waiting for the steward: not yet an entry, so blue, not green.
PENDING_COLOUR = "blue"
PENDING_ADVICE = "Check the holder, then press Confirm (or the button)"

#: Reasons that mean the gate, not the ticket, is at fault.
OUT_OF_SERVICE = frozenset({Reason.MANIFEST_MISSING, Reason.MANIFEST_EXPIRED, Reason.LEDGER_UNAVAILABLE})


class ScanView(TypedDict):
    """One scan as the screen shows it; the details only where they apply."""

    outcome: str
    colour: str
    headline: str
    #: The reason code (docs/DECISIONS.md), for the record.
    reason: str
    #: The reason in plain words.
    text: str
    advice: str | None
    recorded: bool
    #: A supervised lane's allow, committed and waiting for the steward's confirmation.
    pending: bool
    ticket: NotRequired[str]
    seat: NotRequired[str]
    zone: NotRequired[str]
    session: NotRequired[str]
    #: The holder's name, when the ticket source carries one and names may be shown.
    name: NotRequired[str]
    #: already_used: when and where the ticket was used last.
    used_at: NotRequired[str]
    used_ago_s: NotRequired[int]
    used_gate: NotRequired[str]
    #: too_early: when entry opens, and in how many milliseconds (the page counts down).
    opens_at: NotRequired[str]
    opens_in_ms: NotRequired[int]
    entries_allowed: NotRequired[int]
    entries_used: NotRequired[int]


def scan_view(
    decision: Decision,
    entry: TicketEntry | None,
    manifest: Manifest | None,
    now: float,
    *,
    names: bool,
    recorded: bool = True,
    pending: bool = False,
) -> ScanView:
    """The screen's view of a committed decision; ``entry`` is the ticket's, when the manifest lists it.

    ``pending``: an allow a supervised lane holds until the steward confirms it.
    """
    outcome = decision.outcome
    reason = decision.reason
    view: ScanView = {
        "outcome": outcome.value,
        "colour": COLOURS[outcome],
        "headline": "Out of service" if reason in OUT_OF_SERVICE else HEADLINES[outcome],
        "reason": reason.value,
        "text": PLAIN.get(reason, decision.message),
        "advice": ADVICE.get(reason),
        "recorded": recorded,
        "pending": pending,
    }
    if reason is Reason.OK:
        view["text"] = decision.message  # "Entry allowed (2 more entries left)", "Exit recorded"
    if reason is Reason.LANE_CLOSED:
        view["headline"] = "Lane closed"
    if outcome is Outcome.STAFF or reason is Reason.OVERRIDDEN:
        view["text"] = decision.message  # "Signed in: Anna K", "Admitted by supervisor Sam (was revoked)"
    if reason is Reason.EXPIRED_CODE:
        # By how much and which way ("expired 45 s ago", "30 s in the future"), and the gate's
        # own clock to the second, for the steward to compare with the holder's page (docs/ROTATING.md).
        clock = time.strftime("%H:%M:%S", time.gmtime(now))
        view["text"] = f"{decision.message}. This gate's clock: {clock} UTC"
    if reason is Reason.VENUE_FULL:
        view["headline"] = "Full"  # the text says how many are inside (docs/CAPACITY.md)
    if pending:
        view["colour"], view["headline"], view["advice"] = PENDING_COLOUR, "Confirm entry", PENDING_ADVICE
        view["text"] = "Valid ticket, not yet let in"
    if decision.ticket_id is not None:
        view["ticket"] = decision.ticket_id
    if entry is not None and entry.seat:
        view["seat"] = entry.seat
    if entry is not None and entry.name and names:
        view["name"] = entry.name
    if decision.zone:
        zone = manifest.zones.get(decision.zone) if manifest is not None else None
        view["zone"] = zone.name if zone is not None and zone.name else decision.zone
    if decision.session:
        session = manifest.sessions.get(decision.session) if manifest is not None else None
        view["session"] = session.name if session is not None and session.name else decision.session
    if decision.last_entry_at is not None and reason is Reason.ALREADY_USED:
        view["used_at"] = format_instant(decision.last_entry_at)
        view["used_ago_s"] = max(0, int(now - decision.last_entry_at))
    if decision.last_entry_gate is not None and reason is Reason.ALREADY_USED:
        view["used_gate"] = decision.last_entry_gate
    if decision.opens_at is not None and reason in (Reason.TOO_EARLY, Reason.WRONG_SESSION):
        view["opens_at"] = format_instant(decision.opens_at)
        view["opens_in_ms"] = max(0, int((decision.opens_at - now) * 1000))
    if decision.entries_allowed is not None:
        view["entries_allowed"] = decision.entries_allowed
    if decision.entries_used is not None:
        view["entries_used"] = decision.entries_used
    return view


class StatusView(TypedDict):
    """The screen's status strip, and whether the gate is out of service (why, and what to do)."""

    gate: str
    in_service: bool
    problem: str | None
    advice: str | None
    #: "local" (decides on its own), or online-first's "online" / "offline".
    mode: str
    #: Whether the central answers; None without one.
    central_up: bool | None
    peers_up: int | None
    peers: int | None
    manifest_version: int | None
    manifest_age_s: int | None
    clock_warning: str | None
    scans_hour: int
    lane: LaneView
    #: Who is signed in by staff badge ("Anna K (steward)"), or None.
    staff: NotRequired[str | None]


class LaneView(TypedDict):
    """The lane as supervisors set it (``gate_daemon.gate.lane``), for the strip and the confirm button."""

    state: str
    by: str | None
    #: The supervisor's one-line message for this gate's screen, or None.
    message: str | None
    #: A held allow waiting for the steward: its ticket and when it is voided (unix ms).
    pending_ticket: str | None
    pending_until_ms: int | None


def status_view(snapshot: GateSnapshot, scans_hour: int) -> StatusView:
    """The status strip from the gate's status snapshot; ``scans_hour``: scans shown in the last hour."""
    manifest = snapshot["manifest"]
    replication = snapshot["replication"]
    peers = replication["peers"] if replication is not None else None
    online = snapshot["online"]
    upstream = snapshot["upstream"]
    problem = snapshot["problem"]
    lane = snapshot["lane"]
    advice = None if problem is None else service_advice(snapshot)
    if problem is None and lane["state"] == "closed":
        by = f" by supervisor {lane['by']}" if lane["by"] else ""
        problem, advice = f"This lane is closed{by}", "Send people to another lane"
    return {
        "gate": snapshot["gate"],
        "in_service": problem is None,
        "problem": problem,
        "advice": advice,
        "mode": online["mode"] if online is not None else "local",
        "central_up": upstream["up"] if upstream is not None else None,
        "peers_up": None if peers is None else sum(1 for peer in peers if peer["up"]),
        "peers": None if peers is None else len(peers),
        "manifest_version": manifest.get("version"),
        "manifest_age_s": manifest.get("age_seconds"),
        "clock_warning": snapshot["clock"]["warning"],
        "scans_hour": scans_hour,
        "lane": lane_view(lane),
        "staff": _staff(snapshot.get("staff")),
    }


def _staff(staff: StaffStatus | None) -> str | None:
    return None if staff is None else f"{staff['name']} ({staff['role']})"


def lane_view(lane: LaneStatus) -> LaneView:
    """The strip's lane from the snapshot's ``lane`` block (or ``Lane.status()``, read in memory)."""
    pending = lane["pending"]
    return {
        "state": lane["state"],
        "by": lane["by"],
        "message": lane["message"],
        "pending_ticket": None if pending is None else pending["ticket"],
        "pending_until_ms": None if pending is None else pending["until_ms"],
    }


def after_scan(last: StatusView, lane: LaneStatus, scans_hour: int) -> StatusView:
    """The strip just after a scan: the last one with the scan counted and the lane now (no I/O)."""
    return {**last, "scans_hour": scans_hour, "lane": lane_view(lane)}


def service_advice(snapshot: GateSnapshot) -> str:
    """What to do about an out-of-service gate, from what its snapshot says is wrong."""
    manifest = snapshot["manifest"]
    if not manifest["active"]:
        return "Call the tech: this gate needs a signed ticket list (drop a manifest, or connect the central)"
    if manifest.get("expired"):
        return "Call the tech: this gate needs a newer ticket list; send people to another gate meanwhile"
    source = snapshot["input_state"]
    if source is not None and source["problem"] is not None:
        return "Call the tech: the scanner does not work; type order codes below meanwhile"
    return "Call the tech: this gate cannot record scans; send people to another gate"
