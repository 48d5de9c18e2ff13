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
from gate_daemon.core.manifest_header import Header, RosterSupervisor, parse_header
from gate_daemon.core.ticket_record import TicketEntry
from gate_daemon.core.ticket_table import TicketTable
from gate_daemon.core.times import format_instant
from gate_daemon.core.tokens import PayloadFormat, event_tag
from gate_daemon.errors import ManifestRefused

MAGIC = b"GDMANIF1"
DOMAIN = b"gate-daemon/manifest/v1\x00"
FULL, DELTA = b"F", b"D"
MAX_HEADER = 4 * 1024 * 1024
_PREAMBLE = struct.Struct("<8sc4sI")
#: The most bytes before a payload: enough to read any file's header and signature.
MAX_HEAD = _PREAMBLE.size + MAX_HEADER + SIGNATURE_SIZE


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
