"""QR payload formats: signed tickets, reference codes and legacy ``ORDER-SEAT`` codes.

A payload is one of:

* **signed ticket** ``GD1:<base32>``: a compact binary body and its Ed25519 signature.
  It validates offline, even when the ticket is not in the manifest (sold after the last
  sync). Base32 (RFC 4648, upper case, no padding) keeps every character in QR
  alphanumeric mode and free of spaces, so keyboard-wedge scanners, stdin and copy-paste
  carry it unchanged.
* **opaque code**: anything else made of printable ASCII. The gate looks it up in the
  manifest first as a reference code (the manifest holds only a keyed hash of it), then
  as a legacy ``ORDERID-SEATID`` text.

Binary body of a v1 signed ticket (integers little-endian)::

    u8    flags     bit0 valid_from, bit1 valid_until, bit2 session, bit3 zone
    4     key id    first 4 bytes of SHA-256 over the signing public key
    4     event tag first 4 bytes of SHA-256 over "gate-daemon/event\\0" + event id
    u8    entries   1..255 entries, 0 = unlimited re-entry after an exit scan
    [u32  valid_from]  [u32 valid_until]          (present when flagged)
    u8 n, n bytes      ticket id (UTF-8, 1..64 bytes)
    [u8 n, n bytes session]  [u8 n, n bytes zone]  (present when flagged)
    64    Ed25519 signature over "gate-daemon/ticket/v1\\0" + everything above

Rotating certificates (``GDR1``, ``core.rotating``) and staff badges (``GDS1``,
``core.badges``) lay out the rest of their bodies the same way: the flagged u32 moments,
then length-prefixed UTF-8 labels. They write it with ``pack_moments``, read it with
``decode_body`` and ``read_fields``, and their parsed forms share ``SignedBody``'s shape.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar, Generic, TypeAlias, TypeVar

from gate_daemon.core import base32
from gate_daemon.core.keys import SIGNATURE_SIZE, PublicKey, SecretKey

if TYPE_CHECKING:
    from collections.abc import Sequence

    from gate_daemon.core.rotating import RotatingCode

SIGNED_PREFIX = "GD1:"
#: Rotating holder-bound codes (``core.rotating``).
ROTATING_PREFIX = "GDR1:"
#: Every prefix of the family, so ``GD2:`` is named as an unsupported version, not a code.
SIGNED_FAMILY = "GD"
TICKET_DOMAIN = b"gate-daemon/ticket/v1\x00"
MAX_PAYLOAD = 512
MAX_TICKET_ID = 64
MAX_LABEL = 16
REENTRY = 0

#: The flag bits of the optional moments, the same in every signed format (GD1, GDR1, GDS1).
F_FROM, F_UNTIL = 1, 2
_F_SESSION, _F_ZONE = 4, 8
#: The flag bits a ticket's body (GD1, and GDR1's certificate) may carry.
TICKET_FLAGS = F_FROM | F_UNTIL | _F_SESSION | _F_ZONE
_HEAD = struct.Struct("<B4s4sB")
_U32 = struct.Struct("<I")


class PayloadFormat(StrEnum):
    """Which of the three payload formats identified a ticket."""

    SIGNED = "signed"
    REFERENCE = "reference"
    LEGACY = "legacy"
    ROTATING = "rotating"
    #: pretix's signed secret (``pretix_sig1``, ``core.pretix_sig``).
    PRETIX = "pretix"


def parse_entries(text: str) -> int | None:
    """Read an entry policy as written in files and on the command line.

    ``1``..``255`` entries, or ``reentry`` (0) for unlimited re-entry after an exit scan;
    None when the text is neither. Empty means the default, 1.
    """
    value = text.strip().lower()
    if not value:
        return 1
    if value == "reentry":
        return REENTRY
    if value.isascii() and value.isdigit() and 1 <= int(value) <= 255:
        return int(value)
    return None


class PayloadError(ValueError):
    """A payload cannot be read; ``detail`` says why, without echoing the payload."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


def event_tag(event_id: str) -> bytes:
    """The 4-byte tag a signed ticket carries for its event."""
    return hashlib.sha256(b"gate-daemon/event\x00" + event_id.encode()).digest()[:4]


def code_hash(event_id: str, code: str) -> bytes:
    """The 16-byte keyed hash under which the manifest stores a reference code.

    Keyed per event so that hashes cannot be precomputed across events; 128 bits so that
    a stolen manifest gives no practical way to find a code matching any of its hashes.
    """
    return hashlib.blake2b(code.encode(), digest_size=16, key=_code_key(event_id)).digest()


def payload_fingerprint(event_id: str, payload: str) -> str:
    """What the evidence log keeps of a scanned payload: a keyed hash, never the text.

    Anyone who holds a code and knows the event can compute it to find that code's scans
    (a dispute the next morning); the log alone gives no code back.
    """
    try:
        data = payload.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte (a JSON "\\ud800")
        data = payload.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16, key=_fingerprint_key(event_id)).hexdigest()


@functools.lru_cache(maxsize=8)
def _fingerprint_key(event_id: str) -> bytes:
    return hashlib.sha256(b"gate-daemon/scan-fingerprint\x00" + event_id.encode()).digest()


@functools.lru_cache(maxsize=8)
def _code_key(event_id: str) -> bytes:
    return hashlib.sha256(b"gate-daemon/code-key\x00" + event_id.encode()).digest()


@dataclass(frozen=True, slots=True)
class TicketClaims:
    """What a signed ticket asserts."""

    ticket_id: str
    event_tag: bytes
    entries: int = 1
    session: str = ""
    zone: str = ""
    valid_from: int | None = None
    valid_until: int | None = None


ClaimsT = TypeVar("ClaimsT")


@dataclass(frozen=True, slots=True)
class SignedBody(Generic[ClaimsT]):
    """A parsed (not yet verified) signed body: its claims, key id, bytes and signature."""

    claims: ClaimsT
    kid: bytes
    signed: bytes
    signature: bytes
    #: The signature's domain: each format has its own, so no key's signature is read as another's.
    domain: ClassVar[bytes]

    def verify(self, key: PublicKey) -> bool:
        """Whether the signature is good under ``key``."""
        return key.verify(self.domain, self.signed, self.signature)


@dataclass(frozen=True, slots=True)
class SignedTicket(SignedBody[TicketClaims]):
    """A parsed (not yet verified) signed ticket."""

    domain: ClassVar[bytes] = TICKET_DOMAIN


@dataclass(frozen=True, slots=True)
class OpaqueCode:
    """A payload that is not a signed ticket: a reference or legacy code to look up."""

    text: str


Payload: TypeAlias = "SignedTicket | OpaqueCode | RotatingCode"


def _label(value: str, what: str, limit: int) -> bytes:
    raw = value.encode()
    if not 0 < len(raw) <= limit:
        raise ValueError(f"{what} must be 1 to {limit} bytes of UTF-8, got {len(raw)}")
    return raw


def pack_moments(valid_from: int | None, valid_until: int | None) -> tuple[int, bytes]:
    """The flag bits and u32 fields of the moments given; ``ValueError`` outside 1970..2106."""
    flags, packed = 0, b""
    for flag, moment, name in ((F_FROM, valid_from, "valid_from"), (F_UNTIL, valid_until, "valid_until")):
        if moment is not None:
            if not 0 <= moment < 2**32:
                raise ValueError(f"{name} is outside 1970..2106")
            flags |= flag
            packed += _U32.pack(moment)
    return flags, packed


def pack_ticket_tail(claims: TicketClaims) -> tuple[int, bytes]:
    """A ticket's flag bits and the fields after its head (GD1 and GDR1 write them alike).

    ``ValueError`` if a claim does not fit.
    """
    if not 0 <= claims.entries <= 255:
        raise ValueError(f"entries must be 0 (re-entry) to 255, got {claims.entries}")
    flags, tail = pack_moments(claims.valid_from, claims.valid_until)
    tid = _label(claims.ticket_id, "ticket id", MAX_TICKET_ID)
    tail += bytes([len(tid)]) + tid
    for flag, label, name in ((_F_SESSION, claims.session, "session"), (_F_ZONE, claims.zone, "zone")):
        if label:
            raw = _label(label, name, MAX_LABEL)
            flags |= flag
            tail += bytes([len(raw)]) + raw
    return flags, tail


def ticket_labels(flags: int) -> tuple[tuple[bool, int], ...]:
    """Which of a ticket's labels (ticket id, session, zone) ``flags`` says are present, and their limits."""
    return ((True, MAX_TICKET_ID), (bool(flags & _F_SESSION), MAX_LABEL), (bool(flags & _F_ZONE), MAX_LABEL))


def decode_body(body32: str, min_size: int, what: str) -> bytes:
    """The bytes of a signed format's base32 text; ``PayloadError`` if not canonical or too short."""
    try:
        raw = base32.decode(body32)
    except base32.Base32Error as exc:
        raise PayloadError(f"{what} is not canonical base32: {exc}") from None
    if len(raw) < min_size:
        raise PayloadError(f"{what} is too short")
    return raw


@dataclass(frozen=True, slots=True)
class Fields:
    """The fields after a signed body's head: its moments and its labels ("" where absent)."""

    valid_from: int | None
    valid_until: int | None
    labels: tuple[str, ...]


def read_fields(body: bytes, pos: int, flags: int, labels: Sequence[tuple[bool, int]], what: str) -> Fields:
    """Read ``body`` from ``pos`` to its end: the u32 moments ``flags`` names, then the labels.

    ``labels`` gives each label's presence and its longest length in bytes, in order. A
    ``PayloadError`` names the format (``what``: "signed ticket", "rotating code",
    "badge") and what is wrong: truncated, a malformed field, one not UTF-8, trailing bytes.
    """
    moments: list[int | None] = []
    for flag in (F_FROM, F_UNTIL):
        if not flags & flag:
            moments.append(None)
            continue
        if pos + _U32.size > len(body):
            raise PayloadError(f"{what} is truncated")
        moments.append(_U32.unpack_from(body, pos)[0])
        pos += _U32.size
    texts: list[str] = []
    for present, limit in labels:
        if not present:
            texts.append("")
            continue
        if pos >= len(body):
            raise PayloadError(f"{what} is truncated")
        size = body[pos]
        chunk = body[pos + 1 : pos + 1 + size]
        if not 0 < size <= limit or len(chunk) != size:
            raise PayloadError(f"{what} has a malformed field")
        try:
            texts.append(chunk.decode())
        except UnicodeDecodeError:
            raise PayloadError(f"{what} has a field that is not UTF-8") from None
        pos += 1 + size
    if pos != len(body):
        raise PayloadError(f"{what} has trailing bytes")
    return Fields(moments[0], moments[1], tuple(texts))


def encode_signed(claims: TicketClaims, key: SecretKey) -> str:
    """Sign ``claims`` and return the QR payload text."""
    flags, tail = pack_ticket_tail(claims)
    body = _HEAD.pack(flags, key.public.kid_bytes, claims.event_tag, claims.entries) + tail
    signature = key.sign(TICKET_DOMAIN, body)
    return SIGNED_PREFIX + base32.encode(body + signature)


def parse_payload(text: str) -> Payload:
    """Classify and read a payload, or raise ``PayloadError``."""
    if not text:
        raise PayloadError("empty payload")
    if len(text) > MAX_PAYLOAD:
        raise PayloadError(f"payload is {len(text)} characters, more than {MAX_PAYLOAD}")
    if not text.isascii() or not text.isprintable():
        raise PayloadError("payload has characters outside printable ASCII")
    if text.upper().startswith(ROTATING_PREFIX):
        # core.rotating builds on this module's claims, so it is imported where it is needed.
        from gate_daemon.core.rotating import parse_rotating

        return parse_rotating(text[len(ROTATING_PREFIX) :])
    if text.upper().startswith(SIGNED_FAMILY) and text[2:3].isdigit() and ":" in text[:6]:
        if not text.upper().startswith(SIGNED_PREFIX):
            raise PayloadError(f"unsupported signed ticket version {text[: text.index(':')]!r}")
        return _parse_signed(text[len(SIGNED_PREFIX) :])
    return OpaqueCode(text)


def _parse_signed(body32: str) -> SignedTicket:
    raw = decode_body(body32, _HEAD.size + 1 + SIGNATURE_SIZE, "signed ticket")
    signed, signature = raw[:-SIGNATURE_SIZE], raw[-SIGNATURE_SIZE:]
    flags, kid, tag, entries = _HEAD.unpack_from(signed)
    if flags & ~TICKET_FLAGS:
        raise PayloadError(f"signed ticket has unknown flags 0x{flags:02x}")
    fields = read_fields(signed, _HEAD.size, flags, ticket_labels(flags), "signed ticket")
    return SignedTicket(ticket_claims(fields, tag, entries), kid, signed, signature)


def ticket_claims(fields: Fields, tag: bytes, entries: int) -> TicketClaims:
    """A ticket's claims from its head's event tag and entries and the fields ``read_fields`` read."""
    ticket_id, session, zone = fields.labels
    return TicketClaims(ticket_id, tag, entries, session, zone, fields.valid_from, fields.valid_until)
