"""Building signed manifests (full, or a delta from a base) from an event and its tickets."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from typing import Any

from gate_daemon.core.keys import SecretKey
from gate_daemon.core.manifest import (
    DELTA,
    FORMAT,
    FULL,
    Manifest,
    Status,
    TicketEntry,
    encode_body,
    encode_changes,
    seal,
)
from gate_daemon.errors import GateError
from gate_daemon.provision.event import EventSpec

#: A manifest without sessions is valid this long by default.
DEFAULT_LIFETIME = 7 * 86400
#: After the last session ends, a manifest stays valid this long by default.
GRACE_AFTER_LAST_SESSION = 86400


class BuildError(GateError):
    """The manifest cannot be built from these inputs."""


def default_expiry(event: EventSpec, issued_at: int) -> int:
    """One day after the last session ends; a week from now for an event without sessions."""
    if event.sessions:
        return max(s.ends_at for s in event.sessions) + GRACE_AFTER_LAST_SESSION
    return issued_at + DEFAULT_LIFETIME


def build_manifest(
    event: EventSpec,
    tickets: Sequence[TicketEntry],
    key: SecretKey,
    *,
    version: int,
    issued_at: int,
    expires_at: int | None = None,
    base: Manifest | None = None,
) -> bytes:
    """A signed manifest file: full, or with ``base`` a delta from it."""
    expires = expires_at if expires_at is not None else default_expiry(event, issued_at)
    if version < 1:
        raise BuildError(f"version must be at least 1, got {version}")
    if expires <= issued_at:
        raise BuildError("the manifest would already be expired (--expires is not after now)")
    body = encode_body(tickets, [s.id for s in event.sessions], [z.id for z in event.zones])
    header: dict[str, Any] = {
        "format": FORMAT,
        "event": {"id": event.event_id, "name": event.name},
        "version": version,
        "issued_at": issued_at,
        "expires_at": expires,
        "signer": key.public.kid,
        "sessions": [
            {
                "id": s.id,
                "name": s.name,
                "starts_at": s.starts_at,
                "ends_at": s.ends_at,
                "entry_opens_minutes": s.entry_opens_minutes,
            }
            for s in event.sessions
        ],
        "zones": [{"id": z.id, "name": z.name} for z in event.zones],
        "ticket_keys": [k.text() for k in event.ticket_keys],
        "gates": [{"id": g.id, "pub": g.key.text()} for g in event.gates],
        "revoked": sorted(set(event.revoked)),
        "by_status": _by_status(tickets),
        "body": body.layout(),
    }
    if base is None:
        return seal(header, FULL, body.data, key)
    if base.event_id != event.event_id:
        raise BuildError(f"base manifest is for event {base.event_id}, not {event.event_id}")
    if version <= base.version:
        raise BuildError(f"version {version} must be greater than the base's version {base.version}")
    old = {e.ticket_id: e for e in base.entries()}
    new = {e.ticket_id: e for e in tickets}
    removed = [tid for tid in old if tid not in new]
    changed = [e for tid, e in new.items() if old.get(tid) != e]
    changes = encode_changes(removed, changed, header)
    header["delta"] = {
        "base_version": base.version,
        "base_sha256": base.body_sha256,
        "changes_sha256": hashlib.sha256(changes).hexdigest(),
        "changes_size": len(changes),
        "removed": len(removed),
        "changed": len(changed),
    }
    return seal(header, DELTA, changes, key)


def _by_status(tickets: Sequence[TicketEntry]) -> dict[str, int]:
    counts = Counter(t.status for t in tickets)
    return {s.value: counts.get(s, 0) for s in Status}
