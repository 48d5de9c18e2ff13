"""``gatectl bench reports``: what dispute evidence and the incident report cost.

Three figures, each on files written for the bench (``--records`` scans; 50,000 by
default, an hour offline at a busy gate):

1. **Evidence batch** at a gate: the upload reads 500 rows of the evidence log after its
   cursor. The log has no index but its key, so this is a whole read of the log, done
   off the scan path on a read-only connection; and the idle check (nothing new: one
   ``meta`` row).
2. **Ticket report** at a gate: ``gatectl report ticket``'s read of the same ledger.
3. **Incident report** at the central: 20 gates, twelve hours of heartbeats every 15 s,
   ``--records`` evidence rows and check-ins; read, analysed and drawn as the page
   ``gate-central report incident`` writes for those twelve hours.

(The scans and rows are written into the files directly: what a scan's commit costs is
what ``bench gate`` measures.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import tempfile
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

from gate_daemon.bench.gate import fresh_database
from gate_daemon.bench.stats import percentile
from gate_daemon.central.incident_page import render
from gate_daemon.core.hlc import Stamp
from gate_daemon.core.incident import analyse
from gate_daemon.store.central.checkin_book import CentralStore
from gate_daemon.store.central.reports import read_incident
from gate_daemon.store.evidence_upload import EvidenceCursor
from gate_daemon.store.ledger import Ledger
from gate_daemon.store.ticket_history import read_ticket

RECORDS = 50_000
ROUNDS = 20
GATES = 20
HOURS = 12
BEAT_S = 15.0


def run(args: argparse.Namespace) -> int:
    """Run the suite and print the figures (or JSON)."""
    records = args.records or RECORDS
    rounds = args.rounds or ROUNDS
    with tempfile.TemporaryDirectory(prefix="bench-reports-") as scratch:
        work = Path(args.workdir or scratch)
        work.mkdir(parents=True, exist_ok=True)
        gate = asyncio.run(_gate(work, records, rounds))
        central = _central(work, records, rounds)
    if args.json:
        print(json.dumps({"records": records, "rounds": rounds, "gate": gate, "central": central}, indent=2))
    else:
        _print(records, rounds, gate, central)
    return 0


def _print(records: int, rounds: int, g: dict[str, Any], c: dict[str, Any]) -> None:
    """The figures as a table."""
    print(f"# gatectl bench reports --records {records} --rounds {rounds}")
    print(f"evidence batch of 500 after the cursor  p50 {g['batch_p50_ms']} ms  max {g['batch_max_ms']} ms")
    print(f"evidence idle check (nothing new)       p50 {g['idle_p50_ms']} ms  max {g['idle_max_ms']} ms")
    print(f"gatectl report ticket (ledger read)     p50 {g['ticket_p50_ms']} ms  max {g['ticket_max_ms']} ms")
    print(
        f"incident report, {c['gates']} gates x {c['hours']} h ({c['beats']} beats, {records} scans):"
        f"  read {c['read_ms']} ms  analyse {c['analyse_ms']} ms  draw {c['draw_ms']} ms"
        f"  page {c['page_kib']} KiB"
    )


def _ms(seconds: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``seconds``, in milliseconds."""
    return round(percentile([s * 1000 for s in seconds], q), 2)


async def _gate(work: Path, records: int, rounds: int) -> dict[str, Any]:
    """A ledger holding ``records`` scans: the evidence batch, the idle check, a ticket's report."""
    path = fresh_database(work / "evidence.sqlite")
    ledger = await Ledger.open(path, "bench-gate")
    await ledger.close()
    _write_scans(path, records)
    ledger = await Ledger.open(path, "bench-gate")
    try:
        cursor = EvidenceCursor(ledger)
        batch, idle = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            rows = await cursor.batch(500)
            batch.append(time.perf_counter() - t0)
            assert len(rows) == 500
        await cursor.advance(Stamp(10**12 + records, 0).packed)
        for _ in range(rounds):
            t0 = time.perf_counter()
            assert await cursor.batch(500) == []
            idle.append(time.perf_counter() - t0)
    finally:
        await ledger.close()
    ticket = []
    for n in range(rounds):
        t0 = time.perf_counter()
        read_ticket(path, f"B-{n * 97 % records:07d}")
        ticket.append(time.perf_counter() - t0)
    return {
        "batch_p50_ms": _ms(batch, 0.5),
        "batch_max_ms": _ms(batch, 1),
        "idle_p50_ms": _ms(idle, 0.5),
        "idle_max_ms": _ms(idle, 1),
        "ticket_p50_ms": _ms(ticket, 0.5),
        "ticket_max_ms": _ms(ticket, 1),
    }


def _write_scans(path: Path, records: int) -> None:
    """``records`` scans in the evidence log, stamped a millisecond apart, and the latest in ``meta``."""
    base = 10**12
    rows = [
        (str(uuidlib.uuid4()), Stamp(base + i, 0).packed, (base + i) / 1000, "bench-gate", "camera", None,
         "fp", f"B-{i:07d}", "entry", "allow", "ok", "admitted", "offline", 1, "{}")
        for i in range(records)
    ]  # fmt: skip
    db = sqlite3.connect(path)
    try:
        with db:
            db.executemany(
                "INSERT INTO scans (uuid, hlc, wall, gate, device, operator, fingerprint, ticket_id, kind,"
                " outcome, reason, resolution, mode, manifest_version, decision)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('latest_scan_hlc', ?)",
                (str(Stamp(base + records - 1, 0).packed),),
            )
    finally:
        db.close()


def _central(work: Path, records: int, rounds: int) -> dict[str, Any]:
    """A central database with a venue's twelve hours: the incident report read, analysed and drawn."""
    path = fresh_database(work / "central.sqlite")

    async def create() -> None:
        await (await CentralStore.open(path)).aclose()

    asyncio.run(create())
    start = time.time() - HOURS * 3600
    beats = _write_venue(path, start, records)
    reads, analyses, draws = [], [], []
    page = ""
    for _ in range(max(1, rounds // 4)):
        t0 = time.perf_counter()
        data = read_incident(path, start, start + HOURS * 3600)
        t1 = time.perf_counter()
        incident = analyse(data)
        t2 = time.perf_counter()
        page = render(incident, title="bench")
        t3 = time.perf_counter()
        reads.append(t1 - t0)
        analyses.append(t2 - t1)
        draws.append(t3 - t2)
    return {
        "gates": GATES,
        "hours": HOURS,
        "beats": beats,
        "read_ms": _ms(reads, 0.5),
        "analyse_ms": _ms(analyses, 0.5),
        "draw_ms": _ms(draws, 0.5),
        "page_kib": round(len(page.encode()) / 1024),
    }


def _write_venue(path: Path, start: float, records: int) -> int:
    """Beats, evidence and check-ins of ``GATES`` gates over ``HOURS`` hours, a 20-minute outage midway."""
    rng = random.Random(7)
    outage = (start + HOURS * 1800, start + HOURS * 1800 + 1200)
    beats = [
        (f"gate-{g:02d}", start + t * BEAT_S + g * 0.1, start + t * BEAT_S, "online", t, 0, 0)
        for g in range(GATES)
        for t in range(int(HOURS * 3600 / BEAT_S))
        if not outage[0] <= start + t * BEAT_S < outage[1]
    ]
    walls = sorted(start + rng.random() * HOURS * 3600 for _ in range(records))
    evidence, checkins = [], []
    for i, wall in enumerate(walls):
        gate = f"gate-{i % GATES:02d}"
        mode = "offline" if outage[0] <= wall < outage[1] else "online"
        uuid = str(uuidlib.uuid4())
        hlc = Stamp(int(wall * 1000), 0).packed
        ticket = f"B-{i:07d}"
        evidence.append((uuid, gate, hlc, wall, "camera", None, ticket, "entry", "allow", "ok", "admitted",
                         mode, 1, wall + 1))  # fmt: skip
        received = outage[1] + 5 if mode == "offline" else wall + 0.2
        checkins.append((uuid, ticket, "entry", 1, gate, "e", i + 1, hlc, wall, None, mode, 0, None, "s",
                         i + 1, received))  # fmt: skip
    db = sqlite3.connect(path)
    try:
        with db:
            db.executemany("INSERT INTO beats (gate, at, sent_at, mode, scans, offline, pending)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?)", beats)  # fmt: skip
            db.executemany(
                "INSERT INTO evidence (uuid, gate, hlc, wall, device, operator, ticket_id, kind, outcome,"
                " reason, resolution, mode, manifest_version, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                evidence,
            )
            db.executemany(
                "INSERT INTO checkins (uuid, ticket_id, kind, slot, origin, epoch, seq, hlc, wall, operator,"
                " mode, forced, voids, sig, cursor, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                checkins,
            )
            db.execute(
                "INSERT INTO gates (gate_id, last_seen, beats, sent_at, counters, status)"
                " SELECT gate, MAX(at), COUNT(*), MAX(sent_at), '{}', '{}' FROM beats GROUP BY gate"
            )
    finally:
        db.close()
    return len(beats)
