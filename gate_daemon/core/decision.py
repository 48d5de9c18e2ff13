"""The offline decision: from a payload, the manifest and the ledger's facts to an outcome.

Pure: every input is a value (``now`` included) and nothing here awaits or touches a
file. The gate runs it in two steps so that the ledger is read only for a ticket that
exists: ``identify`` (parse, manifest state, signature, event, lookup) and then
``decide`` (revocation, order status, zone, session, time window, entry policy).
``evaluate`` runs both for callers that already have the ledger facts.

Checks run in this order, and the first that fails names the reason:

 0. lane               lane_closed                       (the gate's: a supervisor closed it)
 1. parse              invalid_payload
 2. manifest present   manifest_missing, manifest_expired
 3. signature          unknown_key, bad_signature        (signed tickets)
 4. event              wrong_event                       (signed tickets)
 4b. rotating code     revoked (its certificate), expired_code (its step vs the clock)
 5. lookup             unknown_ticket                    (reference and legacy codes)
 6. revocation         revoked, blocked
 7. order status       unpaid, canceled, refunded
 8. zone               wrong_zone
 9. session            wrong_session
10. time window        too_early, too_late
11. entry policy       already_used
12. capacity           venue_full                        (``gate_daemon.core.capacity``, after the rest)

An exit scan (an exit-mode gate, an exit button) runs steps 1-5 and then only asks
whether the ticket is inside: ``not_inside`` when no entry is open to close. Leaving is
never refused for revocation, order status, zone or time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gate_daemon.core.manifest import Manifest
from gate_daemon.core.manifest_header import Session
from gate_daemon.core.pretix_sig import PretixRead, read_pretix
from gate_daemon.core.reasons import Outcome, Reason
from gate_daemon.core.rotating import RotatingCode, check_code
from gate_daemon.core.ticket_record import Status, TicketEntry
from gate_daemon.core.times import format_instant, format_span, parse_instant
from gate_daemon.core.tokens import (
    REENTRY,
    OpaqueCode,
    PayloadError,
    PayloadFormat,
    TicketClaims,
    parse_payload,
)

#: Details that ``as_dict`` writes as they are.
_DETAILS = (
    "ticket_id", "session", "zone", "entries_allowed", "entries_used", "opens_in", "last_entry_gate",
    "staff", "staff_name", "overrides", "overridden_outcome", "overridden_reason",
)  # fmt: skip

_STATUS_REASON = {
    Status.BLOCKED: Reason.BLOCKED,
    Status.PENDING: Reason.UNPAID,
    Status.CANCELED: Reason.CANCELED,
    Status.REFUNDED: Reason.REFUNDED,
}


class ScanKind(StrEnum):
    """Whether a scan lets someone in or records that they left."""

    ENTRY = "entry"
    EXIT = "exit"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a scan happens: the gate's zone and, if it is pinned to one, its session."""

    zone: str | None = None
    session: str | None = None

    def problems(self, manifest: Manifest) -> list[str]:
        """What about this checkpoint the manifest does not know (a typo'd zone or session)."""
        out = []
        if self.zone and self.zone not in manifest.zones:
            known = ", ".join(manifest.zones) or "none"
            out.append(f"zone {self.zone!r} is not a zone of event {manifest.event_id} (zones: {known})")
        if self.session and self.session not in manifest.sessions:
            known = ", ".join(manifest.sessions) or "none"
            out.append(
                f"session {self.session!r} is not a session of event {manifest.event_id} (sessions: {known})"
            )
        return out


@dataclass(frozen=True, slots=True)
class LedgerFacts:
    """What the ledger knows of a ticket's use so far."""

    entries: int = 0
    exits: int = 0
    inside: bool = False
    last_entry_at: float | None = None
    last_entry_gate: str | None = None
    #: Entry and exit slots taken, voided ones included (a voided entry does not count
    #: as an entry, but its slot stays taken): the next admission takes the slot after.
    entry_slots: int = 0
    exit_slots: int = 0


@dataclass(frozen=True, slots=True)
class Ticket:
    """A ticket identified from a payload: the facts the decision weighs."""

    ticket_id: str
    format: PayloadFormat
    status: Status
    session: str
    zone: str
    entries: int
    valid_from: int | None = None
    valid_until: int | None = None
    #: The zones whose check-in lists admit a pretix ticket's product (None: as ``zone`` says).
    zones: tuple[str, ...] | None = None
    #: A pretix secret on the event's revocation list.
    revoked: bool = False
    #: The pretix product's name, for a refusal at the wrong entrance.
    product: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one scan. Never carries the payload itself."""

    reason: Reason
    message: str
    ticket_id: str | None = None
    format: PayloadFormat | None = None
    session: str | None = None
    zone: str | None = None
    opens_at: int | None = None
    opens_in: int | None = None
    last_entry_at: float | None = None
    last_entry_gate: str | None = None
    entries_allowed: int | None = None
    entries_used: int | None = None
    #: A staff scan's operator id and name (from the badge); an override's supervisor.
    staff: str | None = None
    staff_name: str | None = None
    #: An override's refused scan: its uuid, outcome and reason.
    overrides: str | None = None
    overridden_outcome: str | None = None
    overridden_reason: str | None = None

    @property
    def outcome(self) -> Outcome:
        """allow, deny, already_used or too_early."""
        return self.reason.outcome

    def as_dict(self) -> dict[str, Any]:
        """The decision as a JSON-ready object; absent details are left out."""
        out: dict[str, Any] = {
            "outcome": self.outcome.value,
            "reason": self.reason.value,
            "message": self.message,
        }
        for name in ("format", *_DETAILS):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.opens_at is not None:
            out["opens_at"] = format_instant(self.opens_at)
        if self.last_entry_at is not None:
            out["last_entry_at"] = format_instant(self.last_entry_at)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        """The decision ``as_dict`` wrote (times to the second)."""
        details: dict[str, Any] = {k: data[k] for k in _DETAILS if k in data}
        if "format" in data:
            details["format"] = PayloadFormat(data["format"])
        for name in ("opens_at", "last_entry_at"):
            if name in data:
                details[name] = parse_instant(data[name])
        return cls(Reason(data["reason"]), str(data["message"]), **details)


def _answer(reason: Reason, message: str, ticket: Ticket | None = None, **details: Any) -> Decision:
    if ticket is not None:
        details.setdefault("ticket_id", ticket.ticket_id)
        details.setdefault("format", ticket.format)
        details.setdefault("session", ticket.session or None)
        details.setdefault("zone", ticket.zone or None)
    return Decision(reason, message, **details)


def identify(payload: str, manifest: Manifest | None, now: float) -> Ticket | Decision:
    """Steps 1-5: read the payload and find the ticket, or the reason there is none."""
    try:
        token = parse_payload(payload)
    except PayloadError as exc:
        return _answer(Reason.INVALID_PAYLOAD, f"Not a ticket code: {exc.detail}")
    if manifest is None:
        return _answer(Reason.MANIFEST_MISSING, "Out of service: this gate has no valid ticket list")
    if now > manifest.header.expires_at:
        when = format_instant(manifest.header.expires_at)
        return _answer(Reason.MANIFEST_EXPIRED, f"Out of service: the ticket list expired at {when}")
    pretix = manifest.header.pretix
    if isinstance(token, OpaqueCode) and pretix is not None:
        read = read_pretix(token.text, pretix, manifest.event_id, manifest.find_ticket)
        if read is not None:
            return _from_pretix(read)
    if isinstance(token, OpaqueCode):
        found = manifest.find_code(token.text)
        if found is None:
            return _answer(Reason.UNKNOWN_TICKET, "Ticket not found for this event")
        entry, fmt = found
        return _from_entry(entry, fmt)
    if isinstance(token, RotatingCode):
        h = manifest.header
        fault = check_code(
            token, manifest.ticket_keys, manifest.event_tag, h.revoked_holders, now, h.rotating_tolerance
        )
        if fault is not None:
            return _answer(
                Reason(fault.reason), fault.message, ticket_id=fault.ticket_id, format=PayloadFormat.ROTATING
            )
        return _claimed(token.claims, manifest, PayloadFormat.ROTATING)
    claims = token.claims
    keys = manifest.ticket_keys.get(token.kid)
    if not keys:
        return _answer(
            Reason.UNKNOWN_KEY,
            "Ticket is signed by a key this event does not accept",
            format=PayloadFormat.SIGNED,
        )
    if not any(token.verify(k) for k in keys):
        return _answer(
            Reason.BAD_SIGNATURE,
            "Ticket signature is not valid (forged or damaged code)",
            format=PayloadFormat.SIGNED,
        )
    if claims.event_tag != manifest.event_tag:
        return _answer(
            Reason.WRONG_EVENT,
            "Ticket is for another event",
            ticket_id=claims.ticket_id,
            format=PayloadFormat.SIGNED,
        )
    return _claimed(claims, manifest, PayloadFormat.SIGNED)


def _claimed(claims: TicketClaims, manifest: Manifest, fmt: PayloadFormat) -> Ticket:
    """The ticket a verified signature claims; the manifest's entry for it, if it lists one."""
    listed_entry = manifest.find_ticket(claims.ticket_id)
    if listed_entry is not None:
        # The manifest is the fresher word on a ticket it lists (a cancellation, a zone
        # upgrade); the signed validity window always applies.
        listed = _from_entry(listed_entry, fmt)
        return Ticket(
            ticket_id=listed.ticket_id,
            format=fmt,
            status=listed.status,
            session=listed.session,
            zone=listed.zone,
            entries=listed.entries,
            valid_from=claims.valid_from,
            valid_until=claims.valid_until,
        )
    return Ticket(
        ticket_id=claims.ticket_id,
        format=fmt,
        status=Status.COMPLETED,
        session=claims.session,
        zone=claims.zone,
        entries=claims.entries,
        valid_from=claims.valid_from,
        valid_until=claims.valid_until,
    )


def _from_pretix(read: PretixRead) -> Ticket | Decision:
    if read.refusal:
        return _answer(
            Reason(read.refusal), read.message, format=PayloadFormat.PRETIX, ticket_id=read.ticket_id or None
        )
    zone = read.zones[0] if len(read.zones) == 1 else ""
    return Ticket(
        read.ticket_id, PayloadFormat.PRETIX, read.status, read.session, zone, read.entries,
        read.valid_from, read.valid_until, read.zones, read.revoked, read.product,
    )  # fmt: skip


def _from_entry(entry: TicketEntry, fmt: PayloadFormat) -> Ticket:
    return Ticket(
        ticket_id=entry.ticket_id,
        format=fmt,
        status=entry.status,
        session=entry.session,
        zone=entry.zone,
        entries=entry.entries,
    )


def decide(
    ticket: Ticket,
    manifest: Manifest,
    where: Checkpoint,
    facts: LedgerFacts,
    now: float,
    kind: ScanKind = ScanKind.ENTRY,
) -> Decision:
    """Steps 6-11: weigh an identified ticket against the gate, the clock and the ledger."""
    if kind is ScanKind.EXIT:
        return _exit(ticket, facts)
    if ticket.revoked or ticket.ticket_id in manifest.header.revoked:
        return _answer(Reason.REVOKED, "Ticket has been revoked", ticket)
    status_reason = _STATUS_REASON.get(ticket.status)
    if status_reason is not None:
        return _answer(status_reason, _STATUS_MESSAGE[status_reason], ticket)
    if where.zone and ticket.zones is not None and where.zone not in ticket.zones:
        return _answer(
            Reason.WRONG_ZONE, f"{ticket.product or 'Ticket'} is not valid at this entrance", ticket
        )
    if where.zone and ticket.zone and ticket.zone != where.zone:
        zone = manifest.zones.get(ticket.zone)
        name = zone.name if zone else ticket.zone
        return _answer(Reason.WRONG_ZONE, f"Ticket is for {name}, not this entrance", ticket)
    window = _session_check(ticket, manifest, where, now)
    if isinstance(window, Decision):
        return window
    timing = _time_check(ticket, window, manifest, now)
    if timing is not None:
        return timing
    return _entry_policy(ticket, facts)


_STATUS_MESSAGE = {
    Reason.BLOCKED: "Ticket is blocked",
    Reason.UNPAID: "Order is not paid",
    Reason.CANCELED: "Order was canceled",
    Reason.REFUNDED: "Order was refunded",
}


def _session_check(
    ticket: Ticket, manifest: Manifest, where: Checkpoint, now: float
) -> Session | Decision | None:
    """The session whose window applies to this ticket here, or a wrong_session denial.

    An unpinned gate serves whichever session is open; a ticket for another session is
    ``wrong_session`` while some other session is open, and otherwise too early or too
    late for its own.
    """
    pinned = manifest.sessions.get(where.session) if where.session else None
    if not ticket.session:
        return pinned
    own = manifest.sessions.get(ticket.session)
    if own is None:
        return _answer(
            Reason.WRONG_SESSION,
            f"Ticket is for session {ticket.session}, which this event does not have",
            ticket,
        )
    if where.session:
        # A pinned gate serves its own session's tickets, open or not (then the time
        # window says too early or too late), and no other session's.
        return own if ticket.session == where.session else _wrong_session(ticket, own, now)
    if not own.is_open(now) and any(s.is_open(now) for s in manifest.sessions.values()):
        return _wrong_session(ticket, own, now)
    return own


def _wrong_session(ticket: Ticket, own: Session, now: float) -> Decision:
    opens = f"; entry opens {format_instant(own.opens_at)}" if own.opens_at > now else ""
    return _answer(
        Reason.WRONG_SESSION,
        f"Ticket is for {own.name or own.id}{opens}",
        ticket,
        opens_at=own.opens_at,
    )


def _too_early(ticket: Ticket, opens_at: int, now: float) -> Decision:
    return _answer(
        Reason.TOO_EARLY,
        f"Too early: entry opens {format_instant(opens_at)} (in {format_span(opens_at - now)})",
        ticket,
        opens_at=opens_at,
        opens_in=int(opens_at - now),
    )


def _time_check(ticket: Ticket, session: Session | None, manifest: Manifest, now: float) -> Decision | None:
    if ticket.valid_from is not None and now < ticket.valid_from:
        return _too_early(ticket, ticket.valid_from, now)
    if ticket.valid_until is not None and now > ticket.valid_until:
        return _answer(Reason.TOO_LATE, f"Ticket expired {format_instant(ticket.valid_until)}", ticket)
    if session is not None:
        if now < session.opens_at:
            return _too_early(ticket, session.opens_at, now)
        if now > session.ends_at:
            return _answer(
                Reason.TOO_LATE,
                f"{session.name or session.id} ended {format_instant(session.ends_at)}",
                ticket,
            )
        return None
    sessions = manifest.sessions.values()
    if not sessions or any(s.is_open(now) for s in sessions):
        return None
    upcoming = [s.opens_at for s in sessions if s.opens_at > now]
    if upcoming:
        return _too_early(ticket, min(upcoming), now)
    last = max(s.ends_at for s in sessions)
    return _answer(Reason.TOO_LATE, f"The event ended {format_instant(last)}", ticket)


def _entry_policy(ticket: Ticket, facts: LedgerFacts) -> Decision:
    common: dict[str, Any] = {
        "ticket_id": ticket.ticket_id,
        "format": ticket.format,
        "session": ticket.session or None,
        "zone": ticket.zone or None,
        "entries_used": facts.entries,
    }
    where = f" at gate {facts.last_entry_gate}" if facts.last_entry_gate else ""
    when = f" {format_instant(facts.last_entry_at)}" if facts.last_entry_at is not None else ""
    last: dict[str, Any] = {"last_entry_at": facts.last_entry_at, "last_entry_gate": facts.last_entry_gate}
    if ticket.entries == REENTRY:
        if facts.inside:
            return Decision(
                Reason.ALREADY_USED, f"Already inside: entered{when}{where}; scan out first", **common, **last
            )
        return Decision(Reason.OK, "Entry allowed (re-entry ticket)", **common)
    common["entries_allowed"] = ticket.entries
    if facts.entries >= ticket.entries:
        uses = "Already used" if ticket.entries == 1 else f"All {ticket.entries} entries used; last"
        return Decision(Reason.ALREADY_USED, f"{uses}{when}{where}", **common, **last)
    left = ticket.entries - facts.entries - 1
    suffix = ""
    if ticket.entries > 1:
        noun = "entry" if left == 1 else "entries"
        suffix = " (last entry)" if left == 0 else f" ({left} more {noun} left)"
    return Decision(Reason.OK, f"Entry allowed{suffix}", **common)


def _exit(ticket: Ticket, facts: LedgerFacts) -> Decision:
    details: dict[str, Any] = {"entries_used": facts.entries}
    if not facts.inside:
        return _answer(Reason.NOT_INSIDE, "Not checked in: there is no entry to scan out", ticket, **details)
    return _answer(Reason.OK, "Exit recorded", ticket, **details)


def evaluate(
    payload: str,
    manifest: Manifest | None,
    where: Checkpoint,
    now: float,
    facts: LedgerFacts | None = None,
    kind: ScanKind = ScanKind.ENTRY,
) -> Decision:
    """Identify and decide in one call, with the ledger facts already known.

    Raises nothing for any payload. Only a manifest whose signed body is itself corrupt
    (a faulty signer) raises ``ManifestRefused('malformed')``: the gate treats that as
    having no valid manifest.
    """
    found = identify(payload, manifest, now)
    if isinstance(found, Decision):
        return found
    assert manifest is not None  # identify() denies with manifest_missing otherwise
    return decide(found, manifest, where, facts or LedgerFacts(), now, kind)
