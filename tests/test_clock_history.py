"""The clock's floor from what the ledger's file holds: this gate's own scans and records, and the
signed records of other gates, on real SQLite files, read at load without reading the evidence log."""

from __future__ import annotations

import contextlib
import sqlite3
import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gate_daemon.core.decision import Decision
from gate_daemon.core.hlc import Stamp
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.reasons import Reason
from gate_daemon.core.records import Redemption
from gate_daemon.gate.clock import GateClock, vouched_time
from gate_daemon.store.ledger import Ledger
from gate_daemon.store.scans import ScanRecord
from gate_daemon.store.time_evidence import TimeEvidence
from tests.gate_fixtures import Clock
from tests.support import admit, hand_scan

GATE = "north-1"
T = 1_795_000_000.0  # some moment in 2026: the real time the gate saw
EXPIRES = T + 86400  # the active manifest's expiry
BOOT = 1000.0  # what the system clock says after a reboot without network or battery clock
TOO_LATE = Decision(Reason.TOO_LATE, "Ticket no longer valid", ticket_id="T-0001")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite"


@contextlib.asynccontextmanager
async def opened(path: Path) -> AsyncIterator[Ledger]:
    ledger = await Ledger.open(path, GATE)
    try:
        yield ledger
    finally:
        await ledger.close()


async def refuse(ledger: Ledger, wall: float) -> None:
    """A scan refused as too late, as the gate records it: evidence only, no redemption."""
    recorded = await ledger.record_scan(hand_scan(wall=wall), "T-0001", lambda _facts: TOO_LATE)
    assert isinstance(recorded, ScanRecord) and recorded.redemption is None


async def rebooted(path: Path, *, ceiling: float | None = EXPIRES) -> GateClock:
    """The clock of a gate rebooted at ``BOOT`` on this file, its manifest (expiring at ``ceiling``) on."""
    async with opened(path) as ledger:
        clock = await GateClock.load(ledger, system=Clock(BOOT), monotonic=Clock(0.0))
    clock.ceiling = lambda: ceiling
    clock.remember()
    return clock


def learned(origin: str, wall: float, seq: int = 1) -> tuple[Redemption, str]:
    """A record of another gate, signed by it, as a peer or the central passes it on."""
    record = Redemption(
        uuid=str(uuidlib.uuid4()),
        ticket_id=f"T-{origin}-{seq}",
        kind="entry",
        slot=1,
        origin=origin,
        epoch=f"{origin}-epoch",
        seq=seq,
        hlc=Stamp(int(wall * 1000), 0).packed,
        wall=wall,
        operator=None,
        mode="offline",
    )
    return record, record.sign(SecretKey.generate())


# ------------------------------------------------------------------ this gate's own history


async def test_a_refusal_at_the_real_time_is_remembered_after_a_reboot(path: Path) -> None:
    """The gate refused a ticket as too late at T: after a reboot at 1970 it must not decide before T."""
    async with opened(path) as ledger:
        await refuse(ledger, T)
    clock = await rebooted(path)
    assert (clock.now(), clock.floor_source) == (T, "history")


async def test_the_latest_of_the_gates_own_records_counts_too(path: Path) -> None:
    async with opened(path) as ledger:
        entry = await admit(ledger, "T-0002", wall=T)
        await ledger.void(entry.uuid, wall=T + 20, operator=None, counters=[])  # a void is no scan
    clock = await rebooted(path)
    assert (clock.now(), clock.floor_source) == (T + 20, "history")


async def test_the_history_counts_no_further_than_the_manifests_expiry(path: Path) -> None:
    async with opened(path) as ledger:
        await refuse(ledger, EXPIRES + 86400)  # the system clock was a day past the expiry then
    clock = await rebooted(path)
    assert (clock.now(), clock.floor_source) == (EXPIRES, "history")


async def test_without_a_manifest_the_history_raises_nothing(path: Path) -> None:
    async with opened(path) as ledger:
        await refuse(ledger, T)
    clock = await rebooted(path, ceiling=None)
    assert clock.now() == BOOT and clock.floor_source is None


async def test_a_kept_floor_later_than_the_history_stays(path: Path) -> None:
    async with opened(path) as ledger:
        await refuse(ledger, T)
        await ledger.keep_time_floor(T + 60)
    clock = await rebooted(path)
    assert (clock.now(), clock.floor_source) == (T + 60, "ledger")


async def test_a_file_from_before_the_kept_marks_counts_its_scans(path: Path) -> None:
    """Migration 6 seeds the latest scan's time and stamp from the evidence log once."""
    async with opened(path) as ledger:
        await refuse(ledger, T)
        stamp = (await ledger.record_scan(hand_scan(wall=T - 5), None, lambda _facts: TOO_LATE)).evidence.hlc
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("DELETE FROM meta WHERE key IN ('latest_scan_ms', 'latest_scan_hlc')")
        conn.execute("PRAGMA user_version = 5")  # migration 6 runs again (the later ones are idempotent)
    async with opened(path) as ledger:
        assert (await ledger.time_evidence()).own == T
        assert ledger.clock.last >= stamp
    assert (await rebooted(path)).now() == T


async def test_the_kept_time_is_never_later_than_the_scan(path: Path) -> None:
    async with opened(path) as ledger:
        await refuse(ledger, T + 0.123456)
        assert (await ledger.time_evidence()).own == T + 0.123


# ------------------------------------------------------------------ what other gates showed


async def test_one_fast_gate_cannot_push_the_floor_ahead(path: Path) -> None:
    async with opened(path) as ledger:
        await ledger.learn([learned("south-1", T + 3600)], now=BOOT)  # its clock an hour fast
    clock = await rebooted(path)
    assert clock.now() == BOOT and clock.floor_source is None


async def test_a_time_two_other_gates_vouch_for_counts(path: Path) -> None:
    async with opened(path) as ledger:
        await ledger.learn(
            [learned("south-1", T + 3600), learned("east-1", T - 10), learned("east-1", T, seq=2)], now=BOOT
        )
    clock = await rebooted(path)
    assert (clock.now(), clock.floor_source) == (T, "peers")  # east-1's latest: both show it has passed


async def test_the_ledger_reads_each_origins_latest_record(path: Path) -> None:
    async with opened(path) as ledger:
        await refuse(ledger, T - 100)
        await ledger.learn([learned("south-1", T - 50, seq) for seq in (1, 2)], now=BOOT)
        await ledger.learn([learned("east-1", T + 5, 1), learned("east-1", T + 9, 2)], now=BOOT)
        evidence = await ledger.time_evidence()
    assert evidence == TimeEvidence(None, T - 100, {"south-1": T - 50, "east-1": T + 9})


def test_the_vouched_time_is_the_second_latest_origins() -> None:
    assert vouched_time({}) is None
    assert vouched_time({"a": T}) is None
    assert vouched_time({"a": T + 86400, "b": T, "c": T - 60}) == T
    assert vouched_time({"a": T, "b": T}) == T
