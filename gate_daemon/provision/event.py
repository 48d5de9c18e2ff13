"""``event.toml``: the event, its sessions and zones, accepted ticket keys and the gate roster.

Top-level keys come first: in TOML, a key written after ``[[zones]]`` belongs to that zone.

revoked = ["T-0042"]             # ticket ids refused whatever else they say
ticket_keys = ["issuer.pub"]     # keys whose signed tickets this event accepts
                                 # (paths relative to this file, or "ed25519:...")
revoked_holders = []             # rotating tickets' certificate ids (16 hex digits)
                                 # issued again to a new phone (docs/ROTATING.md)
staff_keys = ["staff.pub"]       # keys that sign staff badges (never also a ticket key)
revoked_staff = ["op-7"]         # operator ids whose badges are refused

[event]
id = "demo-2026"                 # letters, digits, . _ - (at most 64)
name = "Demo Night"
legacy_codes = true              # ORDER-SEAT payloads open the gate (default true)
rotating_tolerance = 1           # steps either side of the gate's clock a rotating
                                 # code may be from (default 1, at most 20)
capacity = 5000                  # optional: people inside the venue at most (docs/CAPACITY.md)
capacity_mode = "strict"         # "count" (default: refuse on the gate's own count) or "strict"

[[sessions]]                     # optional; without sessions the event is always open
id = "sat"                       # at most 16 bytes (it travels inside signed tickets)
name = "Saturday"
starts_at = 2026-11-21T19:00:00Z # RFC 3339 with an offset, quoted or not
ends_at = 2026-11-21T23:30:00Z
entry_opens_minutes = 60         # default 60, at most 10080 (a week)

[[zones]]
id = "floor"
name = "Floor"
capacity = 1200                  # optional: people inside this zone at most

[[gates]]                        # the roster peers authenticate against
id = "north-1"
pub = "north-1.pub"
addr = "10.0.5.11:8600"          # optional: its LAN API; the other gates link to it

[[supervisors]]                  # who may sign commands to the gates (docs/COMMANDS.md)
id = "sam"
pub = "sam.pub"

"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gate_daemon.config.toml import Checker, KeyPath, load
from gate_daemon.core.badges import MAX_OPERATOR
from gate_daemon.core.enrollment import parse_addr
from gate_daemon.core.keys import PublicKey
from gate_daemon.core.manifest_header import MAX_ADDR, RosterGate, RosterSupervisor, Session, Zone
from gate_daemon.core.rotating import DEFAULT_TOLERANCE, MAX_TOLERANCE
from gate_daemon.core.times import TimeFormatError, parse_instant
from gate_daemon.core.tokens import MAX_LABEL, MAX_TICKET_ID
from gate_daemon.errors import KeyFileError
from gate_daemon.provision.keyfiles import public_key_ref

IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
TOP_KEYS = {"event", "sessions", "zones", "revoked", "ticket_keys", "gates", "supervisors", "revoked_holders"}
TOP_KEYS |= {"staff_keys", "revoked_staff"}
EVENT_KEYS = {"id", "name", "legacy_codes", "rotating_tolerance", "capacity", "capacity_mode"}
CERTIFICATE_ID = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True, slots=True)
class EventSpec:
    """Everything about an event except its tickets."""

    event_id: str
    name: str
    sessions: tuple[Session, ...]
    zones: tuple[Zone, ...]
    revoked: tuple[str, ...]
    legacy_codes: bool
    ticket_keys: tuple[PublicKey, ...]
    gates: tuple[RosterGate, ...]
    supervisors: tuple[RosterSupervisor, ...] = ()
    revoked_holders: tuple[str, ...] = ()
    rotating_tolerance: int = DEFAULT_TOLERANCE
    staff_keys: tuple[PublicKey, ...] = ()
    revoked_staff: tuple[str, ...] = ()
    #: People inside the venue at most (docs/CAPACITY.md); None: no limit.
    capacity: int | None = None
    #: ``count`` or ``strict`` (docs/CAPACITY.md).
    capacity_mode: str = "count"
    #: Strict mode's initial split as a version before signed it, to carry forward
    #: (``core.capacity.carried``); None: none known (a first version splits afresh).
    capacity_shares: Mapping[str, Mapping[str, int]] | None = None


#: The largest capacity a venue or zone may declare.
MAX_CAPACITY = 10_000_000
CAPACITY_MODES = ("count", "strict")


def load_event(path: Path, *, venue: bool = False) -> EventSpec:
    """Read and check an event.toml (``venue``: a venue.toml); every problem is named with key and line."""
    doc, text = load(path)
    check = Checker(path, text, TOP_KEYS)
    check.table(doc, (), TOP_KEYS, {"event"})
    event = _event_table(check, doc, venue)
    event_id = check.string(event, ("event",), "id", pattern=IDENT, max_bytes=64)
    name = check.string(event, ("event",), "name")
    legacy_codes = check.boolean(event, ("event",), "legacy_codes", default=True)

    sessions: list[Session] = []
    for i, raw in enumerate(check.tables(check.raw(doc, "sessions"), ("sessions",))):
        where: KeyPath = ("sessions", i)
        tbl = check.table(
            raw,
            where,
            {"id", "name", "starts_at", "ends_at", "entry_opens_minutes"},
            {"id", "starts_at", "ends_at"},
        )
        sid = check.string(tbl, where, "id", pattern=IDENT, max_bytes=MAX_LABEL)
        starts = _instant(check, tbl, where, "starts_at")
        ends = _instant(check, tbl, where, "ends_at")
        if starts is not None and ends is not None and ends <= starts:
            check.problem((*where, "ends_at"), "must be later than starts_at")
        opens = check.integer(tbl, where, "entry_opens_minutes", low=0, high=10080, default=60)
        sessions.append(Session(sid, check.string(tbl, where, "name"), starts or 0, ends or 0, opens))
    _unique(check, "sessions", [s.id for s in sessions])

    zones = _zones(check, doc)
    revoked = check.strings(doc, (), "revoked")
    for i, tid in enumerate(revoked):
        if not 0 < len(tid.encode()) <= MAX_TICKET_ID:
            check.problem(("revoked", i), f"ticket id must be 1 to {MAX_TICKET_ID} bytes")

    base = path.parent
    ticket_keys: list[PublicKey] = []
    for i, ref in enumerate(check.strings(doc, (), "ticket_keys")):
        key = _key(check, ("ticket_keys", i), ref, base)
        if key is not None:
            ticket_keys.append(key)
    _unique(check, "ticket_keys", [k.kid for k in ticket_keys], what="key id")

    gates: list[RosterGate] = []
    for i, raw in enumerate(check.tables(check.raw(doc, "gates"), ("gates",))):
        where = ("gates", i)
        tbl = check.table(raw, where, {"id", "pub", "addr"}, {"id", "pub"})
        gid = check.string(tbl, where, "id", pattern=IDENT, max_bytes=32)
        key = _key(check, (*where, "pub"), check.string(tbl, where, "pub", max_bytes=1024), base)
        addr = _addr(check, tbl, where)
        if key is not None:
            gates.append(RosterGate(gid, key, addr))
    _unique(check, "gates", [g.id for g in gates])
    supervisors = _supervisors(check, doc, base)
    holders, tolerance = _rotating(check, doc, event)
    staff_keys, revoked_staff = _staff(check, doc, base, ticket_keys)
    capacity = _capacity(check, event, ("event",)), _capacity_mode(check, event)

    check.finish()
    return EventSpec(
        event_id,
        name,
        tuple(sessions),
        zones,
        tuple(revoked),
        legacy_codes,
        tuple(ticket_keys),
        tuple(gates),
        supervisors,
        holders,
        tolerance,
        staff_keys,
        revoked_staff,
        *capacity,
    )


def _zones(check: Checker, doc: dict[str, object]) -> tuple[Zone, ...]:
    """``[[zones]]``: ids, names and optional capacities."""
    zones: list[Zone] = []
    for i, raw in enumerate(check.tables(check.raw(doc, "zones"), ("zones",))):
        where = ("zones", i)
        tbl = check.table(raw, where, {"id", "name", "capacity"}, {"id"})
        zones.append(
            Zone(
                check.string(tbl, where, "id", pattern=IDENT, max_bytes=MAX_LABEL),
                check.string(tbl, where, "name"),
                _capacity(check, tbl, where),
            )
        )
    _unique(check, "zones", [z.id for z in zones])
    return tuple(zones)


def _capacity(check: Checker, tbl: dict[str, object], where: KeyPath) -> int | None:
    """An optional ``capacity``: 1 to ``MAX_CAPACITY`` people."""
    if "capacity" not in tbl:
        return None
    return check.integer(tbl, where, "capacity", low=1, high=MAX_CAPACITY, default=1)


def _capacity_mode(check: Checker, event: dict[str, object]) -> str:
    mode = check.string(event, ("event",), "capacity_mode", default="count")
    if mode not in CAPACITY_MODES:
        check.problem(("event", "capacity_mode"), f"{mode!r} must be one of: {', '.join(CAPACITY_MODES)}")
    return mode


def _event_table(check: Checker, doc: dict[str, Any], venue: bool) -> dict[str, Any]:
    """``[event]``; of a venue.toml (``gate-central`` with a pretix source), whose sessions come
    from pretix, ``name`` is optional and ``[[sessions]]`` refused."""
    if venue and "sessions" in doc:
        check.problem(("sessions",), "a venue file has no sessions: they come from pretix")
    required = {"id"} if venue else {"id", "name"}
    return check.table(doc.get("event", {}), ("event",), EVENT_KEYS, required)


def _supervisors(check: Checker, doc: dict[str, object], base: Path) -> tuple[RosterSupervisor, ...]:
    """``[[supervisors]]``: ids (as a gate's) and the public keys their commands are signed with."""
    found: list[RosterSupervisor] = []
    for i, raw in enumerate(check.tables(check.raw(doc, "supervisors"), ("supervisors",))):
        where: KeyPath = ("supervisors", i)
        tbl = check.table(raw, where, {"id", "pub"}, {"id", "pub"})
        sid = check.string(tbl, where, "id", pattern=IDENT, max_bytes=32)
        key = _key(check, (*where, "pub"), check.string(tbl, where, "pub", max_bytes=1024), base)
        if key is not None:
            found.append(RosterSupervisor(sid, key))
    _unique(check, "supervisors", [s.id for s in found])
    return tuple(found)


def _instant(check: Checker, tbl: dict[str, object], where: KeyPath, key: str) -> int | None:
    if key not in tbl:
        return None
    try:
        return parse_instant(tbl[key])
    except TimeFormatError as exc:
        check.problem((*where, key), str(exc))
        return None


def _key(check: Checker, where: KeyPath, ref: str, base: Path) -> PublicKey | None:
    if not ref:
        return None
    try:
        return public_key_ref(ref, base)
    except KeyFileError as exc:
        check.problem(where, str(exc))
        return None


def _unique(check: Checker, name: str, ids: list[str], what: str = "id") -> None:
    seen: set[str] = set()
    for i, value in enumerate(ids):
        if value in seen:
            check.problem((name, i), f"duplicate {what} {value!r}")
        seen.add(value)


def _addr(check: Checker, tbl: dict[str, object], where: KeyPath) -> str | None:
    """A gate's optional LAN address, ``HOST:PORT`` (``gate_daemon.core.enrollment.parse_addr``)."""
    if "addr" not in tbl:
        return None
    text = check.string(tbl, where, "addr", max_bytes=MAX_ADDR)
    try:
        return parse_addr(text)
    except ValueError as exc:
        check.problem((*where, "addr"), str(exc))
        return None


def _rotating(
    check: Checker, doc: dict[str, object], event: dict[str, object]
) -> tuple[tuple[str, ...], int]:
    """Rotating tickets' keys: ``revoked_holders`` (certificate ids of tickets issued again,
    as ``gatectl ticket issue --rotating`` printed them) and ``[event] rotating_tolerance``."""
    found = check.strings(doc, (), "revoked_holders")
    for i, cid in enumerate(found):
        if not CERTIFICATE_ID.fullmatch(cid):
            check.problem(("revoked_holders", i), "a certificate id is 16 lower-case hex digits")
    tolerance = check.integer(
        event, ("event",), "rotating_tolerance", low=0, high=MAX_TOLERANCE, default=DEFAULT_TOLERANCE
    )
    return tuple(found), tolerance


def _staff(
    check: Checker, doc: dict[str, object], base: Path, ticket_keys: list[PublicKey]
) -> tuple[tuple[PublicKey, ...], tuple[str, ...]]:
    """``staff_keys`` (keys that sign staff badges, never also ticket keys) and ``revoked_staff``."""
    keys: list[PublicKey] = []
    tickets = {k.raw for k in ticket_keys}
    for i, ref in enumerate(check.strings(doc, (), "staff_keys")):
        key = _key(check, ("staff_keys", i), ref, base)
        if key is not None and key.raw in tickets:
            check.problem(("staff_keys", i), "is also a ticket key; a staff key must be a key of its own")
        elif key is not None:
            keys.append(key)
    _unique(check, "staff_keys", [k.kid for k in keys], what="key id")
    revoked = check.strings(doc, (), "revoked_staff")
    for i, operator in enumerate(revoked):
        if not 0 < len(operator.encode()) <= MAX_OPERATOR:
            check.problem(("revoked_staff", i), f"operator id must be 1 to {MAX_OPERATOR} bytes")
    return tuple(keys), tuple(revoked)
