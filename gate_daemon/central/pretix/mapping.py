"""What a pretix event becomes in a manifest: sessions, zones, tickets, revocations (pure).

- Sessions: the event itself (session ``event``) or each subevent (``s<ID>``): starts
  at ``date_from``, ends at ``date_to`` (a day later when pretix has none), entry opens
  at ``date_admission`` (a week before the start, the most a manifest can say, when
  pretix has none: pretix's own scanners check no time).
- Zones: the venue file's zones; each serves the check-in list ``[source.lists]`` names.
- A position is a ticket on the zones whose lists take its item (``all_products`` or
  ``limit_products``) and subevent: on every served list, any zone (``""``); on one,
  that zone; on some, the first of them in ``[source.lists]`` order (a gate of its other
  zones refuses it ``wrong_zone``: docs/PRETIX.md). A position on no served list is not
  in the manifest (``unknown_ticket``, as pretix answers ``product``).
- Entry policy from the ticket's list: ``allow_multiple_entries`` is 255 entries,
  else ``allow_entry_after_exit`` re-entry after an exit, else one entry.
- Status: the order's (paid completed, pending or expired pending, canceled canceled), a
  canceled position canceled, a blocked secret blocked; pending counts as completed on a
  list with ``include_pending``.
- The secret is the ticket's reference code (only its hash enters the manifest); a
  revoked secret that no position holds any more becomes a canceled ticket of its own,
  listed in the header's ``revoked``, so it is refused ``revoked`` by name.
- Check-in list rules (JSON logic) are not evaluated offline: a served list with rules
  is refused (``ListRefused``), never ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gate_daemon.core.keys import PublicKey
from gate_daemon.core.manifest import RosterGate, Session
from gate_daemon.core.ticket_record import Status, TicketEntry
from gate_daemon.core.tokens import MAX_TICKET_ID, REENTRY, code_hash
from gate_daemon.errors import GateError
from gate_daemon.provision.event import EventSpec
from gate_daemon.store.central.pretix import PositionRow

#: The roster gate whose key signs the records the bridge learns from other pretix devices.
BRIDGE_GATE = "pretix"
MAX_OPENS_MINUTES = 10080
DAY = 86400
MULTIPLE_ENTRIES = 255
ORDER_STATUS = {"p": Status.COMPLETED, "n": Status.PENDING, "e": Status.PENDING, "c": Status.CANCELED}


class ListRefused(GateError):
    """A check-in list the bridge will not serve (rules it cannot evaluate offline, a missing list)."""


class MappingError(GateError):
    """pretix's data cannot be made into a manifest (a missing field, a bad time)."""


@dataclass(frozen=True, slots=True)
class CheckinList:
    """What of a pretix check-in list decides who enters."""

    id: int
    all_products: bool
    products: frozenset[int]
    subevent: int | None
    include_pending: bool
    multiple: bool
    after_exit: bool

    def takes(self, item: int, subevent: int | None) -> bool:
        """Whether a position of ``item`` for ``subevent`` is on this list."""
        on_item = self.all_products or item in self.products
        return on_item and (self.subevent is None or self.subevent == subevent)

    @property
    def entries(self) -> int:
        """The manifest's entry policy for this list's tickets."""
        if self.multiple:
            return MULTIPLE_ENTRIES
        return REENTRY if self.after_exit else 1


def checkin_list(raw: Mapping[str, Any]) -> CheckinList:
    """A check-in list from pretix's JSON; ``ListRefused`` for rules, ``MappingError`` for garbage."""
    try:
        list_id = int(raw["id"])
        rules = raw.get("rules")
        if rules:
            raise ListRefused(
                f"check-in list {list_id} has rules (JSON logic) that the gates cannot evaluate offline:"
                " remove them in pretix or name another list in [source.lists]"
            )
        subevent = raw.get("subevent")
        return CheckinList(
            id=list_id,
            all_products=bool(raw.get("all_products", True)),
            products=frozenset(int(p) for p in raw.get("limit_products") or ()),
            subevent=None if subevent is None else int(subevent),
            include_pending=bool(raw.get("include_pending", False)),
            multiple=bool(raw.get("allow_multiple_entries", False)),
            after_exit=bool(raw.get("allow_entry_after_exit", True)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MappingError(
            f"a check-in list pretix sent is not readable ({type(exc).__name__}: {exc})"
        ) from None


def served_lists(
    raw: Sequence[Mapping[str, Any]], wanted: Sequence[tuple[str, int]]
) -> dict[str, CheckinList]:
    """Zone id -> its check-in list, in ``[source.lists]`` order; ``ListRefused`` for a missing one."""
    by_id = {}
    for item in raw:
        if isinstance(item, Mapping) and item.get("id") in {i for _, i in wanted}:
            found = checkin_list(item)
            by_id[found.id] = found
    missing = [f"{zone} = {list_id}" for zone, list_id in wanted if list_id not in by_id]
    if missing:
        raise ListRefused(f"pretix has no check-in list {', '.join(missing)} in this event ([source.lists])")
    return {zone: by_id[list_id] for zone, list_id in wanted}


def instant(value: object, what: str) -> int:
    """Seconds since 1970 from pretix's ISO 8601 time."""
    if not isinstance(value, str):
        raise MappingError(f"{what}: expected a time, found {type(value).__name__}")
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MappingError(f"{what}: {value[:40]!r} is not an ISO 8601 time") from None
    if stamp.tzinfo is None:
        raise MappingError(f"{what}: {value[:40]!r} has no time zone")
    return int(stamp.timestamp())


def text(value: object) -> str:
    """pretix's name: a plain string or a dict by language (English first)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and value:
        chosen = value.get("en", next(iter(value.values())))
        return chosen if isinstance(chosen, str) else ""
    return ""


def session_of(session_id: str, raw: Mapping[str, Any], what: str) -> Session:
    """A session from an event's or subevent's dates."""
    starts = instant(raw.get("date_from"), f"{what} date_from")
    ends = instant(raw["date_to"], f"{what} date_to") if raw.get("date_to") else starts + DAY
    if ends <= starts:
        ends = starts + DAY
    admission = raw.get("date_admission")
    if admission:
        opens = math.ceil(max(0, starts - instant(admission, f"{what} date_admission")) / 60)
    else:
        opens = MAX_OPENS_MINUTES
    return Session(session_id, text(raw.get("name"))[:64], starts, ends, min(opens, MAX_OPENS_MINUTES))


def sessions(event: Mapping[str, Any], subevents: Sequence[Mapping[str, Any]]) -> tuple[Session, ...]:
    """The event's sessions: one per subevent, or the event itself."""
    if event.get("has_subevents"):
        return tuple(session_of(f"s{int(s['id'])}", s, f"subevent {s.get('id')}") for s in subevents)
    return (session_of("event", event, "event"),)


def session_id(event: Mapping[str, Any], subevent: int | None) -> str:
    """The manifest session of a position."""
    return f"s{subevent}" if event.get("has_subevents") and subevent is not None else "event"


def ticket(
    position: PositionRow, lists: Mapping[str, CheckinList], event_id: str, sessions_id: str, *, blocked: bool
) -> TicketEntry | None:
    """The manifest's ticket for a position; None when no served list takes it."""
    zones = [zone for zone, found in lists.items() if found.takes(position.item, position.subevent)]
    if not zones:
        return None
    policy = lists[zones[0]]
    status = Status.BLOCKED if blocked else Status(position.status)
    if status is Status.PENDING and policy.include_pending:
        status = Status.COMPLETED
    return TicketEntry(
        ticket_id=position.ticket_id,
        status=status,
        order_id=position.order_code,
        session=sessions_id,
        zone="" if len(zones) == len(lists) else zones[0],
        entries=policy.entries,
        code_hash=code_hash(event_id, position.secret),
        name=_short(position.name),
    )


def build_inputs(
    venue: EventSpec,
    bridge_key: PublicKey,
    event: Mapping[str, Any],
    subevents: Sequence[Mapping[str, Any]],
    lists: Mapping[str, CheckinList],
    positions: Sequence[PositionRow],
    secrets: Mapping[str, tuple[str, str]],
) -> tuple[EventSpec, list[TicketEntry]]:
    """The event and tickets a manifest is built from, for the venue file and pretix's data."""
    if any(g.id == BRIDGE_GATE for g in venue.gates):
        raise MappingError(
            f"the venue file's [[gates]] may not use the id {BRIDGE_GATE!r}: the bridge signs as it"
        )
    known = {z.id for z in venue.zones}
    unknown = [zone for zone in lists if zone not in known]
    if unknown:
        raise ListRefused(f"[source.lists] names zones the venue file does not have: {', '.join(unknown)}")
    found_sessions = sessions(event, subevents)
    tickets: list[TicketEntry] = []
    held = set()
    revoked = set(venue.revoked)
    for position in positions:
        state = secrets.get(position.secret)
        blocked = state is not None and state[0] == "blocked"
        entry = ticket(position, lists, venue.event_id, session_id(event, position.subevent), blocked=blocked)
        if entry is None:
            continue
        tickets.append(entry)
        held.add(position.secret)
        if state is not None and state[0] == "revoked":
            revoked.add(entry.ticket_id)
    for secret, (kind, ref) in sorted(secrets.items()):
        if kind == "revoked" and secret not in held:
            tid = revoked_ticket(ref)
            tickets.append(TicketEntry(tid, Status.CANCELED, code_hash=code_hash(venue.event_id, secret)))
            revoked.add(tid)
    spec = EventSpec(
        event_id=venue.event_id,
        name=venue.name or text(event.get("name")) or venue.event_id,
        sessions=found_sessions,
        zones=venue.zones,
        revoked=tuple(sorted(revoked)),
        legacy_codes=False,
        ticket_keys=venue.ticket_keys,
        gates=(*venue.gates, RosterGate(BRIDGE_GATE, bridge_key)),
        supervisors=venue.supervisors,
    )
    return spec, tickets


def revoked_ticket(ref: str) -> str:
    """The manifest's ticket id for a revoked secret no position holds (pretix's id of the revocation)."""
    return f"revoked-{ref}"[:MAX_TICKET_ID]


def _short(name: str) -> str:
    """A holder's name as a manifest keeps it: printable, at most 64 bytes."""
    kept = "".join(c for c in name if c.isprintable())
    while len(kept.encode()) > 64:
        kept = kept[:-1]
    return kept
