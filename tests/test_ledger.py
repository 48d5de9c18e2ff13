"""The ledger on a real SQLite file: schema, durability settings, ownership and the unique constraint."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gate_daemon.core.decision import Decision, LedgerFacts, ScanKind
from gate_daemon.core.hlc import Stamp
from gate_daemon.core.reasons import Reason
from gate_daemon.core.records import Redemption
from gate_daemon.core.tokens import payload_fingerprint
from gate_daemon.store.ledger import SCAN_ATTEMPTS, Ledger, LedgerError
from gate_daemon.store.manifest_state import ManifestState
from gate_daemon.store.scans import PolicyConflict, RecordedScan, ScanRecord, new_scan_id
from gate_daemon.store.schema import MIGRATIONS
from tests.gate_fixtures import gate_rig, query, scalar
from tests.support import EVENT_ID, SAT_START, World, admit, hand_scan

GATE = "north-1"
WALL = float(SAT_START)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ledger.sqlite"


@pytest.fixture(autouse=True)
def _state_dir(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()


@contextlib.contextmanager
def raw(db: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection in autocommit mode, closed afterwards."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


async def redeem(
    ledger: Ledger,
    ticket_id: str,
    kind: ScanKind = ScanKind.ENTRY,
    *,
    wall: float = WALL,
    scan_id: str | None = None,
) -> Redemption:
    """Commit one admitted scan through the ledger's unit of work, made by anna."""
    return await admit(ledger, ticket_id, kind, wall=wall, scan_id=scan_id, operator="anna")


#: A refusal as the evidence log keeps it.
CANCELED = Decision(Reason.CANCELED, "Order was canceled", ticket_id="T-0001")
#: The counters one admitted entry scan adds to.
ADMITTED = {
    "scans": 1,
    "offline_scans": 1,
    "outcome:allow": 1,
    "reason:ok": 1,
    "kind:entry": 1,
    "resolution:admitted": 1,
}


async def refuse(ledger: Ledger, *, wall: float = WALL, scan_id: str | None = None) -> ScanRecord:
    """Commit one scan of T-0001 refused as canceled."""
    scan = hand_scan(wall=wall, scan_id=scan_id, operator="anna")
    recorded = await ledger.record_scan(scan, "T-0001", lambda _facts: CANCELED)
    assert isinstance(recorded, ScanRecord) and recorded.redemption is None
    return recorded


# ------------------------------------------------------------------ opening


async def test_a_new_ledger_has_the_whole_schema(db: Path) -> None:
    ledger = await Ledger.open(db, GATE)
    await ledger.close()
    tables = {name for (name,) in query(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"meta", "redemptions", "scans", "cursors", "counters"} <= tables
    indexes = {name for (name,) in query(db, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "redemptions_policy" in indexes
    assert scalar(db, "PRAGMA user_version") == len(MIGRATIONS)
    meta = dict(query(db, "SELECT key, value FROM meta"))
    assert meta["gate_id"] == GATE
    assert meta["epoch"] == ledger.epoch


async def test_wal_and_synchronous_full(db: Path) -> None:
    ledger = await Ledger.open(db, GATE)
    try:
        # The journal mode is a property of the file: a second connection sees it.
        assert scalar(db, "PRAGMA journal_mode") == "wal"
        # synchronous is per connection: ask the ledger's own.
        rows = list(await ledger._db.execute_fetchall("PRAGMA synchronous"))
        assert rows[0][0] == 2  # FULL
        rows = list(await ledger._db.execute_fetchall("PRAGMA journal_mode"))
        assert rows[0][0] == "wal"
    finally:
        await ledger.close()


async def test_reopening_keeps_the_epoch_and_a_new_file_gets_a_new_one(db: Path) -> None:
    first = await Ledger.open(db, GATE)
    epoch = first.epoch
    await first.close()
    again = await Ledger.open(db, GATE)
    assert again.epoch == epoch
    await again.close()
    for path in db.parent.glob("ledger.sqlite*"):
        path.unlink()
    fresh = await Ledger.open(db, GATE)
    assert fresh.epoch != epoch
    await fresh.close()


async def test_another_gates_ledger_is_refused(db: Path) -> None:
    ledger = await Ledger.open(db, GATE)
    await ledger.close()
    with pytest.raises(LedgerError) as caught:
        await Ledger.open(db, "south-2")
    assert "'north-1'" in str(caught.value)
    assert "'south-2'" in str(caught.value)
    assert str(db) in str(caught.value)
    # Refusing changed nothing: the owner still opens it.
    ledger = await Ledger.open(db, GATE)
    assert ledger.gate_id == GATE
    await ledger.close()


async def test_a_newer_schema_is_refused_not_downgraded(db: Path) -> None:
    ledger = await Ledger.open(db, GATE)
    await ledger.close()
    with raw(db) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(LedgerError, match="newer than this gate-daemon understands"):
        await Ledger.open(db, GATE)
    assert scalar(db, "PRAGMA user_version") == len(MIGRATIONS) + 1


@pytest.mark.parametrize(
    "content",
    [
        b"this is not a database, it is a note a tech saved by mistake\n" * 100,
        b"SQLite format 3\x00" + b"\xff" * 4080,  # the right magic, then garbage
    ],
    ids=["text", "corrupt-header"],
)
async def test_a_file_that_is_not_a_database_is_a_ledger_error(db: Path, content: bytes) -> None:
    db.write_bytes(content)
    with pytest.raises(LedgerError, match=re.escape(f"ledger {db} is not usable")):
        await Ledger.open(db, GATE)
    assert db.read_bytes() == content  # left for a person to look at


async def test_a_path_that_cannot_be_opened_is_a_ledger_error(tmp_path: Path) -> None:
    path = tmp_path / "missing-folder" / "ledger.sqlite"
    before = set(threading.enumerate())
    with pytest.raises(LedgerError, match=re.escape(f"cannot open ledger {path}: unable to open")):
        await Ledger.open(path, GATE)
    # aiosqlite stops its worker thread after a failed connect and reports back to this
    # loop: let it finish while the loop still runs.
    for thread in set(threading.enumerate()) - before:
        await asyncio.to_thread(thread.join, 10)
        assert not thread.is_alive()


# ------------------------------------------------------------------ order and sequence


async def test_sequence_numbers_continue_after_reopen(db: Path) -> None:
    ledger = await Ledger.open(db, GATE)
    for n in range(3):
        await redeem(ledger, f"T-{n}")
    epoch = ledger.epoch
    await ledger.close()
    ledger = await Ledger.open(db, GATE)
    nxt = await redeem(ledger, "T-9")
    assert (nxt.epoch, nxt.origin) == (epoch, GATE)
    await ledger.close()
    assert query(db, "SELECT ticket_id, seq FROM redemptions ORDER BY seq") == [
        ("T-0", 1),
        ("T-1", 2),
        ("T-2", 3),
        ("T-9", 4),
    ]


async def test_sequence_numbers_come_from_the_file_not_from_memory(db: Path) -> None:
    # A second writer on the same file cannot make this gate reuse a number: the primary
    # key refuses it, the ledger takes up the file's numbering, and the scan is decided
    # again and takes the next one.
    ledger = await Ledger.open(db, GATE)
    try:
        await redeem(ledger, "T-1")
        with raw(db) as conn:
            _insert(conn, seq=2, ticket_id="T-OTHER", epoch=ledger.epoch)
        tries: list[LedgerFacts] = []

        def allow(facts: LedgerFacts) -> Decision:
            tries.append(facts)
            return Decision(Reason.OK, "Entry allowed", ticket_id="T-2")

        recorded = await ledger.record_scan(hand_scan(wall=WALL), "T-2", allow)
        assert isinstance(recorded, ScanRecord) and recorded.redemption is not None
        assert recorded.redemption.seq == 3
        assert len(tries) == 2
        assert query(db, "SELECT ticket_id, seq FROM redemptions ORDER BY seq") == [
            ("T-1", 1),
            ("T-OTHER", 2),
            ("T-2", 3),
        ]
    finally:
        await ledger.close()


async def test_the_clock_resumes_above_the_last_stamp_after_reopen(db: Path) -> None:
    ledger = await Ledger.open(db, GATE)
    entry = await redeem(ledger, "T-1", wall=WALL + 3600)  # recorded while the clock ran an hour fast
    # A denial stamped later still: the clock must resume above the evidence log too.
    denial = (await refuse(ledger, wall=WALL + 3600)).evidence.hlc
    assert denial > entry.hlc
    await ledger.close()

    ledger = await Ledger.open(db, GATE)
    try:
        assert ledger.clock.last == denial
        # The wall clock is now back to the right time, an hour "earlier".
        after = await redeem(ledger, "T-2", wall=WALL)
        assert after.hlc > denial
        assert Stamp.unpack(after.hlc).millis == Stamp.unpack(entry.hlc).millis
    finally:
        await ledger.close()


# ------------------------------------------------------------------ the constraint


def _insert(
    conn: sqlite3.Connection,
    *,
    seq: int,
    ticket_id: str = "T-0001",
    kind: str = "entry",
    slot: int | None = 1,
    origin: str = GATE,
    forced: int = 0,
    epoch: str = "e",
) -> None:
    conn.execute(
        "INSERT INTO redemptions (uuid, ticket_id, kind, slot, origin, epoch, seq, hlc, wall, operator,"
        " mode, forced) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 'offline', ?)",
        (new_scan_id(), ticket_id, kind, slot, origin, epoch, seq, seq, WALL, forced),
    )


async def test_the_database_refuses_a_second_admission_on_the_same_facts(db: Path) -> None:
    ledger = await Ledger.open(db, GATE)
    await ledger.close()
    with raw(db) as conn:
        _insert(conn, seq=1)
        with pytest.raises(sqlite3.IntegrityError) as caught:
            _insert(conn, seq=2)  # another uuid and sequence, the same (ticket, kind, slot, origin)
        assert "redemptions.ticket_id, redemptions.kind, redemptions.slot, redemptions.origin" in str(
            caught.value
        )
        # Forced entries carry no slot, so any number of them go in.
        _insert(conn, seq=3, slot=None, forced=1)
        _insert(conn, seq=4, slot=None, forced=1)
        # The same slot at another gate is that gate's own record (merged by replication).
        _insert(conn, seq=5, origin="south-2")
        # The first exit is a slot of its own kind.
        _insert(conn, seq=6, kind="exit")
        # The next entry slot is free.
        _insert(conn, seq=7, slot=2)
        with pytest.raises(sqlite3.IntegrityError):
            _insert(conn, seq=8, slot=2)
        rows = conn.execute("SELECT seq FROM redemptions ORDER BY seq").fetchall()
    assert rows == [(1,), (3,), (4,), (5,), (6,), (7,)]


async def test_the_schema_checks_kinds_slots_and_sequences(db: Path) -> None:
    ledger = await Ledger.open(db, GATE)
    await ledger.close()
    with raw(db) as conn:
        for bad in ({"kind": "wander"}, {"slot": 0}, {"seq": 0}):
            with pytest.raises(sqlite3.IntegrityError):
                _insert(conn, **{"seq": 1, **bad})  # type: ignore[arg-type]
        _insert(conn, seq=1)
        with pytest.raises(sqlite3.IntegrityError):  # (origin, epoch, seq) is unique too
            _insert(conn, seq=1, ticket_id="T-0002")


async def test_a_scan_on_stale_facts_is_decided_again_and_its_stale_try_writes_nothing(db: Path) -> None:
    ledger = await Ledger.open(db, GATE)
    try:
        # Another writer admits T-0001 as this gate behind the ledger's back: the ledger's
        # memory says T-0001 never entered, so the scan's first try sees stale facts.
        with raw(db) as conn:
            _insert(conn, seq=7, epoch=ledger.epoch)
        tries: list[LedgerFacts] = []

        def allow(facts: LedgerFacts) -> Decision:
            tries.append(facts)
            return Decision(Reason.OK, "Entry allowed", ticket_id="T-0001")

        recorded = await ledger.record_scan(hand_scan(wall=WALL), "T-0001", allow)
        # Its slot 1 was taken, so it was decided again, on the facts in the file.
        assert [(facts.entries, facts.entry_slots) for facts in tries] == [(0, 0), (1, 1)]
        assert isinstance(recorded, ScanRecord) and recorded.redemption is not None
        # Nothing of the stale try is there: one evidence row, one count, and no number
        # used (the scan's redemption follows the file's last one, with no gap).
        assert await ledger.counters() == ADMITTED
        assert query(db, "SELECT COUNT(*) FROM scans") == [(1,)]
        assert query(db, "SELECT ticket_id, slot, seq FROM redemptions ORDER BY seq") == [
            ("T-0001", 1, 7),
            ("T-0001", 2, 8),
        ]
        # On fresh facts the ticket's next slot is free.
        assert (await redeem(ledger, "T-0001")).slot == 3
    finally:
        await ledger.close()


async def test_a_scan_whose_ticket_keeps_changing_gives_up_and_writes_nothing(db: Path) -> None:
    ledger = await Ledger.open(db, GATE)
    try:
        with raw(db) as conn:

            def allow(facts: LedgerFacts) -> Decision:
                # Another writer takes the very slot this try is about to take.
                slot = facts.entry_slots + 1
                _insert(conn, seq=100 + slot, slot=slot, epoch=ledger.epoch)
                return Decision(Reason.OK, "Entry allowed", ticket_id="T-0001")

            with pytest.raises(PolicyConflict, match="kept changing"):
                await ledger.record_scan(hand_scan(wall=WALL), "T-0001", allow)
        assert query(db, "SELECT slot FROM redemptions ORDER BY slot") == [
            (slot,) for slot in range(1, SCAN_ATTEMPTS + 1)
        ]
        assert query(db, "SELECT COUNT(*) FROM scans") == [(0,)]
        assert await ledger.counters() == {}
    finally:
        await ledger.close()


async def test_a_second_record_with_the_same_scan_id_is_answered_with_the_first(db: Path) -> None:
    ledger = await Ledger.open(db, GATE)
    try:
        scan_id = new_scan_id()
        await redeem(ledger, "T-0001", scan_id=scan_id)
        allowed = Decision(Reason.OK, "Entry allowed", ticket_id="T-0002")
        again = await ledger.record_scan(hand_scan(wall=WALL, scan_id=scan_id), "T-0002", lambda _f: allowed)
        assert isinstance(again, RecordedScan)
        assert again.decision == Decision(Reason.OK, "Entry allowed", ticket_id="T-0001").as_dict()
        assert query(db, "SELECT ticket_id FROM redemptions") == [("T-0001",)]
        assert (await ledger.counters())["scans"] == 1
    finally:
        await ledger.close()


async def test_a_failed_transaction_rolls_back_everything_in_it(db: Path) -> None:
    ledger = await Ledger.open(db, GATE)
    try:
        with pytest.raises(RuntimeError, match="power"):
            async with ledger.transaction() as tx:
                await tx.count(["should_not_persist"])
                await tx.set_meta([("x", "1")])
                raise RuntimeError("power cut, as far as this transaction knows")
        assert await ledger.counters() == {}
        assert query(db, "SELECT value FROM meta WHERE key = 'x'") == []
        # The connection is not left inside the dead transaction.
        await ledger.bump(["after"])
        assert await ledger.counters() == {"after": 1}
    finally:
        await ledger.close()


async def test_a_transaction_cancelled_while_it_begins_leaves_no_transaction_open(db: Path) -> None:
    ledger = await Ledger.open(db, GATE)
    try:
        # Another writer holds the file, so BEGIN IMMEDIATE waits in the database thread.
        with raw(db) as other:
            other.execute("BEGIN IMMEDIATE")

            async def bump() -> None:
                async with ledger.transaction() as tx:
                    await tx.count(["never"])

            task = asyncio.create_task(bump())
            await asyncio.sleep(0.2)
            task.cancel()
            await asyncio.sleep(0.1)
            task.cancel()  # cancelled again while it waits for its BEGIN to be over
            await asyncio.sleep(0.1)
            assert not task.done()  # it may not let the lock go while the BEGIN is queued
            other.execute("COMMIT")
            with pytest.raises(asyncio.CancelledError):
                await task
        # Scans committed afterwards are on disk, not inside a forgotten transaction.
        assert not ledger._db.in_transaction
        await ledger.ping()
        await redeem(ledger, "T-0001")
        assert query(db, "SELECT ticket_id FROM redemptions") == [("T-0001",)]
    finally:
        await ledger.close()


async def test_a_redemption_written_behind_the_ledgers_back_is_found_on_the_retry(
    world: World, tmp_path: Path
) -> None:
    """The never-redeemed shortcut is not the arbiter: a colliding slot sends the scan to the file."""
    async with gate_rig(world, tmp_path / "gate") as rig:
        # Another writer on the same file (a second process started by mistake on this
        # state_dir) admits T-0001 as this gate.
        with raw(rig.db) as conn:
            conn.execute(
                "INSERT INTO redemptions (uuid, ticket_id, kind, slot, origin, epoch, seq, hlc, wall,"
                " operator, mode, forced) VALUES (?, 'T-0001', 'entry', 1, ?, ?, 1000, 1, ?, NULL,"
                " 'offline', 0)",
                (new_scan_id(), GATE, rig.ledger.epoch, WALL - 60),
            )
        result = await rig.gate.scan("REF-SAT-FLOOR-0001", device="test")
        assert result.recorded
        assert result.decision.reason == "already_used", result.decision
        assert rig.scalar("SELECT COUNT(*) FROM redemptions WHERE ticket_id = 'T-0001'") == 1


async def test_facts_count_entries_exits_and_the_last_entry(db: Path) -> None:
    ledger = await Ledger.open(db, GATE)
    try:
        await redeem(ledger, "T-0008", wall=WALL)
        await redeem(ledger, "T-0008", ScanKind.EXIT, wall=WALL + 60)
        await redeem(ledger, "T-0008", wall=WALL + 120)
        facts = await ledger.facts("T-0008")
        nothing = await ledger.facts("T-0001")
        assert facts == LedgerFacts(
            entries=2,
            exits=1,
            inside=True,
            last_entry_at=WALL + 120,
            last_entry_gate=GATE,
            entry_slots=2,
            exit_slots=1,
        )
        assert nothing == LedgerFacts()
        slots = query(db, "SELECT kind, slot FROM redemptions ORDER BY seq")
        assert slots == [("entry", 1), ("exit", 1), ("entry", 2)]
    finally:
        await ledger.close()


async def test_a_void_takes_an_entry_back_and_keeps_its_slot(db: Path) -> None:
    ledger = await Ledger.open(db, GATE)
    try:
        first = await redeem(ledger, "T-0009", wall=WALL)
        voided = await ledger.void(first.uuid, wall=WALL + 9, operator=None, counters=["passage:not_passed"])
        again = await ledger.void(first.uuid, wall=WALL + 10, operator=None, counters=["passage:not_passed"])
        unknown = await ledger.void(new_scan_id(), wall=WALL + 10, operator=None, counters=["x"])
        facts = await ledger.facts("T-0009")
        assert voided is not None and (voided.kind, voided.voids, voided.seq) == ("void", first.uuid, 2)
        assert (again, unknown) == (None, None)
        assert (facts.entries, facts.inside, facts.entry_slots, facts.last_entry_at) == (0, False, 1, None)
        second = await redeem(ledger, "T-0009", wall=WALL + 20)
        assert second.slot == 2
        rows = query(db, "SELECT kind, slot, seq, voids FROM redemptions ORDER BY seq")
        assert rows == [("entry", 1, 1, None), ("void", None, 2, first.uuid), ("entry", 2, 3, None)]
        assert query(db, "SELECT resolution FROM scans WHERE uuid = ?", (first.uuid,)) == [("not_passed",)]
        assert (await ledger.counters())["passage:not_passed"] == 1
    finally:
        await ledger.close()


async def test_a_version_1_file_is_migrated_with_its_redemptions(db: Path) -> None:
    import sqlite3

    from gate_daemon.store.schema import MIGRATIONS

    with sqlite3.connect(db) as old:
        old.executescript(MIGRATIONS[0])
        old.execute(
            "INSERT INTO redemptions (uuid, ticket_id, kind, slot, origin, epoch, seq, hlc, wall, mode)"
            " VALUES ('u1', 'T-0001', 'entry', 1, ?, 'e1', 1, 5, 1.5, 'offline')",
            (GATE,),
        )
        old.execute("PRAGMA user_version = 1")
    ledger = await Ledger.open(db, GATE)
    try:
        facts = await ledger.facts("T-0001")
        assert (facts.entries, facts.entry_slots) == (1, 1)
        assert query(db, "PRAGMA user_version") == [(len(MIGRATIONS),)]
        assert await ledger.void("u1", wall=2.0, operator="steward", counters=[]) is not None
    finally:
        await ledger.close()


# ------------------------------------------------------------------ what survives


async def test_counters_and_manifest_state_persist_across_reopen(db: Path) -> None:
    ledger = await Ledger.open(db, GATE)
    await ledger.bump(["scans", "reason:ok"])
    await ledger.bump(["scans"])
    await ledger.record_manifest(ManifestState(7, "ab" * 32, 1_790_000_000, 1_790_000_100.5))
    await ledger.close()
    ledger = await Ledger.open(db, GATE)
    try:
        assert await ledger.counters() == {"scans": 2, "reason:ok": 1, "manifest_activations": 1}
        assert await ledger.manifest_state() == ManifestState(7, "ab" * 32, 1_790_000_000, 1_790_000_100.5)
        await ledger.bump(["scans"])
        assert (await ledger.counters())["scans"] == 3
    finally:
        await ledger.close()


async def test_a_new_ledger_remembers_no_manifest(db: Path) -> None:
    ledger = await Ledger.open(db, GATE)
    try:
        assert await ledger.manifest_state() == ManifestState()
    finally:
        await ledger.close()


async def test_find_scan_returns_the_decision_recorded(db: Path) -> None:
    ledger = await Ledger.open(db, GATE)
    scan_id = new_scan_id()
    await refuse(ledger, scan_id=scan_id)
    try:
        found = await ledger.find_scan(scan_id)
        assert found is not None and found.fingerprint == "00" * 16
        assert found.decision == {
            "outcome": "deny",
            "reason": "canceled",
            "message": "Order was canceled",
            "ticket_id": "T-0001",
        }
        assert await ledger.find_scan(new_scan_id()) is None
    finally:
        await ledger.close()
    ledger = await Ledger.open(db, GATE)
    try:
        found = await ledger.find_scan(scan_id)
        assert found is not None
        assert found.decision["reason"] == "canceled"
    finally:
        await ledger.close()


async def test_ping_goes_through_the_database(db: Path) -> None:
    ledger = await Ledger.open(db, GATE)
    await ledger.ping()
    await ledger.close()
    with pytest.raises(ValueError):  # aiosqlite: no active connection
        await ledger.ping()


async def test_the_evidence_log_never_holds_a_payload(world: World, tmp_path: Path) -> None:
    payloads = [
        "REF-SAT-FLOOR-0001",  # reference code
        "O-100-A2",  # legacy order-seat
        world.sign("T-4000", session="sat", zone="floor"),  # signed
        "NOBODY-KNOWS-THIS-CODE-42",  # unknown
        "GD1:NOT*BASE32",  # garbage in the signed family
    ]
    async with gate_rig(world, tmp_path / "gate") as rig:
        for payload in payloads:
            await rig.gate.scan(payload, device="test")
        await rig.gate.scan(payloads[0], device="test")  # already used, recorded too
        db_path = rig.db
        files = [db_path, db_path.with_name(db_path.name + "-wal")]
        while_open = {path.name: path.read_bytes() for path in files if path.exists()}
        assert any(while_open.values())
        rows = rig.rows("SELECT fingerprint, reason FROM scans ORDER BY hlc")
    after_close = {path.name: path.read_bytes() for path in files if path.exists()}
    assert [reason for _, reason in rows] == [
        "ok",
        "wrong_zone",
        "ok",
        "unknown_ticket",
        "invalid_payload",
        "already_used",
    ]
    assert [fp for fp, _ in rows[:5]] == [payload_fingerprint(EVENT_ID, p) for p in payloads]
    for payload in payloads:
        needle = payload.encode()
        for name, data in [*while_open.items(), *after_close.items()]:
            assert needle not in data, f"{payload!r} found in {name}"
