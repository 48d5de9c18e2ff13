"""Building signed manifests (full, or a delta from a base) from an event and its tickets."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from gate_daemon.core.capacity import STRICT, VENUE, carried, holders
from gate_daemon.core.delta import changes_member, encode_changes, plan_delta
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.manifest import DELTA, FULL, Manifest, seal
from gate_daemon.core.manifest_header import FORMAT, RosterGate, Zone
from gate_daemon.core.rotating import DEFAULT_TOLERANCE
from gate_daemon.core.ticket_record import Status, TicketEntry
from gate_daemon.core.ticket_table import encode_body
from gate_daemon.errors import GateError
from gate_daemon.provision.event import EventSpec

#: Versions fit a signed 64-bit integer, so every store can keep them.
MAX_VERSION = 2**63 - 1
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
    extra_header: Mapping[str, Any] | None = None,
) -> bytes:
    """A signed manifest file: full, or with ``base`` a delta from it.

    With a base, tickets it has that ``tickets`` lacks stay in, canceled (see core.delta).
    ``extra_header`` adds optional header keys, such as a pretix event's
    (``provision.pretix_manifest.pretix_header``).
    """
    expires = expires_at if expires_at is not None else default_expiry(event, issued_at)
    if not 1 <= version <= MAX_VERSION:
        raise BuildError(f"version must be 1 to {MAX_VERSION}, got {version}")
    if expires <= issued_at:
        raise BuildError("the manifest would already be expired (--expires is not after now)")
    plan = None
    if base is not None:
        if base.event_id != event.event_id:
            raise BuildError(f"base manifest is for event {base.event_id}, not {event.event_id}")
        if version <= base.version:
            raise BuildError(f"version {version} must be greater than the base's version {base.version}")
        sessions, zones = {s.id for s in event.sessions}, {z.id for z in event.zones}
        plan = plan_delta(event.event_id, base.entries(), tickets, sessions, zones)
        tickets = plan.entries
    body = encode_body(
        tickets, [s.id for s in event.sessions], [z.id for z in event.zones], legacy_codes=event.legacy_codes
    )
    header: dict[str, Any] = {
        "format": FORMAT,
        "event": {"id": event.event_id, "name": event.name, **_capacity(event)},
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
        "zones": [_zone(z) for z in event.zones],
        "ticket_keys": [k.text() for k in event.ticket_keys],
        "gates": [_roster_gate(g) for g in event.gates],
        **_shares(event, base),
        **_supervisors(event),
        **_staff(event),
        "revoked": sorted(set(event.revoked)),
        "legacy_codes": event.legacy_codes,
        "by_status": _by_status(tickets),
        "body": body.layout(),
        **_rotating(event),
        **(extra_header or {}),
    }
    if base is None or plan is None:
        return seal(header, FULL, body.data, key)
    changes = encode_changes(plan.changed, header)
    header["delta"] = changes_member(base, changes, plan)
    return seal(header, DELTA, changes, key)


def _roster_gate(gate: RosterGate) -> dict[str, str]:
    """A roster gate in the header; ``addr`` only when known, so older rosters sign the same bytes."""
    entry = {"id": gate.id, "pub": gate.key.text()}
    if gate.addr is not None:
        entry["addr"] = gate.addr
    return entry


def _supervisors(event: EventSpec) -> dict[str, Any]:
    """The supervisors' roster; left out when there is none, so such a manifest reads as before."""
    if not event.supervisors:
        return {}
    return {"supervisors": [{"id": s.id, "pub": s.key.text()} for s in event.supervisors]}


def _staff(event: EventSpec) -> dict[str, Any]:
    """Staff keys and revoked operators; left out when there are none, so such a manifest reads as before."""
    out: dict[str, Any] = {}
    if event.staff_keys:
        out["staff_keys"] = [k.text() for k in event.staff_keys]
    if event.revoked_staff:
        out["revoked_staff"] = sorted(set(event.revoked_staff))
    return out


def _zone(zone: Zone) -> dict[str, Any]:
    """A zone in the header; ``capacity`` only when it has one, so such a manifest reads as before."""
    out: dict[str, Any] = {"id": zone.id, "name": zone.name}
    if zone.capacity is not None:
        out["capacity"] = zone.capacity
    return out


def _capacity(event: EventSpec) -> dict[str, Any]:
    """The venue's capacity and its mode, when any capacity is set (docs/CAPACITY.md)."""
    out: dict[str, Any] = {}
    if event.capacity is not None:
        out["capacity"] = event.capacity
    if event.capacity is not None or any(z.capacity is not None for z in event.zones):
        out["capacity_mode"] = event.capacity_mode
    return out


def _shares(event: EventSpec, base: Manifest | None) -> dict[str, Any]:
    """Strict mode's initial split (docs/CAPACITY.md): made once, then carried forward.

    The split a version before signed comes from ``event.capacity_shares`` (the central
    sets it from its latest version) or else the delta's ``base``; per scope, it is kept
    as it was while the capacity is unchanged (``core.capacity.carried``). Left out in
    count mode and without a roster gate that admits, so such a manifest reads as before.
    """
    gates = holders(g.id for g in event.gates)
    if event.capacity_mode != STRICT or not gates:
        return {}
    prior = event.capacity_shares
    if prior is None:
        prior = base.header.capacity_shares if base is not None else {}
    scopes = [(VENUE, event.capacity)] + [(z.id, z.capacity) for z in event.zones]
    out = {scope: carried(prior.get(scope), n, gates) for scope, n in scopes if n is not None}
    return {"capacity_shares": out} if out else {}


def _by_status(tickets: Sequence[TicketEntry]) -> dict[str, int]:
    counts = Counter(t.status for t in tickets)
    return {s.value: counts.get(s, 0) for s in Status}


def _rotating(event: EventSpec) -> dict[str, Any]:
    """Rotating tickets' keys, left out at their defaults so such a manifest reads as before."""
    out: dict[str, Any] = {}
    if event.revoked_holders:
        out["revoked_holders"] = sorted(set(event.revoked_holders))
    if event.rotating_tolerance != DEFAULT_TOLERANCE:
        out["rotating_tolerance"] = event.rotating_tolerance
    return out
