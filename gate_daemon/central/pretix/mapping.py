"""What a pretix event becomes in a manifest: sessions, zones, tickets, revocations (pure).

- Sessions: the event itself (session ``event``) or each subevent (``s<ID>``): starts
  at ``date_from``, ends at ``date_to`` (a day later when pretix has none), entry opens
  at ``date_admission`` (a week before the start, the most a manifest can say, when
  pretix has none: pretix's own scanners check no time).
- Zones: the venue file's zones; each serves the check-in list ``[source.lists]`` names.
- Header: the pretix keys the gates verify signed secrets with and the lists, dates,
  items, revoked and blocked secrets (as hashes) they decide them by
  (``provision.pretix_manifest.pretix_header``, ``core.pretix_sig``).
- A position is a ticket named ``core.pretix_sig.ticket_id_for(event, secret)`` (as a gate
  names a signed secret with no position), on the zones whose lists take its item and
  subevent: on one, that zone; on several, any zone (``""``). A position on no served
  list is not in the manifest (``unknown_ticket``, as pretix answers ``product``).
- Entry policy from the ticket's first list: ``allow_multiple_entries`` is 255 entries,
  else ``allow_entry_after_exit`` re-entry after an exit, else one entry.
- Status: the order's (paid completed; pending pending, or completed when pretix marks
  it valid if pending; expired or canceled canceled), a canceled position canceled, a
  blocked position or secret blocked.
- The secret is the ticket's reference code (only its hash enters the manifest); a
  revoked secret that no position holds any more becomes a canceled ticket of its own,
  listed in the header's ``revoked``, so it is refused ``revoked`` by name.
- The venue file's other keys (staff badges, capacity, rotating codes' holders and
  tolerance, supervisors, ticket keys) carry into the event as they are.
- Check-in list rules (JSON logic) are not evaluated offline: a served list with rules
  is refused (``ListRefused``), never ignored.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gate_daemon.core.keys import PublicKey
from gate_daemon.core.manifest_header import RosterGate, Session
from gate_daemon.core.pretix_sig import PretixEvent, parse_pretix_header, ticket_id_for
from gate_daemon.core.ticket_record import Status, TicketEntry
from gate_daemon.core.tokens import REENTRY, code_hash
from gate_daemon.errors import GateError
from gate_daemon.provision.event import EventSpec
from gate_daemon.provision.pretix_manifest import pretix_header
from gate_daemon.store.central.pretix import PositionRow

#: The roster gate whose key signs the records the bridge learns from other pretix devices.
BRIDGE_GATE = "pretix"
MAX_OPENS_MINUTES = 10080
DAY = 86400
MULTIPLE_ENTRIES = 255
ORDER_STATUS = {"p": Status.COMPLETED, "n": Status.PENDING, "e": Status.CANCELED, "c": Status.CANCELED}


@dataclass(frozen=True, slots=True)
class EventFacts:
    """The event detail, its subevents, check-in lists and items, as pretix sent them."""

    event: dict[str, Any]
    subevents: list[dict[str, Any]]
    lists: list[dict[str, Any]]
    items: list[dict[str, Any]]


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
    position: PositionRow,
    rules: PretixEvent,
    event_id: str,
    session: str,
    *,
    blocked: bool,
) -> TicketEntry | None:
    """The manifest's ticket of a position (as ``provision.pretix_manifest`` makes it); None off all lists."""
    zones = rules.zones_for(position.item, position.subevent or 0)
    if not zones:
        return None
    return TicketEntry(
        ticket_id=position.ticket_id,
        status=Status.BLOCKED if blocked else Status(position.status),
        order_id=position.order_code,
        session=session,
        zone=zones[0] if len(zones) == 1 else "",
        entries=rules.entries_for(zones),
        code_hash=code_hash(event_id, position.secret),
        name=_short(position.name),
    )


def build_inputs(
    venue: EventSpec,
    bridge_key: PublicKey,
    facts: EventFacts,
    lists: Mapping[str, CheckinList],
    positions: Sequence[PositionRow],
    secrets: Mapping[str, tuple[str, str]],
) -> tuple[EventSpec, list[TicketEntry], dict[str, Any]]:
    """The event, tickets and pretix header keys a manifest is built from, for the venue file and pretix."""
    if any(g.id == BRIDGE_GATE for g in venue.gates):
        raise MappingError(
            f"the venue file's [[gates]] may not use the id {BRIDGE_GATE!r}: the bridge signs as it"
        )
    known = {z.id for z in venue.zones}
    unknown = [zone for zone in lists if zone not in known]
    if unknown:
        raise ListRefused(f"[source.lists] names zones the venue file does not have: {', '.join(unknown)}")
    event = facts.event
    header = _header(venue.event_id, facts, lists, secrets)
    rules = parse_pretix_header(header)
    assert rules is not None  # pretix_header always writes pretix_keys
    tickets: list[TicketEntry] = []
    held = set()
    revoked = set(venue.revoked)
    for position in positions:
        state = secrets.get(position.secret)
        blocked = state is not None and state[0] == "blocked"
        session = session_id(event, position.subevent)
        entry = ticket(position, rules, venue.event_id, session, blocked=blocked)
        if entry is None:
            continue
        tickets.append(entry)
        held.add(position.secret)
        if state is not None and state[0] == "revoked":
            revoked.add(entry.ticket_id)
    for secret, (kind, _) in sorted(secrets.items()):
        if kind == "revoked" and secret not in held:
            tid = ticket_id_for(venue.event_id, secret)
            tickets.append(TicketEntry(tid, Status.CANCELED, code_hash=code_hash(venue.event_id, secret)))
            revoked.add(tid)
    # Everything else the venue file says (staff badges, capacity, rotating codes, later
    # rosters) carries as it is: only what pretix knows is replaced.
    spec = dataclasses.replace(
        venue,
        name=venue.name or text(event.get("name")) or venue.event_id,
        sessions=sessions(event, facts.subevents),
        revoked=tuple(sorted(revoked)),
        legacy_codes=False,
        gates=(*venue.gates, RosterGate(BRIDGE_GATE, bridge_key)),
    )
    return spec, tickets, header


def _header(
    event_id: str, facts: EventFacts, lists: Mapping[str, CheckinList], secrets: Mapping[str, tuple[str, str]]
) -> dict[str, Any]:
    """The pretix header keys (``provision.pretix_manifest.pretix_header``): keys, lists, dates, items."""
    keys = facts.event.get("valid_keys")
    valid = keys.get("pretix_sig1") if isinstance(keys, Mapping) else None
    by_id = {raw.get("id"): raw for raw in facts.lists}
    subevents = {}
    if facts.event.get("has_subevents"):
        subevents = {int(s["id"]): session_id(facts.event, int(s["id"])) for s in facts.subevents}
    try:
        return pretix_header(
            event_id,
            [str(k) for k in valid] if isinstance(valid, list) else [],
            {zone: by_id[found.id] for zone, found in lists.items()},
            facts.items,
            subevents,
            [s for s, (kind, _) in secrets.items() if kind == "revoked"],
            [s for s, (kind, _) in secrets.items() if kind == "blocked"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MappingError(
            f"pretix's event cannot be made a manifest header ({type(exc).__name__}: {exc})"
        ) from None


def _short(name: str) -> str:
    """A holder's name as a manifest keeps it: printable, at most 64 bytes."""
    kept = "".join(c for c in name if c.isprintable())
    while len(kept.encode()) > 64:
        kept = kept[:-1]
    return kept
