"""The signed ticket manifest: its file format, verification, and indexed lookup.

A manifest file is::

    8     magic "GDMANIF1"
    1     kind  "F" full (a body follows) or "D" delta (changes to a base follow)
    4     key id of the signer
    u32   header length (little-endian)
    ...   header: canonical JSON (event, version, times, sessions, zones, keys, rosters of
          gates and supervisors, revoked list, counts, and the SHA-256 of the full body)
    64    Ed25519 signature over "gate-daemon/manifest/v1\\0" + header
    ...   payload: the body (full) or the changes (delta)

The signature covers only the header; the header commits to the body by its digest. So a
delta's header is also the header of the full manifest it produces: a gate that applies
a delta rebuilds the body, checks its digest against the signed one, and holds a full
manifest that any other gate can verify on its own.

The body is the ticket table, searched in place: see ``gate_daemon.core.ticket_table``.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from gate_daemon.core.keys import SIGNATURE_SIZE, PublicKey, SecretKey
from gate_daemon.core.pretix_sig import PretixEvent, parse_pretix_header
from gate_daemon.core.rotating import DEFAULT_TOLERANCE, MAX_TOLERANCE
from gate_daemon.core.ticket_record import TicketEntry
from gate_daemon.core.ticket_table import TicketTable
from gate_daemon.core.times import MAX_INSTANT, format_instant
from gate_daemon.core.tokens import PayloadFormat, event_tag
from gate_daemon.errors import ManifestRefused

MAGIC = b"GDMANIF1"
FORMAT = 1
DOMAIN = b"gate-daemon/manifest/v1\x00"
FULL, DELTA = b"F", b"D"
MAX_HEADER = 4 * 1024 * 1024
#: The longest roster gate address ("HOST:PORT").
MAX_ADDR = 300
_PREAMBLE = struct.Struct("<8sc4sI")
#: The most bytes before a payload: enough to read any file's header and signature.
MAX_HEAD = _PREAMBLE.size + MAX_HEADER + SIGNATURE_SIZE


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
    #: How many people the zone holds at most (``gate_daemon.core.capacity``); None: no limit.
    capacity: int | None = None


@dataclass(frozen=True, slots=True)
class RosterGate:
    """A gate allowed to talk to its peers, with its public key."""

    id: str
    key: PublicKey
    #: Where its LAN API listens ("HOST:PORT"): its peers link to it (docs/ENROLL.md); None: unknown.
    addr: str | None = None


@dataclass(frozen=True, slots=True)
class RosterSupervisor:
    """A supervisor allowed to sign commands to the gates, with their public key."""

    id: str
    key: PublicKey


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
    #: Who may sign supervisor commands (``gate_daemon.core.commands``); older manifests have none.
    supervisors: tuple[RosterSupervisor, ...] = ()
    #: Certificate ids of rotating tickets issued again to a new phone (``core.rotating``).
    revoked_holders: frozenset[str] = frozenset()
    #: Steps either side of the gate's own that a rotating code may be from.
    rotating_tolerance: int = DEFAULT_TOLERANCE
    #: Keys that sign staff badges (``gate_daemon.core.badges``); older manifests have none.
    staff_keys: tuple[PublicKey, ...] = ()
    #: Operator ids whose badges are refused.
    revoked_staff: frozenset[str] = frozenset()
    #: How many people the venue holds at most (``gate_daemon.core.capacity``); None: no limit.
    capacity: int | None = None
    #: How capacity is kept: ``strict`` (shares held by the gates) or ``count`` (best effort).
    capacity_mode: str = "count"
    #: A pretix event's signing keys and check-in rules (``core.pretix_sig``); older manifests have none.
    pretix: PretixEvent | None = None


# ---------------------------------------------------------------- container


def canonical_json(value: Any) -> bytes:
    """The one byte form of a header that is signed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def seal(header: dict[str, Any], kind: bytes, payload: bytes | bytearray, key: SecretKey) -> bytes:
    """Sign ``header`` and assemble a manifest file around ``payload``."""
    raw = canonical_json(header)
    signature = key.sign(DOMAIN, raw)
    return _PREAMBLE.pack(MAGIC, kind, key.public.kid_bytes, len(raw)) + raw + signature + payload


@dataclass(frozen=True, slots=True)
class Head:
    """A manifest file's header whose signature has been verified, and where its payload starts.

    Everything before the payload, so a reader can refuse a file by the payload size the
    signed header declares before it copies, hashes or reads a byte of the payload.
    """

    kind: bytes
    header: Header
    header_bytes: bytes
    signature: bytes
    kid: bytes
    offset: int
    #: The payload's size and SHA-256 as the signed header declares them: the body's, or
    #: a delta's changes'.
    payload_size: int
    payload_sha256: str

    @property
    def what(self) -> str:
        """What the payload is called in a refusal."""
        return "body" if self.kind == FULL else "changes"

    def check_payload_size(self, size: int) -> None:
        """Refuse a payload of ``size`` bytes unless it is the size the signed header declares."""
        if size != self.payload_size:
            raise ManifestRefused(
                "tampered", f"{self.what} is {size} bytes, the signed header says {self.payload_size}"
            )


@dataclass(frozen=True, slots=True)
class Envelope:
    """A manifest file whose header signature and payload digest have been verified."""

    kind: bytes
    header: Header
    header_bytes: bytes
    signature: bytes
    kid: bytes
    payload: memoryview

    def full_prefix(self) -> bytes:
        """What precedes the body in a full manifest file with this (signed) header."""
        pre = _PREAMBLE.pack(MAGIC, FULL, self.kid, len(self.header_bytes))
        return pre + self.header_bytes + self.signature


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


def open_head(data: bytes | memoryview | Any, trusted: Sequence[PublicKey]) -> Head:
    """Verify the header of a manifest file, given its first ``MAX_HEAD`` bytes (or all of them).

    The payload is neither read nor checked here: see ``Head.check_payload_size``.
    """
    kind, kid, header_bytes, signature, offset = _split(memoryview(data))
    candidates = [k for k in trusted if k.kid_bytes == kid]
    if not candidates:
        raise ManifestRefused("unknown_key", f"signed by key {kid.hex()}, which is not trusted here")
    if not any(k.verify(DOMAIN, header_bytes, signature) for k in candidates):
        raise ManifestRefused("bad_signature", f"header signature does not verify under key {kid.hex()}")
    header = parse_header(header_bytes)
    if header.signer != kid.hex():
        raise ManifestRefused("malformed", "header names a different signer than the file")
    if kind == FULL:
        return Head(kind, header, header_bytes, signature, kid, offset, header.body_size, header.body_sha256)
    if header.changes_size is None or header.changes_sha256 is None:
        raise ManifestRefused("malformed", "delta file whose header describes no delta")
    return Head(
        kind, header, header_bytes, signature, kid, offset, header.changes_size, header.changes_sha256
    )


def open_envelope(data: bytes | memoryview | Any, trusted: Sequence[PublicKey]) -> Envelope:
    """Verify a manifest file's signature and payload digest (nothing else yet)."""
    view = memoryview(data)
    head = open_head(view, trusted)
    payload = view[head.offset :]
    head.check_payload_size(len(payload))
    if hashlib.sha256(payload).hexdigest() != head.payload_sha256:
        raise ManifestRefused("tampered", f"{head.what} does not match the signed digest")
    return Envelope(head.kind, head.header, head.header_bytes, head.signature, head.kid, payload)


# ---------------------------------------------------------------- header


def parse_header(raw: bytes) -> Header:
    """Read a header; a malformed one is refused.

    Signed headers come only from our builder, but ``peek_header`` reads unverified ones
    too, so anything at all must end as ``ManifestRefused``.
    """
    try:
        doc = json.loads(raw)
        # Lone surrogates (from "\ud800" escapes) cannot be printed or encoded again.
        json.dumps(doc, ensure_ascii=False).encode()
        return _header(doc)
    except ManifestRefused:
        raise
    except RecursionError:
        raise ManifestRefused("malformed", "header: nested too deeply") from None
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
        issued_at=_instant(doc["issued_at"]),
        expires_at=_instant(doc["expires_at"]),
        signer=str(doc["signer"]),
        sessions=tuple(
            Session(
                str(s["id"]),
                str(s["name"]),
                _instant(s["starts_at"]),
                _instant(s["ends_at"]),
                _int(s["entry_opens_minutes"]),
            )
            for s in doc["sessions"]
        ),
        zones=tuple(Zone(str(z["id"]), str(z["name"]), _capacity(z)) for z in doc["zones"]),
        ticket_keys=ticket_keys,
        gates=tuple(
            RosterGate(str(g["id"]), PublicKey.parse(g["pub"]), _addr(g.get("addr"))) for g in doc["gates"]
        ),
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
        supervisors=tuple(
            RosterSupervisor(str(s["id"]), PublicKey.parse(s["pub"])) for s in doc.get("supervisors", ())
        ),
        revoked_holders=frozenset(str(c) for c in doc.get("revoked_holders", ())),
        rotating_tolerance=_tolerance(doc.get("rotating_tolerance", DEFAULT_TOLERANCE)),
        staff_keys=tuple(PublicKey.parse(t) for t in doc.get("staff_keys", ())),
        revoked_staff=frozenset(str(r) for r in doc.get("revoked_staff", ())),
        capacity=_capacity(doc["event"]),
        capacity_mode=_capacity_mode(doc["event"]),
        pretix=parse_pretix_header(doc),
    )


def _addr(value: object) -> str | None:
    """A roster gate's optional LAN address: a "HOST:PORT" string, or absent."""
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ADDR:
        raise ValueError(f"a gate's addr must be HOST:PORT, got {value!r}")
    return value


def _tolerance(value: object) -> int:
    steps = _int(value)
    if steps > MAX_TOLERANCE:
        raise ValueError(f"rotating_tolerance {steps} is more than {MAX_TOLERANCE} steps")
    return steps


def _capacity(table: dict[str, Any]) -> int | None:
    """A zone's or the event's optional ``capacity``: older manifests have none."""
    value = table.get("capacity")
    return None if value is None else _int(value)


def _capacity_mode(event: dict[str, Any]) -> str:
    mode = event.get("capacity_mode", "count")
    if mode not in ("strict", "count"):
        raise ValueError(f"capacity_mode must be strict or count, got {mode!r}")
    return str(mode)


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _instant(value: object) -> int:
    seconds = _int(value)
    if seconds > MAX_INSTANT:
        raise ValueError(f"time {seconds} is after 2106")
    return seconds


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"expected a non-negative integer, got {value!r}")
    return value


# ---------------------------------------------------------------- the manifest


class Manifest:
    """A verified full manifest, searchable in place.

    Built only by ``open_manifest`` (or ``accept_manifest``), so holding one means its
    signature and body digest were checked. Freshness and rollback are separate checks
    (``check_fresh``, ``check_successor``) because they depend on the caller's clock and
    history; ``accept_manifest`` runs them all.
    """

    def __init__(self, envelope: Envelope) -> None:
        h = envelope.header
        self.envelope = envelope
        self.header = h
        self.event_tag = event_tag(h.event_id)
        self.sessions = {s.id: s for s in h.sessions}
        self.zones = {z.id: z for z in h.zones}
        keys: dict[bytes, list[PublicKey]] = {}
        for key in h.ticket_keys:
            keys.setdefault(key.kid_bytes, []).append(key)
        self.ticket_keys = keys
        self.table = TicketTable(
            envelope.payload,
            tickets=h.tickets,
            codes=h.codes,
            legacy=h.legacy,
            blob_size=h.blob_size,
            sessions=[s.id for s in h.sessions],
            zones=[z.id for z in h.zones],
            event_id=h.event_id,
        )

    @property
    def version(self) -> int:
        """The manifest's version; only ever grows."""
        return self.header.version

    @property
    def event_id(self) -> str:
        """The event this manifest is for."""
        return self.header.event_id

    @property
    def supervisors(self) -> tuple[RosterSupervisor, ...]:
        """The supervisors whose signed commands the gates obey (none: no commands accepted)."""
        return self.header.supervisors

    @property
    def body_sha256(self) -> str:
        """The digest of the body, which identifies this exact manifest content."""
        return self.header.body_sha256

    def __len__(self) -> int:
        return len(self.table)

    def find_ticket(self, ticket_id: str) -> TicketEntry | None:
        """The entry for a ticket id, if the manifest has one."""
        return self.table.find_ticket(ticket_id)

    def find_code(self, text: str) -> tuple[TicketEntry, PayloadFormat] | None:
        """Resolve an opaque payload as a reference code, then as a legacy ``ORDER-SEAT`` text.

        Returns the entry and the format that matched (``reference`` or ``legacy``).
        """
        return self.table.find_code(text)

    def entries(self) -> Iterator[TicketEntry]:
        """Every ticket, in ticket-id order."""
        return self.table.entries()

    def release(self) -> None:
        """Let go of the views into the underlying buffer (so an mmap can be closed)."""
        self.table.release()
        self.envelope.payload.release()


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
