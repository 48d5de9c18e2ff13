"""``gatectl counters --ledger``: a gate's counters read from its file, with the gate stopped or dead."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from gate_daemon.cli.gatectl import main
from gate_daemon.core.decision import Decision
from gate_daemon.core.reasons import Reason
from gate_daemon.store.ledger import Ledger
from tests.support import hand_scan


async def scan(ledger: Ledger, n: int) -> None:
    unpaid = Decision(Reason.UNPAID, "Order is not paid", ticket_id=f"T-{n}")
    await ledger.record_scan(hand_scan(wall=time.time()), f"T-{n}", lambda _facts: unpaid)


async def test_a_cleanly_stopped_ledger_is_read_without_writing_beside_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "odd ?#% dir"
    folder.mkdir()
    ledger = await Ledger.open(folder / "ledger.sqlite", "north-1")
    for n in range(3):
        await scan(ledger, n)
    await ledger.close()
    before = sorted(p.name for p in folder.iterdir())
    assert main(["counters", "--json", "--ledger", str(folder / "ledger.sqlite")]) == 0
    assert '"scans": 3' in capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir()) == before  # no -wal or -shm made


async def test_a_dead_gates_ledger_is_read_with_its_wal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = tmp_path / "live"
    live.mkdir()
    ledger = await Ledger.open(live / "ledger.sqlite", "north-1")
    try:
        for n in range(2):
            await scan(ledger, n)
        # The files as a kill -9 leaves them: the committed scans are in the WAL.
        dead = tmp_path / "dead"
        shutil.copytree(live, dead)
    finally:
        await ledger.close()
    assert (dead / "ledger.sqlite-wal").stat().st_size > 0
    assert main(["counters", "--ledger", str(dead / "ledger.sqlite")]) == 0
    out = capsys.readouterr().out
    assert "reason:unpaid" in out and out.split("scans")[-1].split()[0] == "2"


def test_a_file_that_is_no_ledger_is_a_named_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "ledger.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    assert main(["counters", "--ledger", str(junk)]) == 1
    assert capsys.readouterr().err.startswith("LedgerError: cannot read ledger")
    assert main(["counters", "--ledger", str(tmp_path / "missing.sqlite")]) == 1
    assert "LedgerError: no ledger at" in capsys.readouterr().err
