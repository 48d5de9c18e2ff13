"""A manifest's header as the gate reads it: the event, its sessions and zones, the rosters
of gates and supervisors, the keys, and every optional key later formats added.

``parse_header`` turns the signed canonical JSON into a frozen ``Header``; anything it
cannot read is ``ManifestRefused("malformed", ...)``. The container around the header
(magic, signature, body) is ``gate_daemon.core.manifest``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from gate_daemon.core.keys import PublicKey
from gate_daemon.core.pretix_sig import PretixEvent, parse_pretix_header
from gate_daemon.core.rotating import DEFAULT_TOLERANCE, MAX_TOLERANCE
from gate_daemon.core.times import MAX_INSTANT
from gate_daemon.errors import ManifestRefused

FORMAT = 1
#: The longest roster gate address ("HOST:PORT").
MAX_ADDR = 300


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
    #: Strict capacity's initial split, per scope: gate id to places (``core.capacity``).
    capacity_shares: dict[str, dict[str, int]] = field(default_factory=dict)


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
        capacity_shares=_shares(doc.get("capacity_shares", {})),
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


def _shares(value: object) -> dict[str, dict[str, int]]:
    """The optional ``capacity_shares``: per scope, gate id to places (negative after a capacity lowered)."""
    if not isinstance(value, dict):
        raise ValueError("capacity_shares must be an object")
    out: dict[str, dict[str, int]] = {}
    for scope, split in value.items():
        if not isinstance(split, dict):
            raise ValueError(f"capacity_shares.{scope} must be an object")
        for gate, places in split.items():
            if type(places) is not int or abs(places) > 10_000_000:
                raise ValueError(f"capacity_shares.{scope}.{gate}: expected an integer, got {places!r}")
        out[str(scope)] = {str(gate): places for gate, places in split.items()}
    return out


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
