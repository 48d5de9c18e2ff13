"""The ledger's side of replication on real SQLite files: learning records from peers, per-log
cursors, serving records after what a caller holds, collisions, conflicts and the hybrid clock."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import sqlite3
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

import pytest

from gate_daemon.core.conflicts import REENTRY
from gate_daemon.core.decision import LedgerFacts, ScanKind
from gate_daemon.core.hlc import MAX_AHEAD_MS, Stamp
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.records import Redemption
from gate_daemon.store.conflicts import EntriesAllowed, single_entry
from gate_daemon.store.ledger import Ledger
from gate_daemon.store.offline_reads import read_conflicts
from gate_daemon.store.schema import MIGRATIONS
from tests import support

WALL = 1_795_000_000.0
KEYS = {gate: SecretKey.generate() for gate in ("gate-a", "gate-b", "gate-c", "gate-d")}


class Origin:
    """Another gate's log: makes its records the way that gate would, signed with its key."""

    def __init__(self, gate: str, epoch: str | None = None) -> None:
        self.gate = gate
        self.epoch = epoch or str(uuidlib.uuid4())
        self.key = KEYS[gate]
        self.seq = 0
        self.slots: dict[tuple[str, str], int] = {}

    def make(
        self,
        ticket: str,
        kind: str = "entry",
        *,
        at: float = WALL,
        hlc: int | None = None,
        voids: str | None = None,
        **changes: Any,
    ) -> tuple[Redemption, str]:
        self.seq += 1
        slot = None
        if kind != "void":
            slot = self.slots.get((ticket, kind), 0) + 1
            self.slots[(ticket, kind)] = slot
        values: dict[str, Any] = {
            "uuid": str(uuidlib.uuid4()),
            "ticket_id": ticket,
            "kind": kind,
            "slot": slot,
            "origin": self.gate,
            "epoch": self.epoch,
            "seq": self.seq,
            "hlc": Stamp(int(at * 1000), 0).packed if hlc is None else hlc,
            "wall": at,
            "operator": None,
            "mode": "offline",
            "voids": voids,
        }
        values.update(changes)
        record = Redemption(**values)
        return record, record.sign(self.key)

    @property
    def log(self) -> tuple[str, str]:
        return (self.gate, self.epoch)


async def admit(
    ledger: Ledger, ticket: str, kind: ScanKind = ScanKind.ENTRY, *, wall: float = WALL
) -> Redemption:
    """Commit one admitted scan at this gate, the way the gate does."""
    return await support.admit(ledger, ticket, kind, wall=wall)


async def facts_of(ledger: Ledger, ticket: str) -> LedgerFacts:
    return await ledger.facts(ticket)


def rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql, params).fetchall()


def pairs(conflicts: list[Any]) -> list[tuple[str, str, str]]:
    return sorted((c.ticket_id, c.winner.uuid, c.loser.uuid) for c in conflicts)


@pytest.fixture
async def ledger(tmp_path: Path) -> Any:
    opened = await Ledger.open(tmp_path / "a.sqlite", "gate-a")
    try:
        yield opened
    finally:
        await opened.close()


@contextlib.asynccontextmanager
async def opened(path: Path, gate: str, entries_allowed: EntriesAllowed = single_entry) -> Any:
    ledger = await Ledger.open(path, gate, entries_allowed=entries_allowed)
    try:
        yield ledger
    finally:
        await ledger.close()


# ------------------------------------------------------------------ learning


async def test_records_are_stored_once_by_uuid(ledger: Ledger) -> None:
    b = Origin("gate-b")
    batch = [b.make("T-1"), b.make("T-2")]
    first = await ledger.learn(batch, now=WALL)
    assert [r.uuid for r in first.applied] == [r.uuid for r, _ in batch]
    assert (first.duplicates, first.refused, first.conflicts) == (0, (), 0)
    again = await ledger.learn(batch, now=WALL)
    assert (again.applied, again.duplicates) == ((), 2)
    twice = await ledger.learn([batch[0], batch[0]], now=WALL)  # the same record twice in one batch
    assert (twice.applied, twice.duplicates) == ((), 2)
    stored = rows(ledger.path, "SELECT uuid, origin, seq, sig FROM redemptions ORDER BY seq")
    assert stored == [(r.uuid, "gate-b", r.seq, sig) for r, sig in batch]
    assert (await ledger.counters())["peer:applied"] == 2


async def test_this_gates_own_records_are_duplicates(ledger: Ledger) -> None:
    own = await admit(ledger, "T-1")
    learned = await ledger.learn([(own, own.sign(KEYS["gate-a"]))], now=WALL)  # sent back by a peer
    assert (learned.applied, learned.duplicates) == ((), 1)
    assert rows(ledger.path, "SELECT uuid, sig FROM redemptions") == [(own.uuid, None)]
    assert ledger.known()[(ledger.gate_id, ledger.epoch)] == 1


async def test_own_records_beyond_this_ledger_are_learned_back_and_numbering_moves_past(
    ledger: Ledger,
) -> None:
    # The file was put back from an older copy: peers hold what this gate wrote after it.
    own = await admit(ledger, "T-1")
    later = dataclasses.replace(own, uuid=str(uuidlib.uuid4()), seq=own.seq + 1, ticket_id="T-2")
    learned = await ledger.learn([(later, later.sign(KEYS["gate-a"]))], now=WALL)
    assert [r.uuid for r in learned.applied] == [later.uuid]
    assert (await facts_of(ledger, "T-2")).entries == 1  # it admitted T-2: refused here now
    assert (await admit(ledger, "T-3")).seq == own.seq + 2  # never a number its peers hold


async def test_a_gates_own_records_from_before_a_reset_are_learned(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    async with opened(path, "gate-a") as before:
        entry = await admit(before, "T-1")
        old_epoch = before.epoch
        served, _ = await before.records_after({}, 10)
    assert served == [(entry, None)]
    for leftover in tmp_path.glob("a.sqlite*"):
        leftover.unlink()  # the SD card was replaced: a new database, a new epoch
    async with opened(path, "gate-a") as after:
        assert after.epoch != old_epoch
        assert await facts_of(after, "T-1") == LedgerFacts()
        learned = await after.learn([(entry, entry.sign(KEYS["gate-a"]))], now=WALL)  # a peer sends it back
        assert [r.uuid for r in learned.applied] == [entry.uuid]
        facts = await facts_of(after, "T-1")
        assert (facts.entries, facts.last_entry_gate) == (1, "gate-a")
        assert after.known()[("gate-a", old_epoch)] == 1
        assert after.known()[("gate-a", after.epoch)] == 0
        # The new epoch numbers its own log from 1 and the ticket's next slot after the old one.
        again = await admit(after, "T-1", ScanKind.EXIT)
        assert (again.seq, again.epoch) == (1, after.epoch)


async def test_a_learned_entry_is_what_the_next_scan_sees(ledger: Ledger) -> None:
    b = Origin("gate-b")
    # Never scanned here: the first this gate hears of the ticket is from gate-b.
    assert await facts_of(ledger, "T-NEW") == LedgerFacts()
    await ledger.learn([b.make("T-NEW", at=WALL + 5)], now=WALL + 6)
    facts = await facts_of(ledger, "T-NEW")
    assert (facts.entries, facts.inside, facts.last_entry_gate, facts.last_entry_at) == (
        1,
        True,
        "gate-b",
        WALL + 5,
    )
    # And an admission here takes the ticket's next slot after it.
    record = await admit(ledger, "T-NEW")
    assert record.slot == 2


async def test_a_learned_entry_survives_a_restart_in_the_facts(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    async with opened(path, "gate-a") as ledger:
        await ledger.learn([Origin("gate-b").make("T-1")], now=WALL)
    async with opened(path, "gate-a") as ledger:
        assert (await facts_of(ledger, "T-1")).last_entry_gate == "gate-b"


async def test_learned_records_are_not_this_gates_to_announce(ledger: Ledger) -> None:
    announced: list[Redemption] = []
    ledger.subscribe(announced.append)
    ledger.subscribe(lambda _record: 1 / 0)  # a failing listener does not undo anything
    own = await admit(ledger, "T-1")
    await ledger.learn([Origin("gate-b").make("T-2")], now=WALL)
    void = await ledger.void(own.uuid, wall=WALL + 1, operator="steward", counters=[])
    assert void is not None
    assert announced == [own, void]
    assert (void.kind, void.voids, void.seq, void.slot) == ("void", own.uuid, 2, None)


# ------------------------------------------------------------------ cursors


async def test_a_push_ahead_of_a_gap_is_held_and_the_run_waits(ledger: Ledger) -> None:
    b = Origin("gate-b")
    records = [b.make(f"T-{n}") for n in range(1, 6)]
    await ledger.learn(records[:2], now=WALL)
    assert (ledger.known()[b.log], ledger.held()[b.log]) == (2, 2)
    await ledger.learn(records[4:], now=WALL)
    assert (ledger.known()[b.log], ledger.held()[b.log]) == (2, 5)
    await ledger.learn([records[3]], now=WALL)
    assert (ledger.known()[b.log], ledger.held()[b.log]) == (2, 5)
    await ledger.learn([records[2]], now=WALL)  # the gap filled: the run joins what was held
    assert (ledger.known()[b.log], ledger.held()[b.log]) == (5, 5)


async def test_cursors_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    b, c = Origin("gate-b"), Origin("gate-c")
    records_b = [b.make(f"T-{n}") for n in range(1, 6)]
    async with opened(path, "gate-a") as ledger:
        await admit(ledger, "T-9")
        await ledger.learn([*records_b[:2], records_b[4], c.make("T-1")], now=WALL)
        known, held = ledger.known(), ledger.held()
        own = (ledger.gate_id, ledger.epoch)
    assert known == {own: 1, b.log: 2, c.log: 1}
    assert held == {own: 1, b.log: 5, c.log: 1}
    assert sorted(rows(path, "SELECT origin, seq, held FROM cursors")) == [("gate-b", 2, 5), ("gate-c", 1, 1)]
    async with opened(path, "gate-a") as ledger:
        assert (ledger.known(), ledger.held()) == (known, held)
        await ledger.learn(records_b[2:4], now=WALL)
        assert ledger.known()[b.log] == 5
    async with opened(path, "gate-a") as ledger:
        assert ledger.known()[b.log] == 5


async def test_a_failed_transaction_moves_no_cursor(ledger: Ledger) -> None:
    b = Origin("gate-b")
    records = [b.make("T-1"), b.make("T-2")]
    # The disk refuses the write (a real SQLite failure inside learn's transaction).
    with contextlib.closing(sqlite3.connect(ledger.path)) as conn:
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON counters WHEN NEW.name = 'peer:applied'"
            " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
        conn.commit()
    with pytest.raises(sqlite3.Error, match="refused by the test"):
        await ledger.learn(records, now=WALL)
    assert rows(ledger.path, "SELECT COUNT(*) FROM redemptions") == [(0,)]
    # Nothing was stored, so nothing may be claimed: a pull must ask for these again.
    assert ledger.known().get(b.log, 0) == 0 and ledger.held().get(b.log, 0) == 0
    with contextlib.closing(sqlite3.connect(ledger.path)) as conn:
        conn.execute("DROP TRIGGER refuse")
        conn.commit()
    learned = await ledger.learn(records, now=WALL)
    assert len(learned.applied) == 2 and ledger.known()[b.log] == 2


# ------------------------------------------------------------------ serving


async def test_records_after_serves_each_log_in_order_with_signatures(ledger: Ledger) -> None:
    b, c = Origin("gate-b"), Origin("gate-c")
    own = [await admit(ledger, f"T-{n}") for n in range(1, 3)]
    learned_b = [b.make(f"T-{n}") for n in range(1, 4)]
    learned_c = [c.make(f"T-{n}") for n in range(1, 3)]
    await ledger.learn([learned_b[2], learned_c[1], learned_b[0], learned_c[0], learned_b[1]], now=WALL)
    found, more = await ledger.records_after({}, 100)
    assert more is False
    by_log: dict[tuple[str, str], list[tuple[Redemption, str | None]]] = {}
    for record, sig in found:
        by_log.setdefault((record.origin, record.epoch), []).append((record, sig))
    assert by_log[(ledger.gate_id, ledger.epoch)] == [(r, None) for r in own]  # signed as they leave
    assert by_log[b.log] == learned_b  # the origin's signature kept
    assert by_log[c.log] == learned_c
    # Each log is served as one run, in sequence order, whatever order it was learned in.
    runs = [log for log, _ in itertools.groupby((r.origin, r.epoch) for r, _ in found)]
    assert sorted(runs) == sorted(by_log)
    for record, sig in learned_b:
        assert record.signed_by(KEYS["gate-b"].public, sig)


async def test_records_after_skips_what_the_caller_holds(ledger: Ledger) -> None:
    b, c = Origin("gate-b"), Origin("gate-c")
    records_b = [b.make(f"T-{n}") for n in range(1, 5)]
    records_c = [c.make("T-1")]
    await ledger.learn([*records_b, *records_c], now=WALL)
    found, more = await ledger.records_after({b.log: 2, c.log: 1}, 100)
    assert (found, more) == (records_b[2:], False)
    # A caller ahead of this gate, or at the same place, gets nothing.
    assert await ledger.records_after({b.log: 10, c.log: 1}, 100) == ([], False)
    # A log the caller does not list is served from its start (its own epoch is just another log).
    found, _ = await ledger.records_after({b.log: 4, ("gate-c", "another-epoch"): 5}, 100)
    assert found == records_c


async def test_records_after_honours_the_limit_and_says_more(ledger: Ledger) -> None:
    b, c = Origin("gate-b"), Origin("gate-c")
    records = [b.make(f"T-{n}") for n in range(1, 6)] + [c.make(f"T-{n}") for n in range(1, 4)]
    await ledger.learn(records, now=WALL)
    found, more = await ledger.records_after({}, 3)
    assert len(found) == 3 and more is True
    assert await ledger.records_after({}, 8) == (await ledger.records_after({}, 100))
    assert (await ledger.records_after({}, 8))[1] is False  # exactly all: nothing more
    assert (await ledger.records_after({}, 5))[1] is True  # one log exactly, another waiting
    # A caller that pulls page by page, continuing from what it got, gets everything once.
    known: dict[tuple[str, str], int] = {}
    seen: list[tuple[Redemption, str | None]] = []
    for _ in range(10):
        page, more = await ledger.records_after(known, 2)
        seen += page
        for record, _sig in page:
            known[(record.origin, record.epoch)] = record.seq
        if not more:
            break
    assert sorted(seen, key=lambda p: p[0].uuid) == sorted(records, key=lambda p: p[0].uuid)


async def test_records_after_serves_past_a_gap(ledger: Ledger) -> None:
    b = Origin("gate-b")
    records = [b.make(f"T-{n}") for n in range(1, 5)]
    await ledger.learn([records[0], records[3]], now=WALL)
    found, _ = await ledger.records_after({}, 100)
    assert found == [records[0], records[3]]


# ------------------------------------------------------------------ collisions


async def test_a_second_record_in_the_same_place_of_a_log_is_refused(ledger: Ledger) -> None:
    b = Origin("gate-b")
    first = b.make("T-1")
    await ledger.learn([first], now=WALL)
    b.seq = 0  # gate-b numbers another record 1 again (a bug, or a forged copy of its key)
    other = b.make("T-2")
    learned = await ledger.learn([other], now=WALL)
    assert (learned.applied, learned.refused) == ((), ((other[0].uuid, "seq_taken"),))
    assert rows(ledger.path, "SELECT uuid, ticket_id FROM redemptions") == [(first[0].uuid, "T-1")]
    assert (await ledger.counters())["peer:refused"] == 1


async def test_a_second_admission_on_the_same_slot_is_refused(ledger: Ledger) -> None:
    b = Origin("gate-b")
    first = b.make("T-1")
    await ledger.learn([first], now=WALL)
    b.slots.clear()  # the same ticket's first slot taken again in gate-b's log
    again = b.make("T-1", at=WALL + 1)
    learned = await ledger.learn([again], now=WALL)
    assert learned.refused == ((again[0].uuid, "slot_taken"),)
    assert rows(ledger.path, "SELECT uuid FROM redemptions") == [(first[0].uuid,)]
    # Kept as evidence, and the origin's log moves past it (or every pull would stop there).
    assert rows(ledger.path, "SELECT uuid, reason FROM refused_records") == [(again[0].uuid, "slot_taken")]
    assert ledger.known()[b.log] == 2
    # Sent again, it is a duplicate: refused once, counted once.
    assert (await ledger.learn([again], now=WALL)).duplicates == 1
    assert (await ledger.counters())["peer:refused"] == 1


async def test_a_refused_record_ahead_of_a_gap_does_not_stop_the_log(ledger: Ledger) -> None:
    b = Origin("gate-b")
    first, second = b.make("T-1"), b.make("T-2")
    b.slots.clear()
    clash = b.make("T-1", at=WALL + 1)  # seq 3 collides with seq 1's slot
    fourth = b.make("T-3")
    await ledger.learn([first, clash, fourth], now=WALL)  # seq 2 missing: a gap
    assert ledger.known()[b.log] == 1 and ledger.held()[b.log] == 4
    await ledger.learn([second], now=WALL)  # the gap filled: the run passes the refused seq 3
    assert ledger.known()[b.log] == 4


async def test_a_second_void_of_one_record_is_refused(ledger: Ledger) -> None:
    b = Origin("gate-b")
    entry = b.make("T-1")
    void = b.make("T-1", "void", voids=entry[0].uuid, at=WALL + 1)
    again = b.make("T-1", "void", voids=entry[0].uuid, at=WALL + 2)
    learned = await ledger.learn([entry, void, again], now=WALL)
    assert [r.uuid for r in learned.applied] == [entry[0].uuid, void[0].uuid]
    assert learned.refused == ((again[0].uuid, "already_voided"),)
    assert rows(ledger.path, "SELECT uuid FROM redemptions WHERE kind = 'void'") == [(void[0].uuid,)]


async def test_a_colliding_record_of_another_origin_is_fine(ledger: Ledger) -> None:
    # Slots are per origin (and epoch): two gates both admitting slot 1 is a conflict, not a collision.
    learned = await ledger.learn(
        [Origin("gate-b").make("T-1"), Origin("gate-c").make("T-1", at=WALL + 1)], now=WALL
    )
    assert len(learned.applied) == 2 and learned.refused == ()
    assert learned.conflicts == 1


# ------------------------------------------------------------------ voids from elsewhere


async def test_a_void_by_another_gate_does_not_free_a_ticket(ledger: Ledger) -> None:
    b, c = Origin("gate-b"), Origin("gate-c")
    entry = b.make("T-1")
    await ledger.learn([entry], now=WALL)
    # gate-c takes back gate-b's admission: only gate-b may say its turnstile did not turn.
    await ledger.learn([c.make("T-1", "void", voids=entry[0].uuid, at=WALL + 1)], now=WALL)
    facts = await facts_of(ledger, "T-1")
    assert (facts.entries, facts.inside, facts.last_entry_gate) == (1, True, "gate-b")
    assert pairs(await ledger.conflicts()) == []


async def test_a_foreign_void_arriving_first_does_not_block_the_origins_own(ledger: Ledger) -> None:
    b, c = Origin("gate-b"), Origin("gate-c")
    entry = b.make("T-1")
    foreign = c.make("T-1", "void", voids=entry[0].uuid, at=WALL + 1)
    own = b.make("T-1", "void", voids=entry[0].uuid, at=WALL + 2)
    learned = await ledger.learn([foreign, entry, own], now=WALL)
    assert {r.uuid for r in learned.applied} == {foreign[0].uuid, entry[0].uuid, own[0].uuid}
    facts = await facts_of(ledger, "T-1")
    assert (facts.entries, facts.inside) == (0, False)  # gate-b's own void counts
    assert ledger.known()[b.log] == 2


async def test_a_void_by_the_origin_frees_the_ticket(ledger: Ledger) -> None:
    b = Origin("gate-b")
    entry = b.make("T-1")
    await ledger.learn([entry, b.make("T-1", "void", voids=entry[0].uuid, at=WALL + 1)], now=WALL)
    facts = await facts_of(ledger, "T-1")
    assert (facts.entries, facts.entry_slots, facts.inside) == (0, 1, False)
    assert (await admit(ledger, "T-1")).slot == 2


# ------------------------------------------------------------------ conflicts


async def test_conflicts_are_the_same_whatever_order_the_records_arrive(tmp_path: Path) -> None:
    async with opened(tmp_path / "a.sqlite", "gate-a") as a, opened(tmp_path / "b.sqlite", "gate-b") as b:
        # Cut off from each other, both admit T-1 (gate-b a second later) and T-2 (gate-a later).
        a1 = await admit(a, "T-1", wall=WALL)
        b1 = await admit(b, "T-1", wall=WALL + 1)
        b2 = await admit(b, "T-2", wall=WALL + 2)
        a2 = await admit(a, "T-2", wall=WALL + 3)
        from_a = [(r, r.sign(KEYS["gate-a"])) for r in (a1, a2)]
        from_b = [(r, r.sign(KEYS["gate-b"])) for r in (b1, b2)]
        assert (await a.learn(from_b, now=WALL + 10)).conflicts == 2
        assert (await b.learn(from_a, now=WALL + 10)).conflicts == 2
        expected = [("T-1", a1.uuid, b1.uuid), ("T-2", b2.uuid, a2.uuid)]
        assert pairs(await a.conflicts()) == pairs(await b.conflicts()) == expected
        # Third parties, each learning them in another order and batching.
        orders = [
            [from_a, from_b],
            [from_b, from_a],
            [[from_b[1]], [from_a[0]], [from_a[1]], [from_b[0]]],
            [[*from_b, *from_a]],
        ]
        for number, order in enumerate(orders):
            async with opened(tmp_path / f"c{number}.sqlite", "gate-c") as c:
                for batch in order:
                    await c.learn(batch, now=WALL + 20)
                assert pairs(await c.conflicts()) == expected, order
                assert (await c.counters())["conflicts"] == 2
                assert await c.conflict_count() == 2


async def test_a_void_of_the_entry_that_stood_moves_the_conflict(ledger: Ledger) -> None:
    b, c = Origin("gate-b"), Origin("gate-c")
    first = await admit(ledger, "T-1", wall=WALL)
    second, third = b.make("T-1", at=WALL + 1), c.make("T-1", at=WALL + 2)
    learned = await ledger.learn([third, second], now=WALL + 5)
    assert learned.conflicts == 2
    assert pairs(await ledger.conflicts()) == sorted(
        [("T-1", first.uuid, second[0].uuid), ("T-1", first.uuid, third[0].uuid)]
    )
    # This gate's turnstile never turned for the first: the second now stands, the third still conflicts.
    assert await ledger.void(first.uuid, wall=WALL + 6, operator=None, counters=[]) is not None
    assert pairs(await ledger.conflicts()) == [("T-1", second[0].uuid, third[0].uuid)]
    # gate-b's void of the second too: no double entry left.
    await ledger.learn([b.make("T-1", "void", voids=second[0].uuid, at=WALL + 7)], now=WALL + 8)
    assert await ledger.conflicts() == []
    assert (await ledger.counters())["conflicts"] == 2  # each found once; moves are not new conflicts


async def test_conflicts_follow_the_tickets_entry_policy(tmp_path: Path) -> None:
    policies = {"T-RE": REENTRY, "T-3": 3}
    async with opened(tmp_path / "a.sqlite", "gate-a", lambda ticket: policies.get(ticket, 1)) as ledger:
        b = Origin("gate-b")
        batch = [
            b.make("T-RE", at=WALL),
            b.make("T-RE", "exit", at=WALL + 1),
            b.make("T-RE", at=WALL + 2),  # back in after an exit: fine
            *(b.make("T-3", at=WALL + n) for n in range(3)),  # three of three: fine
            b.make("T-1", at=WALL),
        ]
        assert (await ledger.learn(batch, now=WALL + 10)).conflicts == 0
        late = Origin("gate-c").make("T-RE", at=WALL + 3)  # in again while inside
        fourth = Origin("gate-d").make("T-3", at=WALL + 4)
        assert (await ledger.learn([late, fourth], now=WALL + 10)).conflicts == 2
        assert pairs(await ledger.conflicts()) == sorted(
            [("T-RE", batch[2][0].uuid, late[0].uuid), ("T-3", batch[5][0].uuid, fourth[0].uuid)]
        )


async def test_a_new_manifests_entry_policy_judges_the_tickets_again(tmp_path: Path) -> None:
    policies = {"T-1": 1}
    async with opened(tmp_path / "a.sqlite", "gate-a", lambda ticket: policies.get(ticket, 1)) as ledger:
        first, second = Origin("gate-b").make("T-1", at=WALL), Origin("gate-c").make("T-1", at=WALL + 1)
        assert (await ledger.learn([first, second], now=WALL + 2)).conflicts == 1
        policies["T-1"] = 2  # the next manifest sells T-1 as a two-entry ticket
        assert await ledger.recheck_conflicts(WALL + 3) == 0
        assert await ledger.conflicts() == []
        policies["T-1"] = 1  # and back
        assert await ledger.recheck_conflicts(WALL + 4) == 1
        assert pairs(await ledger.conflicts()) == [("T-1", first[0].uuid, second[0].uuid)]
        assert (await ledger.counters())["conflicts"] == 2  # found twice, counted twice


async def test_forced_entries_are_no_double_entry(ledger: Ledger) -> None:
    b = Origin("gate-b")
    await admit(ledger, "T-1")
    forced = b.make("T-1", forced=True, slot=None, at=WALL + 1)
    learned = await ledger.learn([forced], now=WALL + 2)
    assert len(learned.applied) == 1 and learned.conflicts == 0


async def test_read_conflicts_reads_a_closed_ledger(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    async with opened(path, "gate-a") as ledger:
        mine = await admit(ledger, "T-1", wall=WALL + 1)
        theirs = Origin("gate-b").make("T-1", at=WALL, operator="anna")
        await ledger.learn([theirs], now=WALL + 9)
        live = await ledger.conflicts()
    assert not Path(f"{path}-wal").exists()
    found = read_conflicts(path)
    assert [c.as_dict() for c in found] == [c.as_dict() for c in live]
    assert len(found) == 1
    shown = found[0].as_dict()
    assert shown["stands"]["uuid"] == theirs[0].uuid and shown["stands"]["gate"] == "gate-b"
    assert shown["stands"]["operator"] == "anna"
    assert shown["conflict"]["uuid"] == mine.uuid and shown["conflict"]["gate"] == "gate-a"
    assert found[0].detected_at == WALL + 9


# ------------------------------------------------------------------ the hybrid clock


async def test_a_learned_stamp_moves_the_clock_forward(ledger: Ledger) -> None:
    now = time.time()
    near = Stamp(int(now * 1000) + 60_000, 5).packed  # a minute ahead: followed
    learned = await ledger.learn([Origin("gate-b").make("T-1", at=now, hlc=near)], now=now)
    assert learned.clock_ahead == 0
    assert ledger.clock.last > near
    assert (await admit(ledger, "T-2", wall=now)).hlc > near


async def test_a_stamp_far_ahead_is_kept_counted_and_not_followed(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    now = time.time()
    far = Stamp(int(now * 1000) + MAX_AHEAD_MS + 86_400_000, 0).packed  # a day fast
    async with opened(path, "gate-a") as ledger:
        learned = await ledger.learn([Origin("gate-b").make("T-1", at=now, hlc=far)], now=now)
        assert (learned.clock_ahead, len(learned.applied)) == (1, 1)
        assert (await ledger.counters())["peer:clock_ahead"] == 1
        assert ledger.clock.last < far
        assert (await admit(ledger, "T-2", wall=now)).hlc < far
    # Not after a restart either: the clock resumes from this gate's stamps, not the peer's.
    async with opened(path, "gate-a") as ledger:
        assert ledger.clock.last < far
        record = await admit(ledger, "T-3", wall=time.time())
        assert Stamp.unpack(record.hlc).millis < Stamp.unpack(far).millis - 3_600_000


async def test_a_restart_resumes_after_every_stamp_made_or_followed(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    now = time.time()
    near = Stamp(int(now * 1000) + 60_000, 9).packed
    async with opened(path, "gate-a") as ledger:
        await ledger.learn([Origin("gate-b").make("T-1", at=now, hlc=near)], now=now)
        own = await admit(ledger, "T-2", wall=now)
    async with opened(path, "gate-a") as ledger:
        assert ledger.clock.last >= max(near, own.hlc)
        assert (await admit(ledger, "T-3", wall=now)).hlc > max(near, own.hlc)


# ------------------------------------------------------------------ migration


async def test_a_version_2_file_is_migrated_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    u1, u2, u3 = (f"00000000-0000-4000-8000-00000000000{n}" for n in (1, 2, 3))
    with contextlib.closing(sqlite3.connect(path)) as old:
        old.executescript(MIGRATIONS[0])
        old.executescript(MIGRATIONS[1])
        old.execute("INSERT INTO meta (key, value) VALUES ('epoch', 'e-old'), ('gate_id', 'gate-a')")
        old.executemany(
            "INSERT INTO redemptions (uuid, ticket_id, kind, slot, origin, epoch, seq, hlc, wall, mode,"
            " voids) VALUES (?, ?, ?, ?, 'gate-a', 'e-old', ?, ?, ?, ?, ?)",
            [
                (u1, "T-1", "entry", 1, 1, 5, 1.5, "offline", None),
                (u2, "T-1", "void", None, 2, 6, 2.5, "offline", u1),
                (u3, "T-2", "entry", 1, 3, 7, 3.5, "online", None),
            ],
        )
        old.execute("PRAGMA user_version = 2")
        old.commit()
    async with opened(path, "gate-a") as ledger:
        assert rows(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
        assert ledger.epoch == "e-old"
        assert rows(path, "SELECT seq, kind, sig FROM redemptions ORDER BY seq") == [
            (1, "entry", None),
            (2, "void", None),
            (3, "entry", None),
        ]
        assert ledger.known() == {("gate-a", "e-old"): 3}
        assert (await facts_of(ledger, "T-1")).entries == 0
        assert (await facts_of(ledger, "T-2")).entries == 1
        served, more = await ledger.records_after({}, 10)
        assert [r.seq for r, _ in served] == [1, 2, 3] and more is False
        assert all(sig is None for _, sig in served)
        assert served[1][0].voids == served[0][0].uuid
        new = await admit(ledger, "T-3")
        assert (new.seq, new.epoch) == (4, "e-old") and new.hlc > 7
        learned = await ledger.learn([Origin("gate-b").make("T-2", at=WALL)], now=WALL)
        assert learned.conflicts == 1


async def test_signed_own_records_verify_after_the_database_round_trip(ledger: Ledger) -> None:
    # A record is signed when it leaves, from the row read back: the same bytes the listener saw.
    entry = await admit(ledger, "T-1", wall=WALL + 0.123456)
    void = await ledger.void(entry.uuid, wall=WALL + 1.5, operator="steward", counters=[])
    served, _ = await ledger.records_after({}, 10)
    assert [r for r, _ in served] == [entry, void]
    assert void is not None
    key = KEYS["gate-a"]
    for record, announced in zip([r for r, _ in served], [entry, void], strict=True):
        assert record.signing_bytes() == announced.signing_bytes()
        assert announced.signed_by(key.public, record.sign(key))
