"""The central's database read for reports: a ticket's history, and an incident's data.

Read-only, with plain ``sqlite3`` (the server may run): ``gate-central report ticket`` and
``gate-central report incident`` (docs/REPORTS.md). Rows come out as the pure types of
``core.ticket_history`` and ``core.incident``; nothing here judges them.
"""

from __future__ import annotations

from pathlib import Path

from gate_daemon.core.incident import Beat, Collision, IncidentData, Receipt, ScanMark
from gate_daemon.core.overrides import Override, override_of
from gate_daemon.store.central.checkin_book import reading
from gate_daemon.store.ticket_history import TicketFacts, record_fact, scan_fact

#: Beats read before and after the period, so an offline period that crosses its edges is seen.
MARGIN_S = 3600.0


def read_ticket(path: Path, ticket_id: str) -> TicketFacts:
    """Every gate's scans of the ticket (uploaded evidence), its check-ins and its conflicts."""
    with reading(path) as db:
        scans = db.execute(
            "SELECT uuid, hlc, wall, gate, device, operator, kind, outcome, reason, resolution, mode"
            " FROM evidence WHERE ticket_id = ? ORDER BY hlc, uuid, gate",
            (ticket_id,),
        ).fetchall()
        records = db.execute(
            "SELECT uuid, hlc, wall, origin, kind, operator, mode, forced, voids"
            " FROM checkins WHERE ticket_id = ? ORDER BY hlc, uuid",
            (ticket_id,),
        ).fetchall()
        conflicts = db.execute(
            "SELECT loser, winner FROM conflicts WHERE ticket_id = ?", (ticket_id,)
        ).fetchall()
    return TicketFacts(
        [scan_fact(tuple(r)) for r in scans],
        [record_fact(tuple(r)) for r in records],
        {str(lo): str(w) for lo, w in conflicts},
    )


def read_incident(path: Path, start: float, end: float) -> IncidentData:
    """What the central holds of ``start`` to ``end`` (UTC seconds), and of an equal span before it.

    The span before is for throughput before a fault; beats a margin either side, for
    offline periods that cross the edges.
    """
    before = start - (end - start)
    with reading(path) as db:
        scans = db.execute(
            "SELECT wall, gate, outcome, reason, mode FROM evidence WHERE wall >= ? AND wall < ?"
            " ORDER BY wall",
            (before, end),
        ).fetchall()
        beats = db.execute(
            "SELECT gate, at, mode, scans, offline, pending FROM beats WHERE at >= ? AND at < ? ORDER BY at",
            (start - MARGIN_S, end + MARGIN_S),
        ).fetchall()
        receipts = db.execute(
            "SELECT c.origin, c.kind, c.forced, c.wall, c.received_at,"
            " EXISTS (SELECT 1 FROM checkins v WHERE v.voids = c.uuid AND v.origin = c.origin)"
            " FROM checkins c WHERE c.wall >= ? AND c.wall < ?",
            (start, end),
        ).fetchall()
        collisions = db.execute(
            "SELECT c.ticket_id, l.origin, l.wall, l.uuid, w.origin, w.wall, w.uuid FROM conflicts c"
            " JOIN checkins l ON l.uuid = c.loser JOIN checkins w ON w.uuid = c.winner"
            " WHERE l.wall >= ? AND l.wall < ? ORDER BY l.wall",
            (start, end),
        ).fetchall()
        heard = db.execute("SELECT gate_id FROM gates ORDER BY gate_id").fetchall()
    return IncidentData(
        start=start,
        end=end,
        scans=[ScanMark(float(w), str(g), str(o), str(r), str(m)) for w, g, o, r, m in scans],
        beats=[
            Beat(str(g), float(a), str(m), int(s), int(o), None if p is None else int(p))
            for g, a, m, s, o, p in beats
        ],
        receipts=[
            Receipt(str(g), str(k), bool(f), float(w), float(r), bool(v)) for g, k, f, w, r, v in receipts
        ],
        collisions=[
            Collision(str(t), str(lg), float(lw), str(lu), str(wg), float(ww), str(wu))
            for t, lg, lw, lu, wg, ww, wu in collisions
        ],
        gates=[str(g) for (g,) in heard],
    )


def read_overrides(path: Path) -> list[Override]:
    """The forced entries in the gates' uploaded evidence, oldest first (``core.overrides``)."""
    with reading(path) as db:
        rows = db.execute(
            "SELECT uuid, gate, wall, operator, ticket_id, json_extract(overrides, '$.scan'),"
            " json_extract(overrides, '$.outcome'), json_extract(overrides, '$.reason')"
            " FROM evidence WHERE resolution = 'overridden' ORDER BY wall, gate, uuid"
        ).fetchall()
    return [override_of(row) for row in rows]
