"""One ticket: its order status, its entry as the manifest knows it, and its record bytes.

A record, as the ticket table's blob holds it (integers little-endian)::

    u8 status, u8 entries, u8 flags, u16 session index, u16 zone index,
    [16-byte code hash, when flags has HAS_CODE],
    then u8-length-prefixed ticket id, order id and seat,
    [then the u8-length-prefixed holder name, when flags has HAS_NAME]

A record without a name is byte for byte what it was before names existed.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

_RECORD = struct.Struct("<BBBHH")
_NONE = 0xFFFF
_HAS_CODE = 1
_HAS_NAME = 2


class Status(StrEnum):
    """An order's status as the ticketing system reports it."""

    COMPLETED = "completed"
    PENDING = "pending"
    CANCELED = "canceled"
    REFUNDED = "refunded"
    BLOCKED = "blocked"


_STATUS_CODES = list(Status)


@dataclass(frozen=True, slots=True)
class TicketEntry:
    """One ticket as the manifest knows it. ``entries`` 0 means re-entry after exit."""

    ticket_id: str
    status: Status = Status.COMPLETED
    order_id: str = ""
    seat: str = ""
    session: str = ""
    zone: str = ""
    entries: int = 1
    code_hash: bytes | None = None
    #: The holder's name, when the ticket source carries one (shown on the gate screen for an ID check).
    name: str = ""

    @property
    def legacy_text(self) -> str | None:
        """The ``ORDER-SEAT`` payload that names this ticket, if it has one.

        A ticket with a reference code has none: its guessable order and seat must not
        open a gate that its secret code would.
        """
        if self.code_hash is None and self.order_id and self.seat:
            return f"{self.order_id}-{self.seat}"
        return None


def _short(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > 255:
        raise ValueError(f"{text[:20]!r}... is longer than 255 bytes")
    return bytes([len(raw)]) + raw


def encode_record(entry: TicketEntry, session_index: dict[str, int], zone_index: dict[str, int]) -> bytes:
    """One ticket in the body's record encoding."""
    flags = (_HAS_CODE if entry.code_hash is not None else 0) | (_HAS_NAME if entry.name else 0)
    head = _RECORD.pack(
        _STATUS_CODES.index(entry.status),
        entry.entries,
        flags,
        session_index[entry.session] if entry.session else _NONE,
        zone_index[entry.zone] if entry.zone else _NONE,
    )
    code = entry.code_hash or b""
    name = _short(entry.name) if entry.name else b""
    return head + code + _short(entry.ticket_id) + _short(entry.order_id) + _short(entry.seat) + name


def decode_record(
    buf: memoryview | bytes, pos: int, sessions: Sequence[str], zones: Sequence[str]
) -> tuple[TicketEntry, int]:
    """Read the record at ``pos``; return it and the position after it."""
    status, entries, flags, s_idx, z_idx = _RECORD.unpack_from(buf, pos)
    pos += _RECORD.size
    digest = None
    if flags & _HAS_CODE:
        digest = bytes(buf[pos : pos + 16])
        pos += 16
    texts = []
    for _ in range(4 if flags & _HAS_NAME else 3):
        size = buf[pos]
        texts.append(bytes(buf[pos + 1 : pos + 1 + size]).decode())
        pos += 1 + size
    entry = TicketEntry(
        ticket_id=texts[0],
        status=_STATUS_CODES[status],
        order_id=texts[1],
        seat=texts[2],
        session=sessions[s_idx] if s_idx != _NONE else "",
        zone=zones[z_idx] if z_idx != _NONE else "",
        entries=entries,
        code_hash=digest,
        name=texts[3] if flags & _HAS_NAME else "",
    )
    return entry, pos


def record_end(buf: memoryview | bytes, pos: int) -> int:
    """Where the record at ``pos`` ends: past its ticket id, order id, seat and (if it has one) name."""
    end = texts_at(buf, pos)
    for _ in range(4 if buf[pos + 2] & _HAS_NAME else 3):
        end += 1 + buf[end]
    return end


def texts_at(buf: memoryview | bytes, pos: int) -> int:
    """Where the texts of the record at ``pos`` start (its ticket id first), past its head."""
    return pos + _RECORD.size + (16 if buf[pos + 2] & _HAS_CODE else 0)
