"""What the central has answered for, kept in the ledger's file: per-log positions that only move
forward, rejections kept once, the central's pull cursor; and the unbroken reads the drain makes."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gate_daemon.store.ledger import Ledger
from gate_daemon.store.offline_reads import read_counters
from gate_daemon.store.upstream_marks import Rejection, UpstreamMarks
from tests.gate_fixtures import query
from tests.support import admit
from tests.test_ledger_replication import WALL, Origin


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    opened = await Ledger.open(tmp_path / "ledger.sqlite", "gate-a")
    try:
        yield opened
    finally:
        await opened.close()


def own(ledger: Ledger) -> tuple[str, str]:
    return (ledger.gate_id, ledger.epoch)


async def test_a_fresh_ledger_has_no_marks_and_everything_pending(ledger: Ledger) -> None:
    marks = await UpstreamMarks.load(ledger)
    assert dict(marks.acked) == {} and marks.after == 0 and marks.pending() == 0
    for n in range(3):
        await admit(ledger, f"T-{n}", wall=WALL)
    assert marks.pending() == 3


async def test_acknowledge_moves_positions_and_counts_in_one_go(ledger: Ledger) -> None:
    for n in range(3):
        await admit(ledger, f"T-{n}", wall=WALL)
    marks = await UpstreamMarks.load(ledger)
    await marks.acknowledge({own(ledger): 2}, [], ["upstream:applied", "upstream:applied"], WALL)
    assert marks.acked == {own(ledger): 2}
    assert marks.pending() == 1
    assert read_counters(ledger.path)["upstream:applied"] == 2
    assert query(ledger.path, "SELECT origin, epoch, seq, updated_at FROM upstream_acks") == [
        (*own(ledger), 2, WALL)
    ]


async def test_marks_survive_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    b = Origin("gate-b")
    ledger = await Ledger.open(path, "gate-a")
    try:
        for n in range(4):
            await admit(ledger, f"T-{n}", wall=WALL)
        await ledger.learn([b.make("T-9"), b.make("T-10")], now=WALL)
        marks = await UpstreamMarks.load(ledger)
        await marks.acknowledge({own(ledger): 3, b.log: 1}, [], [], WALL)
        await marks.reached(41)
        mine = own(ledger)
    finally:
        await ledger.close()
    ledger = await Ledger.open(path, "gate-a")
    try:
        again = await UpstreamMarks.load(ledger)
        assert again.acked == {mine: 3, b.log: 1}
        assert again.after == 41
        assert again.pending() == 2  # one of this gate's, one of gate-b's
    finally:
        await ledger.close()


async def test_positions_only_move_forward(ledger: Ledger) -> None:
    for n in range(5):
        await admit(ledger, f"T-{n}", wall=WALL)
    marks = await UpstreamMarks.load(ledger)
    await marks.acknowledge({own(ledger): 4}, [], [], WALL)
    await marks.acknowledge({own(ledger): 2}, [], [], WALL + 1)  # a late answer to an older batch
    await marks.acknowledge({own(ledger): 4}, [], [], WALL + 2)
    assert marks.acked[own(ledger)] == 4
    assert query(ledger.path, "SELECT seq, updated_at FROM upstream_acks") == [(4, WALL)]
    assert (await UpstreamMarks.load(ledger)).acked[own(ledger)] == 4


async def test_the_pull_cursor_only_moves_forward(ledger: Ledger) -> None:
    marks = await UpstreamMarks.load(ledger)
    await marks.reached(10)
    await marks.reached(3)
    await marks.reached(10)
    assert marks.after == 10
    assert query(ledger.path, "SELECT value FROM meta WHERE key = 'upstream_after'") == [("10",)]
    await marks.reached(11)
    assert (await UpstreamMarks.load(ledger)).after == 11


async def test_rejections_are_kept_once(ledger: Ledger) -> None:
    record = await admit(ledger, "T-1", wall=WALL)
    marks = await UpstreamMarks.load(ledger)
    rejection = Rejection(record.uuid, record.origin, record.epoch, record.seq, "bad_signature", "x" * 2000)
    await marks.acknowledge({own(ledger): 1}, [rejection], ["upstream:rejected"], WALL)
    # The same answer again (a batch resent after a lost answer): no second row, the first kept.
    again = Rejection(record.uuid, record.origin, record.epoch, record.seq, "seq_taken", "later")
    await marks.acknowledge({own(ledger): 1}, [again], ["upstream:rejected"], WALL + 5)
    rows = query(
        ledger.path, "SELECT uuid, seq, reason, length(detail), rejected_at FROM upstream_rejections"
    )
    assert rows == [(record.uuid, 1, "bad_signature", 500, WALL)]
    assert marks.pending() == 0


async def test_a_failed_acknowledge_moves_nothing(ledger: Ledger) -> None:
    for n in range(2):
        await admit(ledger, f"T-{n}", wall=WALL)
    marks = await UpstreamMarks.load(ledger)
    with sqlite3.connect(ledger.path) as conn:
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON counters WHEN NEW.name = 'upstream:applied'"
            " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    conn.close()
    with pytest.raises(sqlite3.Error, match="refused by the test"):
        await marks.acknowledge({own(ledger): 2}, [], ["upstream:applied"], WALL)
    # Nothing committed, so nothing claimed: the drain sends these again.
    assert marks.acked.get(own(ledger), 0) == 0 and marks.pending() == 2
    assert query(ledger.path, "SELECT COUNT(*) FROM upstream_acks") == [(0,)]


async def test_pending_counts_only_unbroken_runs(ledger: Ledger) -> None:
    b = Origin("gate-b")
    records = [b.make(f"T-{n}") for n in range(1, 6)]
    await ledger.learn([records[0], records[1], records[3], records[4]], now=WALL)  # 3 is missing
    marks = await UpstreamMarks.load(ledger)
    assert marks.pending() == 2
    await marks.acknowledge({b.log: 2}, [], [], WALL)
    assert marks.pending() == 0
    await ledger.learn([records[2]], now=WALL)
    assert marks.pending() == 3


async def test_records_after_unbroken_stops_at_a_gap(ledger: Ledger) -> None:
    b, c = Origin("gate-b"), Origin("gate-c")
    records_b = [b.make(f"T-{n}") for n in range(1, 6)]
    records_c = [c.make(f"T-{n}") for n in range(1, 3)]
    await ledger.learn([records_b[0], records_b[1], records_b[3], records_b[4], *records_c], now=WALL)
    found, more = await ledger.records_after({}, 100, unbroken=True)
    assert more is False
    assert sorted(found, key=lambda p: (p[0].origin, p[0].seq)) == [*records_b[:2], *records_c]
    # Without unbroken, what lies beyond the gap is served too.
    everything, _ = await ledger.records_after({}, 100)
    assert len(everything) == 6
    # From a position at the gap's edge: nothing more of gate-b until the gap fills.
    assert await ledger.records_after({b.log: 2, c.log: 2}, 100, unbroken=True) == ([], False)
    await ledger.learn([records_b[2]], now=WALL)
    found, _ = await ledger.records_after({b.log: 2, c.log: 2}, 100, unbroken=True)
    assert found == records_b[2:]


async def test_a_drain_continuing_from_its_marks_sends_each_record_once(ledger: Ledger) -> None:
    b = Origin("gate-b")
    mine = [await admit(ledger, f"T-{n}", wall=WALL) for n in range(3)]
    learned = [b.make(f"T-{n}") for n in range(1, 4)]
    await ledger.learn(learned, now=WALL)
    marks = await UpstreamMarks.load(ledger)
    sent = []
    for _ in range(10):
        page, _more = await ledger.records_after(marks.acked, 2, unbroken=True)
        if not page:
            break
        sent += [record.uuid for record, _sig in page]
        positions: dict[tuple[str, str], int] = {}
        for record, _sig in page:
            positions[(record.origin, record.epoch)] = max(
                positions.get((record.origin, record.epoch), 0), record.seq
            )
        await marks.acknowledge(positions, [], ["upstream:applied"] * len(page), WALL)
    assert sorted(sent) == sorted([r.uuid for r in mine] + [r.uuid for r, _ in learned])
    assert marks.pending() == 0
    assert read_counters(ledger.path)["upstream:applied"] == 6
