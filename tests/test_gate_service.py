"""The gate service on real parts: a ledger file, the manifest watch, and a recording signals port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gate_daemon.core.decision import Decision, ScanKind
from gate_daemon.core.reasons import Outcome, Reason
from gate_daemon.gate.scan import ScanIdReused, gate_scan_id
from gate_daemon.store.scans import new_scan_id
from tests.gate_fixtures import GATE_ID, RecordingSignals, Rig, gate_rig, query
from tests.support import SAT_START, SUN_START, World

REF_T0001 = "REF-SAT-FLOOR-0001"  # T-0001: Saturday, floor, one entry
LEGACY_T0007 = "O-105-C2"  # T-0007: any session, any zone, three entries
LEGACY_T0008 = "O-106-C3"  # T-0008: Sunday, re-entry after an exit scan
LEGACY_T0004 = "O-102-B2"  # T-0004: canceled


@contextlib.contextmanager
def write_lock(db: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the file's write lock until the block ends."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield conn
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def evidence(rig: Rig) -> list[tuple[str, str, str | None, str]]:
    """(outcome, reason, ticket_id, resolution) of every evidence row, in commit order."""
    return [
        (str(o), str(r), t, str(res))
        for o, r, t, res in rig.rows("SELECT outcome, reason, ticket_id, resolution FROM scans ORDER BY hlc")
    ]


async def test_allow_then_already_used_says_when_and_where(world: World, tmp_path: Path) -> None:
    async with gate_rig(world, tmp_path) as rig:
        first = await rig.gate.scan(REF_T0001, device="test")
        rig.clock.now = SAT_START + 600
        second = await rig.gate.scan(REF_T0001, device="test")
        assert first.recorded and second.recorded
        assert first.decision.reason is Reason.OK
        assert first.decision.ticket_id == "T-0001"
        assert second.decision.outcome is Outcome.ALREADY_USED
        assert second.decision.message == "Already used 2026-11-21T19:00:00Z at gate north-1"
        assert second.decision.last_entry_gate == GATE_ID
        assert second.decision.last_entry_at == SAT_START
        assert [d.reason for d in rig.signals.shown] == [Reason.OK, Reason.ALREADY_USED]
        assert evidence(rig) == [
            ("allow", "ok", "T-0001", "admitted"),
            ("already_used", "already_used", "T-0001", "refused"),
        ]
        assert rig.rows("SELECT ticket_id, kind, slot, origin, seq FROM redemptions") == [
            ("T-0001", "entry", 1, GATE_ID, 1)
        ]
        counters = await rig.ledger.counters()
        assert counters["scans"] == 2
        assert counters["outcome:allow"] == 1
        assert counters["reason:already_used"] == 1
        assert counters["kind:entry"] == 2


async def test_the_answer_is_the_json_the_control_socket_sends(world: World, tmp_path: Path) -> None:
    async with gate_rig(world, tmp_path) as rig:
        result = await rig.gate.scan(REF_T0001, device="test", operator="anna")
        answer = result.as_dict()
        assert answer["scan_id"] == answer["record_id"] == result.scan_id
        assert answer["recorded"] is True
        assert "duplicate" not in answer
        stored = json.loads(rig.scalar("SELECT decision FROM scans WHERE uuid = ?", (result.scan_id,)))
        assert {k: v for k, v in answer.items() if k not in ("scan_id", "record_id", "recorded")} == stored
        # With the client's own id, the answer carries both: the client's to retry with.
        assert result.as_dict(client_id="c-1") == {**answer, "scan_id": "c-1"}
        assert rig.rows("SELECT device, operator FROM scans") == [("test", "anna")]
        assert rig.rows("SELECT operator FROM redemptions") == [("anna",)]


async def test_an_n_entry_ticket_counts_down(world: World, tmp_path: Path) -> None:
    async with gate_rig(world, tmp_path) as rig:
        results = [await rig.gate.scan(LEGACY_T0007, device="test") for _ in range(4)]
        assert [r.decision.message for r in results[:3]] == [
            "Entry allowed (2 more entries left)",
            "Entry allowed (1 more entry left)",
            "Entry allowed (last entry)",
        ]
        assert [r.decision.entries_used for r in results] == [0, 1, 2, 3]
        assert results[3].decision.outcome is Outcome.ALREADY_USED
        assert results[3].decision.message.startswith("All 3 entries used; last 2026-11-21T19:00:00Z")
        assert rig.rows("SELECT slot FROM redemptions ORDER BY seq") == [(1,), (2,), (3,)]


async def test_a_reentry_ticket_needs_an_exit_between_entries(world: World, tmp_path: Path) -> None:
    async with gate_rig(world, tmp_path, now=SUN_START) as rig:
        scan = rig.gate.scan
        entered = await scan(LEGACY_T0008, device="test")
        again = await scan(LEGACY_T0008, device="test")
        left = await scan(LEGACY_T0008, device="test", kind=ScanKind.EXIT)
        back = await scan(LEGACY_T0008, device="test")
        assert entered.decision.message == "Entry allowed (re-entry ticket)"
        assert again.decision.reason is Reason.ALREADY_USED
        assert again.decision.message.startswith("Already inside: entered")
        assert left.decision.reason is Reason.OK
        assert left.decision.message == "Exit recorded"
        assert back.decision.reason is Reason.OK
        assert rig.rows("SELECT kind, slot FROM redemptions ORDER BY hlc") == [
            ("entry", 1),
            ("exit", 1),
            ("entry", 2),
        ]
        assert [row[3] for row in evidence(rig)] == ["admitted", "refused", "exited", "admitted"]
        assert (await rig.ledger.counters())["kind:exit"] == 1


async def test_an_exit_without_an_entry_is_not_inside(world: World, tmp_path: Path) -> None:
    async with gate_rig(world, tmp_path) as rig:
        result = await rig.gate.scan(REF_T0001, device="test", kind=ScanKind.EXIT)
        assert result.decision.reason is Reason.NOT_INSIDE
        assert result.decision.outcome is Outcome.DENY
        assert rig.scalar("SELECT COUNT(*) FROM redemptions") == 0
        # Not having left does not spend the entry.
        assert (await rig.gate.scan(REF_T0001, device="test")).decision.reason is Reason.OK


async def test_an_exit_gate_records_exits(world: World, tmp_path: Path) -> None:
    async with gate_rig(world, tmp_path, kind=ScanKind.EXIT) as rig:
        scan = rig.gate.scan
        assert (await scan(REF_T0001, device="test")).decision.reason is Reason.NOT_INSIDE
        assert (await scan(REF_T0001, device="test", kind=ScanKind.ENTRY)).decision.reason is Reason.OK
        out = await scan(REF_T0001, device="test")  # the gate's own mode: exit
        assert out.decision.message == "Exit recorded"
        assert (await scan(REF_T0001, device="test")).decision.reason is Reason.NOT_INSIDE
        assert rig.rows("SELECT kind FROM scans ORDER BY hlc") == [
            ("exit",),
            ("entry",),
            ("exit",),
            ("exit",),
        ]
        assert rig.rows("SELECT kind, slot FROM redemptions ORDER BY hlc") == [("entry", 1), ("exit", 1)]


async def test_leaving_is_never_refused_for_the_order_status(world: World, tmp_path: Path) -> None:
    async with gate_rig(world, tmp_path) as rig:
        # A canceled ticket cannot enter, and (having no entry) is not inside either.
        assert (await rig.gate.scan(LEGACY_T0004, device="test")).decision.reason is Reason.CANCELED
        out = await rig.gate.scan(LEGACY_T0004, device="test", kind=ScanKind.EXIT)
        assert out.decision.reason is Reason.NOT_INSIDE
        # A wrong-zone ticket is refused at the door but its exit check is only "inside?".
        balcony = "O-100-A2"
        assert (await rig.gate.scan(balcony, device="test")).decision.reason is Reason.WRONG_ZONE
        assert (await rig.gate.scan(balcony, device="test", kind=ScanKind.EXIT)).decision.reason is (
            Reason.NOT_INSIDE
        )


async def test_without_a_manifest_every_scan_is_manifest_missing_and_recorded(
    world: World, tmp_path: Path
) -> None:
    async with gate_rig(world, tmp_path, manifest=None) as rig:
        assert rig.watch.current is None
        result = await rig.gate.scan(REF_T0001, device="test")
        assert result.recorded
        assert result.decision.reason is Reason.MANIFEST_MISSING
        assert result.decision.message.startswith("Out of service")
        assert rig.signals.shown == [result.decision]
        assert rig.rows("SELECT reason, ticket_id, manifest_version FROM scans") == [
            ("manifest_missing", None, None)
        ]
        assert (await rig.ledger.counters())["reason:manifest_missing"] == 1
        # Bad payloads are still named for what they are.
        garbage = await rig.gate.scan("\x00\x01 not a code", device="test")
        assert garbage.decision.reason is Reason.INVALID_PAYLOAD


async def test_a_decision_is_shown_only_after_its_scan_is_committed(world: World, tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite"

    def committed(decision: Decision) -> None:
        # Another connection sees only committed data: the scan must already be on file.
        rows = query(db, "SELECT reason, ticket_id, decision FROM scans ORDER BY hlc DESC LIMIT 1")
        count = query(db, "SELECT COUNT(*) FROM scans")[0][0]
        assert count == len(signals.shown) + 1
        assert rows[0][:2] == (decision.reason.value, decision.ticket_id)
        assert json.loads(rows[0][2]) == decision.as_dict()

    signals = RecordingSignals(check=committed)
    async with gate_rig(world, tmp_path, signals=signals) as rig:
        assert rig.db == db
        for payload in (REF_T0001, REF_T0001, "O-100-A2", "nonsense", LEGACY_T0007):
            await rig.gate.scan(payload, device="test")
        await rig.gate.scan(REF_T0001, device="test", kind=ScanKind.EXIT)
    assert signals.failures == []
    assert [d.reason for d in signals.shown] == [
        Reason.OK,
        Reason.ALREADY_USED,
        Reason.WRONG_ZONE,
        Reason.UNKNOWN_TICKET,
        Reason.OK,
        Reason.OK,
    ]


async def test_a_broken_light_does_not_lose_the_scan(world: World, tmp_path: Path) -> None:
    def broken(decision: Decision) -> None:
        raise OSError("the LED driver is gone")

    async with gate_rig(world, tmp_path, signals=RecordingSignals(check=broken)) as rig:
        result = await rig.gate.scan(REF_T0001, device="test")
        assert result.decision.reason is Reason.OK
        assert rig.scalar("SELECT COUNT(*) FROM redemptions") == 1
        assert len(rig.signals.failures) == 1


async def test_repeat_frames_within_the_window_are_one_scan(world: World, tmp_path: Path) -> None:
    async with gate_rig(world, tmp_path, repeat_window=3.0) as rig:
        first = await rig.gate.sighted(REF_T0001, device="camera")
        rig.mono.now += 1.0
        repeat = await rig.gate.sighted(REF_T0001, device="camera")
        assert first is not None and first.decision.reason is Reason.OK
        assert repeat is None
        assert rig.gate.volatile["repeats"] == 1
        assert rig.scalar("SELECT COUNT(*) FROM scans") == 1
        # Another code in between is its own scan.
        other = await rig.gate.sighted(LEGACY_T0007, device="camera")
        assert other is not None
        # The window counts from the last sighting: a code held in view stays one scan.
        rig.mono.now += 2.5
        assert await rig.gate.sighted(REF_T0001, device="camera") is None
        assert rig.gate.volatile["repeats"] == 2
        # Shown again after the window: scanned again (and now already used).
        rig.mono.now += 3.0
        again = await rig.gate.sighted(REF_T0001, device="camera")
        assert again is not None
        assert again.decision.reason is Reason.ALREADY_USED
        assert rig.scalar("SELECT COUNT(*) FROM scans") == 3
        assert [d.reason for d in rig.signals.shown] == [Reason.OK, Reason.OK, Reason.ALREADY_USED]
        assert rig.rows("SELECT DISTINCT device FROM scans") == [("camera",)]


async def test_manual_scans_are_never_repeat_suppressed(world: World, tmp_path: Path) -> None:
    async with gate_rig(world, tmp_path) as rig:
        await rig.gate.scan(REF_T0001, device="control")
        await rig.gate.scan(REF_T0001, device="control")
        assert rig.scalar("SELECT COUNT(*) FROM scans") == 2
        assert rig.gate.volatile["repeats"] == 0


async def test_a_scan_id_makes_a_retry_a_duplicate(world: World, tmp_path: Path) -> None:
    async with gate_rig(world, tmp_path) as rig:
        scan_id = new_scan_id()
        first = await rig.gate.scan(REF_T0001, device="control", scan_id=scan_id)
        rig.clock.now += 30
        retry = await rig.gate.scan(REF_T0001, device="control", scan_id=scan_id)
        assert first.decision.reason is Reason.OK
        assert retry.duplicate and not first.duplicate
        # Recorded under this gate's own id for the client's (the same id at another gate
        # makes another record there).
        assert retry.scan_id == first.scan_id == gate_scan_id(rig.gate.gate_id, scan_id) != scan_id
        assert retry.decision == first.decision
        assert retry.as_dict()["duplicate"] is True
        assert rig.scalar("SELECT COUNT(*) FROM scans") == 1
        assert rig.scalar("SELECT COUNT(*) FROM redemptions") == 1
        assert len(rig.signals.shown) == 1  # a retry is answered, not shown again
        # A scan id sent again with another payload is a mistake, not a retry: refused.
        with pytest.raises(ScanIdReused):
            await rig.gate.scan("O-100-A2", device="control", scan_id=scan_id)
        assert rig.scalar("SELECT COUNT(*) FROM scans") == 1


async def test_concurrent_retries_of_one_scan_id_commit_once(world: World, tmp_path: Path) -> None:
    async with gate_rig(world, tmp_path) as rig:
        scan_id = new_scan_id()
        results = await asyncio.gather(
            *(rig.gate.scan(REF_T0001, device="control", scan_id=scan_id) for _ in range(5))
        )
        assert all(r.recorded for r in results)
        assert {r.decision.reason for r in results} == {Reason.OK}
        assert sum(not r.duplicate for r in results) == 1
        assert rig.scalar("SELECT COUNT(*) FROM scans") == 1
        assert rig.scalar("SELECT COUNT(*) FROM redemptions") == 1
        assert (await rig.ledger.counters())["scans"] == 1


async def test_fifty_concurrent_scans_of_one_ticket_admit_exactly_one(world: World, tmp_path: Path) -> None:
    async with gate_rig(world, tmp_path) as rig:
        results = await asyncio.gather(*(rig.gate.scan(REF_T0001, device="test") for _ in range(50)))
        reasons = [r.decision.reason for r in results]
        assert reasons.count(Reason.OK) == 1
        assert reasons.count(Reason.ALREADY_USED) == 49
        assert all(r.recorded for r in results)
        assert rig.scalar("SELECT COUNT(*) FROM redemptions") == 1
        assert rig.scalar("SELECT COUNT(*) FROM scans") == 50
        assert len({r.scan_id for r in results}) == 50
        counters = await rig.ledger.counters()
        assert (counters["scans"], counters["outcome:allow"], counters["outcome:already_used"]) == (50, 1, 49)


async def test_a_ledger_that_cannot_commit_refuses_with_ledger_unavailable(
    world: World, tmp_path: Path
) -> None:
    async with gate_rig(world, tmp_path) as rig:
        await rig.ledger._db.execute("PRAGMA busy_timeout = 50")  # fail fast instead of after 5 s
        with write_lock(rig.db):
            result = await rig.gate.scan(REF_T0001, device="test")
            assert result.recorded is False
            assert result.decision.reason is Reason.LEDGER_UNAVAILABLE
            assert result.decision.outcome is Outcome.DENY
            assert result.as_dict()["recorded"] is False
            assert rig.signals.shown == [result.decision]
            assert rig.gate.volatile["unrecorded"] == 1
        # Nothing of the refused scan reached the file, and the gate works again at once.
        assert rig.scalar("SELECT COUNT(*) FROM scans") == 0
        after = await rig.gate.scan(REF_T0001, device="test")
        assert after.recorded
        assert after.decision.reason is Reason.OK  # the refused scan did not use the entry
        assert rig.rows("SELECT seq FROM redemptions") == [(1,)]
        counters = await rig.ledger.counters()
        assert counters["scans"] == 1
        assert "reason:ledger_unavailable" not in counters


async def test_a_duplicate_scan_id_is_still_answered_while_the_ledger_is_locked(
    world: World, tmp_path: Path
) -> None:
    async with gate_rig(world, tmp_path) as rig:
        await rig.ledger._db.execute("PRAGMA busy_timeout = 50")
        scan_id = new_scan_id()
        first = await rig.gate.scan(REF_T0001, device="control", scan_id=scan_id)
        with write_lock(rig.db):
            # Readers are not blocked in WAL mode: the recorded answer comes back.
            retry = await rig.gate.scan(REF_T0001, device="control", scan_id=scan_id)
            fresh = await rig.gate.scan(LEGACY_T0007, device="control")
        assert retry.duplicate and retry.decision == first.decision
        assert fresh.decision.reason is Reason.LEDGER_UNAVAILABLE


# ------------------------------------------------------------------ a property over interleavings

_KINDS = st.sampled_from([ScanKind.ENTRY, ScanKind.ENTRY, ScanKind.EXIT])
_SCANS = st.tuples(st.integers(0, 3), _KINDS)


@settings(max_examples=40)
@given(batches=st.lists(st.lists(_SCANS, min_size=1, max_size=6), min_size=1, max_size=6))
def test_interleaved_scans_never_admit_more_than_the_policy(
    shared_world: World, batches: list[list[tuple[int, ScanKind]]]
) -> None:
    """Batches of concurrent scans, entries and exits of four tickets of every policy."""
    world = shared_world
    payloads = [
        REF_T0001,  # single entry
        world.sign("T-6001", session="sat"),  # single entry, signed, not in the manifest
        LEGACY_T0007,  # three entries
        world.sign("T-6002", entries=0),  # re-entry
    ]
    limits = {"T-0001": 1, "T-6001": 1, "T-0007": 3}

    async def scenario(state: Path) -> None:
        async with gate_rig(world, state) as rig:
            total = 0
            for batch in batches:
                results = await asyncio.gather(
                    *(rig.gate.scan(payloads[i], device="test", kind=kind) for i, kind in batch)
                )
                total += len(batch)
                assert all(r.recorded for r in results)
            rows = rig.rows("SELECT ticket_id, kind FROM redemptions ORDER BY hlc")
            for ticket, limit in limits.items():
                entries = sum(1 for t, k in rows if t == ticket and k == "entry")
                assert entries <= limit, (ticket, rows)
            for ticket in {t for t, _ in rows}:
                inside = 0
                for t, k in rows:
                    if t == ticket:
                        inside += 1 if k == "entry" else -1
                        assert inside >= 0, (ticket, rows)  # an exit only from inside
                        if ticket == "T-6002":
                            assert inside <= 1, rows  # re-entry: in, out, in again
            scans = rig.scalar("SELECT COUNT(*) FROM scans")
            counters = await rig.ledger.counters()
            assert scans == total == counters["scans"]
            assert counters.get("outcome:allow", 0) == len(rows)
            assert sum(v for k, v in counters.items() if k.startswith("outcome:")) == total
            assert sum(v for k, v in counters.items() if k.startswith("kind:")) == total
            assert len(rig.signals.shown) == total

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp)))
