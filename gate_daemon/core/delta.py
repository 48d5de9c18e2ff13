"""Manifest deltas: from version N to a later one as the records that changed.

A delta file is a manifest file of kind "D" whose header is the *new* full header plus a
``delta`` member (base version, base body digest, changes digest). Its payload is::

    u32   n
    n     records in the body's record encoding (indices into the new header's
          sessions and zones), sorted by ticket id

Tickets are never removed: a ticket missing from the new tickets.csv stays in the
manifest as canceled (a tombstone). Otherwise a signed ticket whose row was dropped
would read as "sold after the last sync" and open the gate again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from gate_daemon.core.keys import PublicKey
from gate_daemon.core.manifest import DELTA, Manifest, check_successor, open_envelope
from gate_daemon.core.ticket_record import Status, TicketEntry, decode_record, encode_record
from gate_daemon.core.ticket_table import Body, RepeatedTicket, encode_body, splice
from gate_daemon.core.tokens import code_hash
from gate_daemon.errors import ManifestRefused

_U32 = struct.Struct("<I")
#: Statuses a missing ticket keeps; any other becomes canceled.
_REFUSED = {Status.CANCELED, Status.REFUNDED, Status.BLOCKED}


@dataclass(frozen=True, slots=True)
class DeltaPlan:
    """What a new version holds, relative to its base."""

    entries: list[TicketEntry]
    changed: list[TicketEntry]
    kept_canceled: int


def plan_delta(
    event_id: str,
    base: Iterable[TicketEntry],
    tickets: Sequence[TicketEntry],
    sessions: set[str],
    zones: set[str],
) -> DeltaPlan:
    """The new version's tickets: ``tickets`` plus every base ticket they lack, canceled.

    A tombstone keeps its reference code and order-seat text (so scanning them says
    "canceled"), unless a listed ticket now answers to the same text, by code or by
    order-seat, as when a seat is reissued under a new ticket id: then the tombstone is
    found by its ticket id alone. (Codes are looked up first, so a tombstone's code equal
    to a listed ticket's order-seat text would otherwise shadow that ticket.)
    """
    listed = {t.ticket_id: t for t in tickets}
    texts = {t.legacy_text for t in tickets if t.legacy_text is not None}
    codes = {t.code_hash for t in tickets if t.code_hash is not None}
    codes.update(code_hash(event_id, text) for text in texts)
    entries = list(tickets)
    changed: list[TicketEntry] = []
    kept = 0
    old_ids = set()
    for old in base:
        old_ids.add(old.ticket_id)
        new = listed.get(old.ticket_id)
        if new is None:
            tomb = dataclasses.replace(
                old,
                status=old.status if old.status in _REFUSED else Status.CANCELED,
                session=old.session if old.session in sessions else "",
                zone=old.zone if old.zone in zones else "",
                name="",  # a ticket no longer sold keeps no holder's name
            )
            if tomb.code_hash in codes or tomb.legacy_text in texts:
                tomb = dataclasses.replace(tomb, code_hash=None, order_id="", seat="")
            entries.append(tomb)
            kept += 1
            if tomb != old:
                changed.append(tomb)
        elif new != old:
            changed.append(new)
    changed.extend(t for t in tickets if t.ticket_id not in old_ids)
    return DeltaPlan(entries, changed, kept)


def encode_changes(changed: Iterable[TicketEntry], header: dict[str, Any]) -> bytes:
    """The payload of a delta: the new or changed records."""
    session_index = {s["id"]: i for i, s in enumerate(header["sessions"])}
    zone_index = {z["id"]: i for i, z in enumerate(header["zones"])}
    records = sorted(changed, key=lambda e: e.ticket_id.encode())
    out = bytearray(_U32.pack(len(records)))
    for entry in records:
        out += encode_record(entry, session_index, zone_index)
    return bytes(out)


def changes_member(base: Manifest, changes: bytes, plan: DeltaPlan) -> dict[str, Any]:
    """The header's ``delta`` member for ``changes`` against ``base``."""
    return {
        "base_version": base.version,
        "base_sha256": base.body_sha256,
        "changes_sha256": hashlib.sha256(changes).hexdigest(),
        "changes_size": len(changes),
        "changed": len(plan.changed),
        "kept_canceled": plan.kept_canceled,
    }


def _merge(base: Iterable[TicketEntry], upserts: list[TicketEntry]) -> Iterator[TicketEntry]:
    """Base and upserts, both in ticket-id byte order, as one ordered stream; upserts win."""
    pending = iter(upserts)
    nxt = next(pending, None)
    for entry in base:
        key = entry.ticket_id.encode()
        while nxt is not None and nxt.ticket_id.encode() < key:
            yield nxt
            nxt = next(pending, None)
        if nxt is not None and nxt.ticket_id == entry.ticket_id:
            yield nxt
            nxt = next(pending, None)
        else:
            yield entry
    while nxt is not None:
        yield nxt
        nxt = next(pending, None)


def apply_delta(base: Manifest, data: bytes | memoryview | Any, trusted: Sequence[PublicKey]) -> bytes:
    """Verify a delta against ``base`` and return the full manifest file it produces.

    The result's body digest is checked against the delta's signed header, so the
    returned file verifies on its own with ``open_manifest``.
    """
    prefix, body = rebuild(base, data, trusted)
    return prefix + body.data


def rebuild(
    base: Manifest, data: bytes | memoryview | Any, trusted: Sequence[PublicKey]
) -> tuple[bytes, Body]:
    """``apply_delta`` in two parts, the file's prefix and its verified body, to write in turn."""
    delta = open_envelope(data, trusted)
    h = delta.header
    if delta.kind != DELTA:
        raise ManifestRefused("malformed", "this is a full manifest, not a delta")
    if h.event_id != base.event_id:
        raise ManifestRefused("wrong_base", f"delta is for event {h.event_id}, base is {base.event_id}")
    if h.base_version != base.version or h.base_sha256 != base.body_sha256:
        raise ManifestRefused(
            "wrong_base",
            f"delta applies to version {h.base_version}, the current one is version {base.version}",
        )
    check_successor(h, base.version + 1)
    sessions = [s.id for s in h.sessions]
    zones = [z.id for z in h.zones]
    view = delta.payload
    upserts: list[TicketEntry] = []
    try:
        (count,) = _U32.unpack_from(view, 0)
        pos = 4
        for _ in range(count):
            entry, pos = decode_record(view, pos, sessions, zones)
            upserts.append(entry)
    except (struct.error, IndexError, UnicodeDecodeError, ValueError) as exc:
        raise ManifestRefused("malformed", f"delta changes cannot be read: {exc}") from None
    if pos != len(view):
        raise ManifestRefused("malformed", "delta changes have trailing bytes")
    upserts.sort(key=lambda e: e.ticket_id.encode())
    same_shape = (
        sessions == [s.id for s in base.header.sessions]
        and zones == [z.id for z in base.header.zones]
        and h.legacy_codes == base.header.legacy_codes
    )
    try:
        if same_shape:
            # Unchanged records and index entries are carried over as bytes.
            body = splice(base.table, upserts, legacy_codes=h.legacy_codes)
        else:
            # Sessions or zones renumbered: re-encode every record, streamed one at a time.
            merged = _merge(base.entries(), upserts)
            body = encode_body(merged, sessions, zones, legacy_codes=h.legacy_codes, presorted=True)
    except RepeatedTicket as exc:
        raise ManifestRefused("malformed", f"delta changes repeat a ticket: {exc}") from None
    except (IndexError, struct.error, ValueError, OverflowError) as exc:
        # Only a base whose signed body is itself corrupt gets here.
        raise ManifestRefused("malformed", f"the base manifest cannot be spliced: {exc}") from None
    except KeyError as exc:
        raise ManifestRefused(
            "wrong_base", f"base tickets refer to {exc} which the new version lacks"
        ) from None
    if body.sha256 != h.body_sha256:
        raise ManifestRefused("wrong_base", "applying the delta does not produce the signed result")
    return delta.full_prefix(), body
