"""One ticket's scans, records and conflicts, read from a gate's ledger file (``gatectl report ticket``).

Read-only, without the daemon (``store.offline_reads``): the evidence log has no index on
the ticket (a scan writes no more pages than it must), so this reads the whole log once,
the morning after, never on the scan path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gate_daemon.core.ticket_history import RecordFact, ScanFact
from gate_daemon.store.offline_reads import reading

_SCANS = (
    "SELECT uuid, hlc, wall, gate, device, operator, kind, outcome, reason, resolution, mode"
    " FROM scans WHERE ticket_id = ? ORDER BY hlc, uuid"
)
_RECORDS = (
    "SELECT uuid, hlc, wall, origin, kind, operator, mode, forced, voids"
    " FROM redemptions WHERE ticket_id = ? ORDER BY hlc, uuid"
)
_CONFLICTS = "SELECT loser, winner FROM conflicts WHERE ticket_id = ?"


@dataclass(frozen=True, slots=True)
class TicketFacts:
    """What one database holds of a ticket."""

    scans: list[ScanFact]
    records: list[RecordFact]
    #: Each losing entry's uuid with the uuid of the entry that stands.
    conflicts: dict[str, str]


def scan_fact(row: tuple[object, ...]) -> ScanFact:
    """A ``ScanFact`` from the columns of ``_SCANS`` (the central's evidence table has the same)."""
    uuid, hlc, wall, gate, device, operator, kind, outcome, reason, resolution, mode = row
    return ScanFact(
        str(uuid), int(str(hlc)), float(str(wall)), str(gate), str(device),
        None if operator is None else str(operator), str(kind), str(outcome), str(reason), str(resolution),
        str(mode),
    )  # fmt: skip


def record_fact(row: tuple[object, ...]) -> RecordFact:
    """A ``RecordFact`` from the columns of ``_RECORDS`` (the central's check-ins have the same)."""
    uuid, hlc, wall, origin, kind, operator, mode, forced, voids = row
    return RecordFact(
        str(uuid), int(str(hlc)), float(str(wall)), str(origin), str(kind),
        None if operator is None else str(operator), str(mode), bool(forced),
        None if voids is None else str(voids),
    )  # fmt: skip


def read_ticket(path: Path, ticket_id: str) -> TicketFacts:
    """The ticket's facts in the ledger at ``path``; ``LedgerError`` naming the file otherwise."""
    with reading(path) as db:
        scans = [scan_fact(tuple(r)) for r in db.execute(_SCANS, (ticket_id,))]
        records = [record_fact(tuple(r)) for r in db.execute(_RECORDS, (ticket_id,))]
        conflicts = {str(lo): str(w) for lo, w in db.execute(_CONFLICTS, (ticket_id,))}
    return TicketFacts(scans, records, conflicts)
