"""Shared test material: a fixed timeline, a demo event and its tickets, built for real on disk.

Every artefact is made through the package's own writers and readers (``write_keypair``,
``load_event``, ``load_tickets``, ``build_manifest``, ``read_manifest``), never by hand,
so a test that uses them exercises the same path a venue tech does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from gate_daemon.core.decision import Decision, ScanKind
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.manifest import Manifest
from gate_daemon.core.reasons import Reason
from gate_daemon.core.records import Redemption
from gate_daemon.core.ticket_record import TicketEntry
from gate_daemon.core.times import parse_instant
from gate_daemon.core.tokens import TicketClaims, encode_signed, event_tag
from gate_daemon.provision.build import build_manifest
from gate_daemon.provision.event import EventSpec, load_event
from gate_daemon.provision.keyfiles import write_keypair
from gate_daemon.provision.tickets import load_tickets
from gate_daemon.store.ledger import Ledger
from gate_daemon.store.manifest_file import read_manifest
from gate_daemon.store.scans import Scan, ScanRecord, new_scan_id

EVENT_ID = "demo-2026"

# The timeline every test reasons about (all UTC).
ISSUED = parse_instant("2026-11-01T00:00:00Z")
SAT_OPENS = parse_instant("2026-11-21T18:00:00Z")  # 60 minutes before the start
SAT_START = parse_instant("2026-11-21T19:00:00Z")
SAT_END = parse_instant("2026-11-21T23:30:00Z")
SUN_OPENS = parse_instant("2026-11-22T17:30:00Z")  # 30 minutes before the start
SUN_START = parse_instant("2026-11-22T18:00:00Z")  # written as 19:00+01:00
SUN_END = parse_instant("2026-11-22T23:30:00Z")
#: build_manifest's default: a day after the last session ends.
EXPIRES = SUN_END + 86400
#: Far enough ahead that manifests built by gatectl (issued "now") stay valid.
CLI_EXPIRES = "2099-12-31T00:00:00Z"

EVENT_TOML = """\
# The demo event every test uses.
revoked = ["T-REV"]
ticket_keys = ["issuer.pub"]

[event]
id = "demo-2026"
name = "Demo Night"

[[sessions]]
id = "sat"
name = "Saturday"
starts_at = 2026-11-21T19:00:00Z
ends_at = 2026-11-21T23:30:00Z
entry_opens_minutes = 60

[[sessions]]
id = "sun"
name = "Sunday"
starts_at = "2026-11-22T19:00:00+01:00"
ends_at = 2026-11-22T23:30:00Z
entry_opens_minutes = 30

[[zones]]
id = "floor"
name = "Floor"

[[zones]]
id = "balcony"
name = "Balcony"

[[gates]]
id = "north-1"
pub = "north-1.pub"
"""

# One ticket per situation the decision table needs.
TICKETS_CSV = """\
ticket_id,order_id,seat,status,session,zone,entries,code
T-0001,O-100,A1,completed,sat,floor,1,REF-SAT-FLOOR-0001
T-0002,O-100,A2,completed,sat,balcony,1,
T-0003,O-101,B1,pending,sat,floor,1,
T-0004,O-102,B2,canceled,sat,,1,
T-0005,O-103,,refunded,,,1,REF-REFUNDED-0005
T-0006,O-104,C1,blocked,,,1,
T-0007,O-105,C2,completed,,,3,
T-0008,O-106,C3,completed,sun,,reentry,
T-0009,,,completed,,,1,
T-REV,O-107,D1,completed,,,1,
T-SUN,O-108,D2,completed,sun,floor,1,REF-SUNDAY-FLOOR-77
"""

#: How many tickets TICKETS_CSV has, and how many of each status.
TICKET_COUNT = 11
BY_STATUS = {"completed": 7, "pending": 1, "canceled": 1, "refunded": 1, "blocked": 1}

# QR alphanumeric mode's 45 characters.
QR_ALPHANUMERIC = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")


@dataclass
class World:
    """Keys, event, tickets and a version-1 manifest, all as real files in ``dir``."""

    dir: Path
    signer: SecretKey
    signer_key: Path
    signer_pub: Path
    issuer: SecretKey
    issuer_key: Path
    issuer_pub: Path
    gate: SecretKey
    event_path: Path
    tickets_path: Path
    event: EventSpec
    tickets: list[TicketEntry]
    manifest_path: Path
    manifest_bytes: bytes
    manifest: Manifest

    @property
    def trusted(self) -> list:
        """The keys a gate trusts for manifests."""
        return [self.signer.public]

    def sign(self, ticket_id: str, *, key: SecretKey | None = None, event: str = EVENT_ID, **claims) -> str:
        """A signed ticket payload (by the event's issuer unless ``key`` is given)."""
        body = TicketClaims(ticket_id=ticket_id, event_tag=event_tag(event), **claims)
        return encode_signed(body, key or self.issuer)

    def build(self, tickets=None, *, event=None, version=1, base=None, expires_at=None, key=None) -> bytes:
        """A manifest file's bytes for these inputs (defaults: this world's)."""
        return build_manifest(
            event or self.event,
            self.tickets if tickets is None else tickets,
            key or self.signer,
            version=version,
            issued_at=ISSUED,
            expires_at=expires_at,
            base=base,
        )


def make_world(root: Path) -> World:
    """Write keys, event.toml and tickets.csv into ``root`` and build manifest v1 from them."""
    signer_key, signer_pub, signer = write_keypair(root / "signer")
    issuer_key, issuer_pub, issuer = write_keypair(root / "issuer")
    _, _, gate = write_keypair(root / "north-1")
    event_path = root / "event.toml"
    event_path.write_text(EVENT_TOML)
    tickets_path = root / "tickets.csv"
    tickets_path.write_text(TICKETS_CSV)
    event = load_event(event_path)
    tickets = load_tickets(tickets_path, event)
    data = build_manifest(event, tickets, signer, version=1, issued_at=ISSUED)
    manifest_path = root / "v1.gdm"
    manifest_path.write_bytes(data)
    manifest = read_manifest(manifest_path, [signer.public])
    return World(
        dir=root,
        signer=signer,
        signer_key=signer_key,
        signer_pub=signer_pub,
        issuer=issuer,
        issuer_key=issuer_key,
        issuer_pub=issuer_pub,
        gate=gate,
        event_path=event_path,
        tickets_path=tickets_path,
        event=event,
        tickets=tickets,
        manifest_path=manifest_path,
        manifest_bytes=data,
        manifest=manifest,
    )


def entry(world: World, ticket_id: str) -> TicketEntry:
    """The world's ticket with this id, as loaded from tickets.csv."""
    return next(t for t in world.tickets if t.ticket_id == ticket_id)


def replace_ticket(tickets: list[TicketEntry], ticket_id: str, **changes) -> list[TicketEntry]:
    """A copy of ``tickets`` with one ticket changed."""
    return [dataclasses.replace(t, **changes) if t.ticket_id == ticket_id else t for t in tickets]


def flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    """``data`` with the byte at ``index`` XORed by ``mask``."""
    out = bytearray(data)
    out[index] ^= mask
    return bytes(out)


def hand_scan(
    *, wall: float, kind: ScanKind = ScanKind.ENTRY, scan_id: str | None = None, operator: str | None = None
) -> Scan:
    """A scan at a test device, decided offline on manifest version 1, as the gate hands it to its ledger."""
    return Scan(
        uuid=scan_id or new_scan_id(),
        wall=wall,
        device="test",
        operator=operator,
        fingerprint="00" * 16,
        kind=kind,
        route="offline",
        manifest_version=1,
    )


async def admit(
    ledger: Ledger,
    ticket: str,
    kind: ScanKind = ScanKind.ENTRY,
    *,
    wall: float,
    scan_id: str | None = None,
    operator: str | None = None,
) -> Redemption:
    """Commit one scan of ``ticket`` that its verdict allows, whatever its facts, through the ledger."""
    allowed = Decision(Reason.OK, "Entry allowed", ticket_id=ticket)
    scan = hand_scan(wall=wall, kind=kind, scan_id=scan_id, operator=operator)
    recorded = await ledger.record_scan(scan, ticket, lambda _facts: allowed)
    assert isinstance(recorded, ScanRecord) and recorded.redemption is not None
    return recorded.redemption
