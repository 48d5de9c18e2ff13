"""The ticket table: a manifest's body, encoded to be searched in place.

A million tickets need no parse and little memory: lookups read bytes or an mmap
directly. Integers are little-endian; ``n`` tickets, ``m`` codes, ``k`` legacy texts;
tickets sorted by the bytes of their id::

    u32[n]              offset of each record in the record blob
    blob                records (``gate_daemon.core.ticket_record``), padded to 8 bytes
    u64[n], u32[n]      ticket-id index: sorted 64-bit keys, record numbers (padded to 8)
    u64[m], u32[m]      reference-code index, keyed by the code hash (padded to 8)
    u64[k], u32[k]      legacy ORDER-SEAT index (padded to 8)

Every index hit is confirmed against the record itself, so key collisions cost a step,
never a wrong answer.
"""

from __future__ import annotations

import bisect
import hashlib
import struct
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from gate_daemon.core.ticket_record import TicketEntry, decode_record, encode_record, record_end, texts_at
from gate_daemon.core.tokens import MAX_TICKET_ID, PayloadFormat, code_hash
from gate_daemon.errors import ManifestRefused

_U32 = struct.Struct("<I")
#: A piece of an encoded body: built bytes, or a view of a base table being spliced.
Chunk = bytes | bytearray | memoryview
if sys.byteorder != "little":  # pragma: no cover - every Raspberry Pi is little-endian
    raise ImportError("gate_daemon.core.ticket_table reads indexes in place and needs a little-endian CPU")


class RepeatedTicket(ValueError):
    """Tickets given in order were out of order, or one id came twice."""


def _key64(person: bytes, text: str) -> int:
    digest = hashlib.blake2b(text.encode(), digest_size=8, person=person).digest()
    return int.from_bytes(digest, "little")


def ticket_key(ticket_id: str) -> int:
    """The index key of a ticket id."""
    return _key64(b"gd/ticket", ticket_id)


def legacy_key(text: str) -> int:
    """The index key of a legacy ``ORDER-SEAT`` text."""
    return _key64(b"gd/legacy", text)


def _code_key(digest: bytes) -> int:
    return int.from_bytes(digest[:8], "little")


def _pad8(size: int) -> int:
    return -size % 8


def _index(packed: list[int]) -> bytes:
    """Sorted keys then record numbers, from items packed as ``key << 32 | record``.

    One int per item instead of a tuple of two keeps a million-ticket build smaller.
    """
    packed.sort()
    keys = array("Q", (v >> 32 for v in packed)).tobytes()
    vals = array("I", (v & 0xFFFFFFFF for v in packed)).tobytes()
    return keys + vals + b"\0" * _pad8(len(vals))


@dataclass(frozen=True, slots=True)
class Body:
    """An encoded body, as the parts it was built in, and the counts of its layout.

    Kept in parts so that a writer can write them in turn: joining a million-ticket body
    into one buffer would cost another 60 MB. Parts may be views of the table a body was
    spliced from: use such a body only before that table is released, and drop it before
    closing the table's buffer.
    """

    parts: tuple[Chunk, ...]
    tickets: int
    codes: int
    legacy: int
    blob_size: int

    @property
    def data(self) -> bytes:
        """The body as one byte string."""
        return b"".join(self.parts)

    @property
    def size(self) -> int:
        """Length in bytes."""
        return sum(len(p) for p in self.parts)

    @property
    def sha256(self) -> str:
        """The digest the header commits to."""
        digest = hashlib.sha256()
        for part in self.parts:
            digest.update(part)
        return digest.hexdigest()

    def layout(self) -> dict[str, Any]:
        """The header's ``body`` member."""
        return {
            "sha256": self.sha256,
            "size": self.size,
            "tickets": self.tickets,
            "codes": self.codes,
            "legacy": self.legacy,
            "blob": self.blob_size,
        }


def encode_body(
    entries: Iterable[TicketEntry],
    sessions: Sequence[str],
    zones: Sequence[str],
    *,
    legacy_codes: bool,
    presorted: bool = False,
) -> Body:
    """Encode tickets (unique ids) as a searchable body; deterministic.

    ``legacy_codes`` off leaves the ``ORDER-SEAT`` index empty: no ticket opens by it.
    ``presorted`` streams ``entries`` as given (they must come in ticket-id byte order,
    else ``ValueError``) instead of holding them all to sort them first.
    """
    ordered = entries if presorted else sorted(entries, key=lambda e: e.ticket_id.encode())
    session_index = {s: i for i, s in enumerate(sessions)}
    zone_index = {z: i for i, z in enumerate(zones)}
    offsets = bytearray()
    blob = bytearray()
    by_ticket: list[int] = []
    by_code: list[int] = []
    by_legacy: list[int] = []
    previous = b""
    number = -1
    for number, entry in enumerate(ordered):
        tid = entry.ticket_id.encode()
        if tid <= previous and number:
            raise RepeatedTicket(f"ticket {entry.ticket_id!r} is out of order or repeated")
        previous = tid
        offsets += _U32.pack(len(blob))
        blob += encode_record(entry, session_index, zone_index)
        by_ticket.append(ticket_key(entry.ticket_id) << 32 | number)
        if entry.code_hash is not None:
            by_code.append(_code_key(entry.code_hash) << 32 | number)
        legacy = entry.legacy_text if legacy_codes else None
        if legacy is not None:
            by_legacy.append(legacy_key(legacy) << 32 | number)
    if len(blob) >= 2**32:
        raise ValueError("manifest body exceeds 4 GiB")
    offsets += b"\0" * _pad8(len(offsets))
    blob += b"\0" * _pad8(len(blob))
    counts = (number + 1, len(by_code), len(by_legacy), len(blob))
    parts: list[Chunk] = [offsets, blob]
    for index in (by_ticket, by_code, by_legacy):
        parts.append(_index(index))
        index.clear()
    return Body(tuple(parts), *counts)


class TicketTable:
    """A body's tickets, searched in place through views of its buffer."""

    def __init__(
        self,
        view: memoryview,
        *,
        tickets: int,
        codes: int,
        legacy: int,
        blob_size: int,
        sessions: Sequence[str],
        zones: Sequence[str],
        event_id: str,
    ) -> None:
        need = _body_size(tickets, codes, legacy, blob_size)
        if need != len(view):
            raise ManifestRefused("malformed", f"body layout needs {need} bytes, body has {len(view)}")
        self._count = tickets
        self._sessions = list(sessions)
        self._zones = list(zones)
        self._event_id = event_id
        self._offsets = view[: 4 * tickets].cast("I")
        pos = 4 * tickets + _pad8(4 * tickets)
        self._blob = view[pos : pos + blob_size]
        pos += blob_size
        self._tickets, pos = _index_views(view, pos, tickets)
        self._codes, pos = _index_views(view, pos, codes)
        self._legacy, pos = _index_views(view, pos, legacy)

    def __len__(self) -> int:
        return self._count

    def _record(self, number: int) -> TicketEntry:
        try:
            entry, _ = decode_record(self._blob, self._offsets[number], self._sessions, self._zones)
        except (IndexError, struct.error, UnicodeDecodeError, ValueError):
            # Only a faulty (but trusted) signer can produce this; name it, never crash.
            raise ManifestRefused("malformed", f"record {number} of the signed body is corrupt") from None
        return entry

    def _search(self, index: tuple[memoryview, memoryview], key: int) -> Iterator[TicketEntry]:
        keys, vals = index
        i = bisect.bisect_left(keys, key)
        while i < len(keys) and keys[i] == key:
            yield self._record(vals[i])
            i += 1

    def find_ticket(self, ticket_id: str) -> TicketEntry | None:
        """The entry for a ticket id, if there is one."""
        if len(ticket_id.encode()) > MAX_TICKET_ID:
            return None
        for entry in self._search(self._tickets, ticket_key(ticket_id)):
            if entry.ticket_id == ticket_id:
                return entry
        return None

    def find_code(self, text: str) -> tuple[TicketEntry, PayloadFormat] | None:
        """Resolve an opaque payload as a reference code, then as a legacy ``ORDER-SEAT`` text."""
        digest = code_hash(self._event_id, text)
        for entry in self._search(self._codes, _code_key(digest)):
            if entry.code_hash == digest:
                return entry, PayloadFormat.REFERENCE
        for entry in self._search(self._legacy, legacy_key(text)):
            if entry.legacy_text == text:
                return entry, PayloadFormat.LEGACY
        return None

    def entries(self) -> Iterator[TicketEntry]:
        """Every ticket, in ticket-id order."""
        for number in range(self._count):
            yield self._record(number)

    def _tid(self, number: int) -> bytes:
        """The ticket id of record ``number``, as bytes, without decoding the rest."""
        pos = texts_at(self._blob, self._offsets[number])
        return bytes(self._blob[pos + 1 : pos + 1 + self._blob[pos]])

    def _end(self, number: int) -> int:
        """Where record ``number`` ends in the blob (its holder's name included)."""
        return record_end(self._blob, self._offsets[number])

    def _lower_bound(self, tid: bytes) -> int:
        """The first record whose ticket id is not below ``tid`` (records are sorted)."""
        low, high = 0, self._count
        while low < high:
            mid = (low + high) // 2
            if self._tid(mid) < tid:
                low = mid + 1
            else:
                high = mid
        return low

    def _copy_records(self, start: int, stop: int, offsets: array[int], blob: _Blob) -> None:
        """Append records ``start..stop`` to a new table's ``offsets`` and ``blob``.

        The blob gets a view of this table's bytes, not a copy.
        """
        if start >= stop:
            return
        first = self._offsets[start]
        shift = blob.size - first
        offsets.extend(o + shift for o in self._offsets[start:stop])
        blob.add(self._blob[first : self._end(stop - 1)])

    def release(self) -> None:
        """Let go of the views into the buffer (so an mmap can be closed)."""
        for view in (self._offsets, self._blob, *self._tickets, *self._codes, *self._legacy):
            view.release()


def _body_size(n: int, m: int, k: int, blob: int) -> int:
    size = 4 * n + _pad8(4 * n) + blob
    for count in (n, m, k):
        size += 12 * count + _pad8(4 * count)
    return size


def _index_views(view: memoryview, pos: int, count: int) -> tuple[tuple[memoryview, memoryview], int]:
    keys = view[pos : pos + 8 * count].cast("Q")
    pos += 8 * count
    vals = view[pos : pos + 4 * count].cast("I")
    pos += 4 * count + _pad8(4 * count)
    return (keys, vals), pos


def splice(table: TicketTable, upserts: Sequence[TicketEntry], *, legacy_codes: bool) -> Body:
    """The body of ``table`` with ``upserts`` added or replacing tickets of the same id.

    Produces exactly the bytes ``encode_body`` would for the merged tickets, without
    decoding the unchanged ones: their records are copied as byte ranges and their index
    entries are carried over with shifted record numbers. Valid only when the new
    version has the same sessions, zones and ``legacy_codes`` as the table was built
    with (the caller checks); ``ValueError`` for repeated ticket ids.
    """
    n = len(table)
    sessions = {s: i for i, s in enumerate(table._sessions)}
    zones = {z: i for i, z in enumerate(table._zones)}
    ordered = sorted(upserts, key=lambda e: e.ticket_id.encode())
    offsets = array("I")
    blob = _Blob()
    inserted: list[int] = []  # base positions before which a new ticket goes
    replaced: set[int] = set()
    added: list[tuple[int, TicketEntry]] = []  # (new record number, ticket)
    cursor = 0
    previous = b""
    for entry in ordered:
        tid = entry.ticket_id.encode()
        if tid <= previous and added:
            raise RepeatedTicket(f"ticket {entry.ticket_id!r} is repeated")
        previous = tid
        pos = table._lower_bound(tid)
        table._copy_records(cursor, pos, offsets, blob)
        added.append((len(offsets), entry))
        offsets.append(blob.size)
        blob.add(encode_record(entry, sessions, zones))
        if pos < n and table._tid(pos) == tid:
            replaced.add(pos)
            cursor = pos + 1
        else:
            inserted.append(pos)
            cursor = pos
    table._copy_records(cursor, n, offsets, blob)

    def renumber(number: int) -> int:
        return number + bisect.bisect_right(inserted, number)

    new_keys: list[list[int]] = [[], [], []]
    for number, entry in added:
        new_keys[0].append(ticket_key(entry.ticket_id) << 32 | number)
        if entry.code_hash is not None:
            new_keys[1].append(_code_key(entry.code_hash) << 32 | number)
        legacy = entry.legacy_text if legacy_codes else None
        if legacy is not None:
            new_keys[2].append(legacy_key(legacy) << 32 | number)
    indexes = [
        _merge_index(index, sorted(extra), replaced, renumber)
        for index, extra in zip((table._tickets, table._codes, table._legacy), new_keys, strict=True)
    ]
    counts = (len(offsets), len(indexes[1][0]), len(indexes[2][0]))
    # Arrays go in as byte views of themselves: no copy of the new indexes either.
    blob.add(b"\0" * _pad8(blob.size))
    parts: list[Chunk] = [_bytes_of(offsets), b"\0" * _pad8(4 * len(offsets)), *blob.parts]
    for keys, vals in indexes:
        parts += [_bytes_of(keys), _bytes_of(vals), b"\0" * _pad8(4 * len(vals))]
    return Body(tuple(parts), counts[0], counts[1], counts[2], blob.size)


def _bytes_of(values: array[int]) -> memoryview:
    return memoryview(values).cast("B")


class _Blob:
    """A record blob kept as the pieces it is made of (views of the base, new records)."""

    def __init__(self) -> None:
        self.parts: list[Chunk] = []
        self.size = 0

    def add(self, part: Chunk) -> None:
        self.parts.append(part)
        self.size += len(part)


def _merge_index(
    index: tuple[memoryview, memoryview],
    extra: list[int],
    dropped: set[int],
    renumber: Callable[[int], int],
) -> tuple[array[int], array[int]]:
    """A base index without ``dropped`` records, renumbered, merged with ``extra``.

    ``extra`` holds packed ``key << 32 | number`` items, sorted; the result is sorted by
    key then number, as ``encode_body`` sorts.
    """
    keys, vals = index
    out_keys: array[int] = array("Q")
    out_vals: array[int] = array("I")
    pending = iter(extra)
    nxt = next(pending, None)
    for key, number in zip(keys, vals, strict=True):
        if number in dropped:
            continue
        number = renumber(number)
        while nxt is not None and nxt < (key << 32 | number):
            out_keys.append(nxt >> 32)
            out_vals.append(nxt & 0xFFFFFFFF)
            nxt = next(pending, None)
        out_keys.append(key)
        out_vals.append(number)
    while nxt is not None:
        out_keys.append(nxt >> 32)
        out_vals.append(nxt & 0xFFFFFFFF)
        nxt = next(pending, None)
    return out_keys, out_vals
