"""A ticket's history, for a dispute the morning after: every scan and every record, in order.

Two sources say what happened to a ticket. The evidence log holds each *scan* at the
gate that made it, denials included (who, which device, the outcome and reason, what
the scan did); the records (entries, exits and voids) travel to every gate and the
central. A scan that admitted someone made the record with its own uuid, so the two
meet in one row; a record without a scan here (learned from a peer or the central, or
a void) is a row of its own. A scan row's ``gate`` is the gate that logged it (at the
central, the gate that uploaded it, by its signature); it meets a record only when that
record was made at the same gate, so a row uploaded under another gate's uuid never stands
for that gate's record. Rows are in hybrid-clock order (the order conflicts are judged in;
the scan's or record's uuid breaks ties, then scan before record, then the gate), which is
the order things happened across gates.

``admissions`` answers the question a dispute asks, "was this person let in, where and
when?": the entries that stand (not voided by their gate, not a double entry that lost).

Pure: facts in, rows out. ``gatectl report ticket`` reads them from one gate's ledger,
``gate-central report ticket`` from the central's database.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

from gate_daemon.core.times import format_instant

#: The longest ticket id a record may carry, in bytes (``core.records.MAX_TEXT``).
MAX_TICKET_ID = 64
#: The columns of a row, in the order text and CSV print them.
COLUMNS = (
    "time", "gate", "device", "operator", "kind", "outcome", "reason", "resolution", "mode", "record",
    "conflict", "void", "source",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ScanFact:
    """One evidence row of the ticket's: a scan at ``gate`` (never the payload)."""

    uuid: str
    hlc: int
    wall: float
    gate: str
    device: str
    operator: str | None
    kind: str
    outcome: str
    reason: str
    resolution: str
    mode: str


@dataclass(frozen=True, slots=True)
class RecordFact:
    """One of the ticket's records: an entry, exit or void that happened at ``origin``."""

    uuid: str
    hlc: int
    wall: float
    origin: str
    kind: str
    operator: str | None
    mode: str
    forced: bool = False
    voids: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One line of a ticket's history; ``source`` is ``scan`` (from the evidence log) or ``record``."""

    time: str
    gate: str
    device: str | None
    operator: str | None
    kind: str
    outcome: str | None
    reason: str | None
    resolution: str | None
    mode: str
    record: str | None
    conflict: str | None
    void: str | None
    source: str
    hlc: int
    wall: float
    #: The scan's uuid (a scan row) or the record's (a record row): the tie-break of equal stamps.
    uuid: str = ""

    def as_dict(self) -> dict[str, object]:
        """The row as JSON shows it."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Admission:
    """An entry that stands: the person was let in at ``gate`` at ``time``."""

    gate: str
    time: str
    record: str
    operator: str | None
    forced: bool


def history(
    scans: Iterable[ScanFact], records: Iterable[RecordFact], conflicts: Mapping[str, str]
) -> list[HistoryRow]:
    """A ticket's rows in hybrid-clock order; ``conflicts`` maps each losing entry to its winner."""
    by_uuid = {r.uuid: r for r in records}
    voided_by = {r.voids: r.uuid for r in by_uuid.values() if r.kind == "void" and r.voids is not None}
    stands_over: dict[str, list[str]] = {}
    for loser, winner in conflicts.items():
        stands_over.setdefault(winner, []).append(loser)

    def conflict(uuid: str) -> str | None:
        if uuid in conflicts:
            return f"lost to {conflicts[uuid]}"
        if uuid in stands_over:
            return "stands over " + ", ".join(sorted(stands_over[uuid]))
        return None

    def void(record: RecordFact | None) -> str | None:
        if record is None:
            return None
        if record.voids is not None:
            return f"voids {record.voids}"
        return f"voided by {voided_by[record.uuid]}" if record.uuid in voided_by else None

    rows = []
    seen = set()
    for scan in scans:
        record = by_uuid.get(scan.uuid)
        if record is not None and record.origin != scan.gate:
            record = None  # another gate's record: this scan row does not stand for it
        if record is not None:
            seen.add(record.uuid)
        rows.append(
            HistoryRow(
                format_instant(scan.wall),
                scan.gate,
                scan.device,
                scan.operator,
                scan.kind,
                scan.outcome,
                scan.reason,
                scan.resolution,
                scan.mode,
                None if record is None else record.uuid,
                None if record is None else conflict(record.uuid),
                void(record),
                "scan",
                scan.hlc,
                scan.wall,
                scan.uuid,
            )
        )
    for record in by_uuid.values():
        if record.uuid in seen:
            continue
        rows.append(
            HistoryRow(
                format_instant(record.wall),
                record.origin,
                None,
                record.operator,
                record.kind,
                None,
                None,
                "forced" if record.forced else None,
                record.mode,
                record.uuid,
                conflict(record.uuid),
                void(record),
                "record",
                record.hlc,
                record.wall,
                record.uuid,
            )
        )
    rows.sort(key=lambda r: (r.hlc, r.uuid, r.source, r.gate))
    return rows


def admissions(records: Iterable[RecordFact], conflicts: Mapping[str, str]) -> list[Admission]:
    """The entries that stand, oldest first: not voided by their own gate, not a double entry that lost."""
    records = list(records)
    origin_of = {r.uuid: r.origin for r in records}
    voided = {
        r.voids
        for r in records
        if r.kind == "void" and r.voids is not None and origin_of.get(r.voids) == r.origin
    }
    standing = [r for r in records if r.kind == "entry" and r.uuid not in voided and r.uuid not in conflicts]
    standing.sort(key=lambda r: (r.hlc, r.uuid))
    return [Admission(r.origin, format_instant(r.wall), r.uuid, r.operator, r.forced) for r in standing]


def answer(ticket_id: str, rows: list[HistoryRow], admitted: list[Admission]) -> str:
    """One sentence: was this person let in, where and when."""
    if not admitted:
        scans = sum(1 for r in rows if r.source == "scan")
        return f"{ticket_id}: never admitted ({len(rows)} rows, {scans} scans)"
    places = "; ".join(f"{a.gate} at {a.time}" + (" (forced)" if a.forced else "") for a in admitted)
    times = "once" if len(admitted) == 1 else f"{len(admitted)} times"
    return f"{ticket_id}: admitted {times}: {places}"


def as_text(ticket_id: str, rows: list[HistoryRow], admitted: list[Admission]) -> str:
    """The history as a table a supervisor reads, with the answer first."""
    lines = [answer(ticket_id, rows, admitted)]
    if rows:
        table = [list(COLUMNS)] + [[_cell(getattr(r, c)) for c in COLUMNS] for r in rows]
        widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
        lines += [
            "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in table
        ]
    return "\n".join(lines)


def as_csv(rows: list[HistoryRow]) -> str:
    """The rows as CSV (RFC 4180) with a header line (``COLUMNS``)."""
    out = io.StringIO()
    writer = csv.writer(out)  # RFC 4180: CRLF, so a CR or LF in a cell is quoted
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow([_csv_cell(getattr(r, c)) for c in COLUMNS])
    return out.getvalue()


def as_json(ticket_id: str, rows: list[HistoryRow], admitted: list[Admission]) -> dict[str, object]:
    """The whole report as one JSON object."""
    return {
        "ticket_id": ticket_id,
        "answer": answer(ticket_id, rows, admitted),
        "admitted": [asdict(a) for a in admitted],
        "rows": [r.as_dict() for r in rows],
    }


#: A CSV cell starting with one of these is a formula to a spreadsheet: it is quoted with a ``'``.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def _csv_cell(value: object) -> str:
    text = _cell(value)
    return "'" + text if text.startswith(_FORMULA) else text


def ticket_id_problem(text: str | None) -> str | None:
    """Why ``text`` cannot be a ticket id to report on (1 to 64 bytes of printable text); None if it can."""
    if text is None or not text:
        return "give the ticket's ID (report ticket ID)"
    if not text.isprintable() or len(text.encode("utf-8", "replace")) > MAX_TICKET_ID:
        return f"the ticket ID must be 1 to {MAX_TICKET_ID} bytes of printable text"
    return None
