"""``event.toml``: the event, its sessions and zones, accepted ticket keys and the gate roster.

Top-level keys come first: in TOML, a key written after ``[[zones]]`` belongs to that zone.

revoked = ["T-0042"]             # ticket ids refused whatever else they say
ticket_keys = ["issuer.pub"]     # keys whose signed tickets this event accepts
                                 # (paths relative to this file, or "ed25519:...")

[event]
id = "demo-2026"                 # letters, digits, . _ - (at most 64)
name = "Demo Night"
legacy_codes = true              # ORDER-SEAT payloads open the gate (default true)

[[sessions]]                     # optional; without sessions the event is always open
id = "sat"                       # at most 16 bytes (it travels inside signed tickets)
name = "Saturday"
starts_at = 2026-11-21T19:00:00Z # RFC 3339 with an offset, quoted or not
ends_at = 2026-11-21T23:30:00Z
entry_opens_minutes = 60         # default 60, at most 10080 (a week)

[[zones]]
id = "floor"
name = "Floor"

[[gates]]                        # the roster peers authenticate against
id = "north-1"
pub = "north-1.pub"

[[supervisors]]                  # who may sign commands to the gates (docs/COMMANDS.md)
id = "sam"
pub = "sam.pub"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gate_daemon.config.toml import Checker, KeyPath, load
from gate_daemon.core.keys import PublicKey
from gate_daemon.core.manifest import RosterGate, RosterSupervisor, Session, Zone
from gate_daemon.core.times import TimeFormatError, parse_instant
from gate_daemon.core.tokens import MAX_LABEL, MAX_TICKET_ID
from gate_daemon.errors import KeyFileError
from gate_daemon.provision.keyfiles import public_key_ref

IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
TOP_KEYS = {"event", "sessions", "zones", "revoked", "ticket_keys", "gates", "supervisors"}


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

    zones: list[Zone] = []
    for i, raw in enumerate(check.tables(check.raw(doc, "zones"), ("zones",))):
        where = ("zones", i)
        tbl = check.table(raw, where, {"id", "name"}, {"id"})
        zones.append(
            Zone(
                check.string(tbl, where, "id", pattern=IDENT, max_bytes=MAX_LABEL),
                check.string(tbl, where, "name"),
            )
        )
    _unique(check, "zones", [z.id for z in zones])

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
        tbl = check.table(raw, where, {"id", "pub"}, {"id", "pub"})
        gid = check.string(tbl, where, "id", pattern=IDENT, max_bytes=32)
        key = _key(check, (*where, "pub"), check.string(tbl, where, "pub", max_bytes=1024), base)
        if key is not None:
            gates.append(RosterGate(gid, key))
    _unique(check, "gates", [g.id for g in gates])
    supervisors = _supervisors(check, doc, base)

    check.finish()
    return EventSpec(
        event_id,
        name,
        tuple(sessions),
        tuple(zones),
        tuple(revoked),
        legacy_codes,
        tuple(ticket_keys),
        tuple(gates),
        supervisors,
    )


def _event_table(check: Checker, doc: dict[str, Any], venue: bool) -> dict[str, Any]:
    """``[event]``; of a venue.toml (``gate-central`` with a pretix source), whose sessions come
    from pretix, ``name`` is optional and ``[[sessions]]`` refused."""
    if venue and "sessions" in doc:
        check.problem(("sessions",), "a venue file has no sessions: they come from pretix")
    required = {"id"} if venue else {"id", "name"}
    return check.table(doc.get("event", {}), ("event",), {"id", "name", "legacy_codes"}, required)


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
