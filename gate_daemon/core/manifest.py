"""The signed ticket manifest: its file format, verification, and indexed lookup.

A manifest file is::

    8     magic "GDMANIF1"
    1     kind  "F" full (a body follows) or "D" delta (changes to a base follow)
    4     key id of the signer
    u32   header length (little-endian)
    ...   header: canonical JSON (event, version, times, sessions, zones, keys, roster,
          revoked list, counts, and the SHA-256 of the full body)
    64    Ed25519 signature over "gate-daemon/manifest/v1\\0" + header
    ...   payload: the body (full) or the changes (delta)

The signature covers only the header; the header commits to the body by its digest. So a
delta's header is also the header of the full manifest it produces: a gate that applies
a delta rebuilds the body, checks its digest against the signed one, and holds a full
manifest that any other gate can verify on its own.

The body is built to be searched in place (bytes or an mmap), so a million tickets need
no parse and little memory. Integers are little-endian; ``n`` tickets, ``m`` codes,
``k`` legacy texts; tickets sorted by id::

    u32[n]              offset of each record in the record blob
    blob                records: u8 status, u8 entries, u8 flags, u16 session index,
                        u16 zone index, [16-byte code hash], then u8-length-prefixed
                        ticket id, order id and seat; padded to 8 bytes
    u64[n], u32[n]      ticket-id index: sorted 64-bit keys, record numbers (padded to 8)
    u64[m], u32[m]      reference-code index, keyed by the code hash (padded to 8)
    u64[k], u32[k]      legacy ORDER-SEAT index (padded to 8)

Every index hit is confirmed against the record itself, so key collisions cost a step,
never a wrong answer.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import struct
import sys
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gate_daemon.core.keys import SIGNATURE_SIZE, PublicKey, SecretKey
from gate_daemon.core.times import format_instant
from gate_daemon.core.tokens import MAX_TICKET_ID, PayloadFormat, code_hash, event_tag
from gate_daemon.errors import ManifestRefused

MAGIC = b"GDMANIF1"
FORMAT = 1
DOMAIN = b"gate-daemon/manifest/v1\x00"
FULL, DELTA = b"F", b"D"
MAX_HEADER = 4 * 1024 * 1024
_PREAMBLE = struct.Struct("<8sc4sI")
_RECORD = struct.Struct("<BBBHH")
_NONE = 0xFFFF
_HAS_CODE = 1
_U32 = struct.Struct("<I")
if sys.byteorder != "little":  # pragma: no cover - every Raspberry Pi is little-endian
    raise ImportError("gate_daemon.core.manifest reads indexes in place and needs a little-endian CPU")


class Status(StrEnum):
    """An order's status as the ticketing system reports it."""

    COMPLETED = "completed"
    PENDING = "pending"
    CANCELED = "canceled"
    REFUNDED = "refunded"
    BLOCKED = "blocked"


_STATUS_CODES = list(Status)


@dataclass(frozen=True, slots=True)
class Session:
    """A show or day: entry opens ``entry_opens_minutes`` before it starts, closes at its end."""

    id: str
    name: str
    starts_at: int
    ends_at: int
    entry_opens_minutes: int

    @property
    def opens_at(self) -> int:
        """When entry for this session opens."""
        return self.starts_at - 60 * self.entry_opens_minutes

    def is_open(self, now: float) -> bool:
        """Whether entry for this session is open at ``now``."""
        return self.opens_at <= now <= self.ends_at


@dataclass(frozen=True, slots=True)
class Zone:
    """An area of the venue that a gate admits to."""

    id: str
    name: str


@dataclass(frozen=True, slots=True)
class RosterGate:
    """A gate allowed to talk to its peers, with its public key."""

    id: str
    key: PublicKey


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

    @property
    def legacy_text(self) -> str | None:
        """The ``ORDER-SEAT`` payload that names this ticket, if it has one.

        A ticket with a reference code has none: its guessable order and seat must not
        open a gate that its secret code would.
        """
        if self.code_hash is None and self.order_id and self.seat:
            return f"{self.order_id}-{self.seat}"
        return None


@dataclass(frozen=True, slots=True)
class Header:
    """The verified header of a manifest."""

    raw: dict[str, Any]
    event_id: str
    event_name: str
    version: int
    issued_at: int
    expires_at: int
    signer: str
    sessions: tuple[Session, ...]
    zones: tuple[Zone, ...]
    ticket_keys: tuple[PublicKey, ...]
    gates: tuple[RosterGate, ...]
    revoked: frozenset[str]
    legacy_codes: bool
    body_sha256: str
    body_size: int
    tickets: int
    codes: int
    legacy: int
    blob_size: int
    by_status: dict[str, int]
    base_version: int | None
    base_sha256: str | None
    changes_sha256: str | None
    changes_size: int | None


# ---------------------------------------------------------------- index keys


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


# ---------------------------------------------------------------- records and body


def _pad8(size: int) -> int:
    return -size % 8


def _short(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > 255:
        raise ValueError(f"{text[:20]!r}... is longer than 255 bytes")
    return bytes([len(raw)]) + raw


def encode_record(entry: TicketEntry, session_index: dict[str, int], zone_index: dict[str, int]) -> bytes:
    """One ticket in the body's record encoding."""
    flags = _HAS_CODE if entry.code_hash is not None else 0
    head = _RECORD.pack(
        _STATUS_CODES.index(entry.status),
        entry.entries,
        flags,
        session_index[entry.session] if entry.session else _NONE,
        zone_index[entry.zone] if entry.zone else _NONE,
    )
    code = entry.code_hash or b""
    return head + code + _short(entry.ticket_id) + _short(entry.order_id) + _short(entry.seat)


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
    for _ in range(3):
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
    )
    return entry, pos


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
    """An encoded body and the counts that describe its layout."""

    data: bytes
    tickets: int
    codes: int
    legacy: int
    blob_size: int

    @property
    def sha256(self) -> str:
        """The digest the header commits to."""
        return hashlib.sha256(self.data).hexdigest()

    def layout(self) -> dict[str, Any]:
        """The header's ``body`` member."""
        return {
            "sha256": self.sha256,
            "size": len(self.data),
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
            raise ValueError(f"ticket {entry.ticket_id!r} is out of order or repeated")
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
    offsets += blob
    del blob
    for index in (by_ticket, by_code, by_legacy):
        offsets += _index(index)
        index.clear()
    return Body(bytes(offsets), *counts)


# ---------------------------------------------------------------- container


def canonical_json(value: Any) -> bytes:
    """The one byte form of a header that is signed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def seal(header: dict[str, Any], kind: bytes, payload: bytes, key: SecretKey) -> bytes:
    """Sign ``header`` and assemble a manifest file around ``payload``."""
    raw = canonical_json(header)
    signature = key.sign(DOMAIN, raw)
    return _PREAMBLE.pack(MAGIC, kind, key.public.kid_bytes, len(raw)) + raw + signature + payload


@dataclass(frozen=True, slots=True)
class Envelope:
    """A manifest file whose header signature and payload digest have been verified."""

    kind: bytes
    header: Header
    header_bytes: bytes
    signature: bytes
    kid: bytes
    payload: memoryview

    def full_file(self, body: bytes) -> bytes:
        """The full manifest file with this (signed) header and ``body``."""
        pre = _PREAMBLE.pack(MAGIC, FULL, self.kid, len(self.header_bytes))
        return pre + self.header_bytes + self.signature + body


def _split(view: memoryview) -> tuple[bytes, bytes, bytes, bytes, int]:
    """Kind, signer id, header bytes, signature and payload offset, all unverified."""
    if len(view) < _PREAMBLE.size:
        raise ManifestRefused("malformed", "file is too short to be a manifest")
    magic, kind, kid, hlen = _PREAMBLE.unpack_from(view)
    if magic != MAGIC:
        raise ManifestRefused("malformed", "not a gate-daemon manifest (bad magic bytes)")
    if kind not in (FULL, DELTA):
        raise ManifestRefused("malformed", f"unknown manifest kind {kind!r}")
    if hlen > MAX_HEADER:
        raise ManifestRefused("malformed", f"header of {hlen} bytes exceeds {MAX_HEADER}")
    start = _PREAMBLE.size
    if len(view) < start + hlen + SIGNATURE_SIZE:
        raise ManifestRefused("malformed", "file ends inside the header or signature")
    header_bytes = bytes(view[start : start + hlen])
    signature = bytes(view[start + hlen : start + hlen + SIGNATURE_SIZE])
    return kind, kid, header_bytes, signature, start + hlen + SIGNATURE_SIZE


def peek_header(data: bytes | memoryview | Any) -> tuple[bytes, Header]:
    """The kind and header of a manifest file WITHOUT verifying it: for display only."""
    kind, _, header_bytes, _, _ = _split(memoryview(data))
    return kind, parse_header(header_bytes)


def open_envelope(data: bytes | memoryview | Any, trusted: Sequence[PublicKey]) -> Envelope:
    """Verify a manifest file's signature and payload digest (nothing else yet)."""
    view = memoryview(data)
    kind, kid, header_bytes, signature, offset = _split(view)
    candidates = [k for k in trusted if k.kid_bytes == kid]
    if not candidates:
        raise ManifestRefused("unknown_key", f"signed by key {kid.hex()}, which is not trusted here")
    if not any(k.verify(DOMAIN, header_bytes, signature) for k in candidates):
        raise ManifestRefused("bad_signature", f"header signature does not verify under key {kid.hex()}")
    header = parse_header(header_bytes)
    if header.signer != kid.hex():
        raise ManifestRefused("malformed", "header names a different signer than the file")
    payload = view[offset:]
    if kind == FULL:
        want_size, want_digest, what = header.body_size, header.body_sha256, "body"
    else:
        if header.changes_size is None or header.changes_sha256 is None:
            raise ManifestRefused("malformed", "delta file whose header describes no delta")
        want_size, want_digest, what = header.changes_size, header.changes_sha256, "changes"
    if len(payload) != want_size:
        raise ManifestRefused(
            "tampered", f"{what} is {len(payload)} bytes, the signed header says {want_size}"
        )
    if hashlib.sha256(payload).hexdigest() != want_digest:
        raise ManifestRefused("tampered", f"{what} does not match the signed digest")
    return Envelope(kind, header, header_bytes, signature, kid, payload)


# ---------------------------------------------------------------- header


def parse_header(raw: bytes) -> Header:
    """Read a signed header; a malformed one is refused (it can only come from a faulty builder)."""
    try:
        doc = json.loads(raw)
        return _header(doc)
    except ManifestRefused:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ManifestRefused("malformed", f"header: {exc.__class__.__name__}: {exc}") from None


def _header(doc: dict[str, Any]) -> Header:
    if doc["format"] != FORMAT:
        raise ManifestRefused(
            "malformed", f"manifest format {doc['format']} is not supported (want {FORMAT})"
        )
    body = doc["body"]
    delta = doc.get("delta")
    ticket_keys = tuple(PublicKey.parse(t) for t in doc["ticket_keys"])
    return Header(
        raw=doc,
        event_id=str(doc["event"]["id"]),
        event_name=str(doc["event"]["name"]),
        version=_int(doc["version"]),
        issued_at=_int(doc["issued_at"]),
        expires_at=_int(doc["expires_at"]),
        signer=str(doc["signer"]),
        sessions=tuple(
            Session(
                str(s["id"]),
                str(s["name"]),
                _int(s["starts_at"]),
                _int(s["ends_at"]),
                _int(s["entry_opens_minutes"]),
            )
            for s in doc["sessions"]
        ),
        zones=tuple(Zone(str(z["id"]), str(z["name"])) for z in doc["zones"]),
        ticket_keys=ticket_keys,
        gates=tuple(RosterGate(str(g["id"]), PublicKey.parse(g["pub"])) for g in doc["gates"]),
        revoked=frozenset(str(r) for r in doc["revoked"]),
        legacy_codes=_bool(doc["legacy_codes"]),
        body_sha256=str(body["sha256"]),
        body_size=_int(body["size"]),
        tickets=_int(body["tickets"]),
        codes=_int(body["codes"]),
        legacy=_int(body["legacy"]),
        blob_size=_int(body["blob"]),
        by_status={str(k): _int(v) for k, v in doc["by_status"].items()},
        base_version=_int(delta["base_version"]) if delta else None,
        base_sha256=str(delta["base_sha256"]) if delta else None,
        changes_sha256=str(delta["changes_sha256"]) if delta else None,
        changes_size=_int(delta["changes_size"]) if delta else None,
    )


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"expected a non-negative integer, got {value!r}")
    return value


# ---------------------------------------------------------------- the manifest


class Manifest:
    """A verified full manifest, searchable in place.

    Built only by ``open_manifest`` (or ``apply_delta``), so holding one means its
    signature and body digest were checked. Freshness and rollback are separate checks
    (``check_fresh``, ``check_successor``) because they depend on the caller's clock and
    history.
    """

    def __init__(self, envelope: Envelope) -> None:
        h = envelope.header
        self.envelope = envelope
        self.header = h
        self.event_tag = event_tag(h.event_id)
        self.sessions = {s.id: s for s in h.sessions}
        self.zones = {z.id: z for z in h.zones}
        self._session_ids = [s.id for s in h.sessions]
        self._zone_ids = [z.id for z in h.zones]
        keys: dict[bytes, list[PublicKey]] = {}
        for ticket_key_ in h.ticket_keys:
            keys.setdefault(ticket_key_.kid_bytes, []).append(ticket_key_)
        self.ticket_keys = keys
        view = envelope.payload
        n, m, k = h.tickets, h.codes, h.legacy
        need = _body_size(n, m, k, h.blob_size)
        if need != len(view):
            raise ManifestRefused("malformed", f"body layout needs {need} bytes, body has {len(view)}")
        pos = 0
        self._offsets = view[pos : pos + 4 * n].cast("I")
        pos += 4 * n + _pad8(4 * n)
        self._blob = view[pos : pos + h.blob_size]
        pos += h.blob_size
        self._tickets, pos = _index_views(view, pos, n)
        self._codes, pos = _index_views(view, pos, m)
        self._legacy, pos = _index_views(view, pos, k)

    @property
    def version(self) -> int:
        """The manifest's version; only ever grows."""
        return self.header.version

    @property
    def event_id(self) -> str:
        """The event this manifest is for."""
        return self.header.event_id

    @property
    def body_sha256(self) -> str:
        """The digest of the body, which identifies this exact manifest content."""
        return self.header.body_sha256

    def __len__(self) -> int:
        return self.header.tickets

    def _record(self, number: int) -> TicketEntry:
        try:
            entry, _ = decode_record(self._blob, self._offsets[number], self._session_ids, self._zone_ids)
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
        """The entry for a ticket id, if the manifest has one."""
        if len(ticket_id.encode()) > MAX_TICKET_ID:
            return None
        for entry in self._search(self._tickets, ticket_key(ticket_id)):
            if entry.ticket_id == ticket_id:
                return entry
        return None

    def find_code(self, text: str) -> tuple[TicketEntry, PayloadFormat] | None:
        """Resolve an opaque payload as a reference code, then as a legacy ``ORDER-SEAT`` text.

        Returns the entry and the format that matched (``reference`` or ``legacy``).
        """
        digest = code_hash(self.event_id, text)
        for entry in self._search(self._codes, _code_key(digest)):
            if entry.code_hash == digest:
                return entry, PayloadFormat.REFERENCE
        for entry in self._search(self._legacy, legacy_key(text)):
            if entry.legacy_text == text:
                return entry, PayloadFormat.LEGACY
        return None

    def entries(self) -> Iterator[TicketEntry]:
        """Every ticket, in ticket-id order."""
        for number in range(self.header.tickets):
            yield self._record(number)

    def release(self) -> None:
        """Let go of the views into the underlying buffer (so an mmap can be closed)."""
        for view in (self._offsets, self._blob, *self._tickets, *self._codes, *self._legacy):
            view.release()
        self.envelope.payload.release()


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


def open_manifest(data: bytes | memoryview | Any, trusted: Sequence[PublicKey]) -> Manifest:
    """Verify a full manifest file and make it searchable."""
    envelope = open_envelope(data, trusted)
    if envelope.kind != FULL:
        raise ManifestRefused("malformed", "this is a delta: give the manifest it applies to (--base)")
    return Manifest(envelope)


def check_fresh(manifest: Manifest | Header, now: float) -> None:
    """Refuse a manifest past its expiry (the freeze attack)."""
    header = manifest.header if isinstance(manifest, Manifest) else manifest
    if now > header.expires_at:
        raise ManifestRefused("expired", f"expired at {format_instant(header.expires_at)}")


def check_successor(candidate: Manifest | Header, version: int, body_sha256: str | None = None) -> None:
    """Refuse anything but a newer version than the one accepted (or the very same one).

    The same version with different content is refused too: versions are never reused.
    """
    header = candidate.header if isinstance(candidate, Manifest) else candidate
    if header.version < version:
        raise ManifestRefused(
            "rollback", f"version {header.version} is older than accepted version {version}"
        )
    if header.version == version and body_sha256 is not None and header.body_sha256 != body_sha256:
        raise ManifestRefused("rollback", f"version {version} reused for different content")


def accept_manifest(
    data: bytes | memoryview | Any,
    trusted: Sequence[PublicKey],
    *,
    now: float,
    last_version: int = 0,
    last_sha256: str | None = None,
) -> Manifest:
    """Everything a gate checks before it activates a manifest, in one call.

    Signature and digests (``open_manifest``), expiry at ``now``, and succession: the
    version must not be older than ``last_version``, nor the same with other content.
    """
    manifest = open_manifest(data, trusted)
    check_fresh(manifest, now)
    check_successor(manifest, last_version, last_sha256)
    return manifest
