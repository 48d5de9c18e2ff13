"""``gatectl bench gate`` runs the real service and prints its table (the figures live in the docs)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from gate_daemon.cli.gatectl import main


def test_bench_gate_prints_the_gate_beside_the_bare_commit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "gate", "--rounds", "60", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    gate = re.search(r"\| scan to committed decision .*\| p50 (\d+) us, p99 (\d+) us \|", out)
    used = re.search(r"\| scan of a used ticket .*\| p50 (\d+) us, p99 (\d+) us \|", out)
    bare = re.search(r"\| bare SQLite insert \+ commit, same disk \| p50 (\d+) us, p99 (\d+) us \|", out)
    ratios = re.findall(
        r"\| ratio gate / bare, (first scan|used ticket) \| p50 ([\d.]+)x, p99 ([\d.]+)x \|", out
    )
    assert gate and used and bare and len(ratios) == 2, out
    assert int(gate.group(1)) > 0 and int(used.group(1)) > 0 and int(bare.group(1)) > 0
    assert "budgets met" in out or "BUDGET MISSED" in out
    # Every timed first scan was a real admission and every repeat a recorded already_used,
    # committed to the ledger in the work dir.
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM redemptions").fetchone() == (60,)
        assert db.execute("SELECT value FROM counters WHERE name = 'outcome:allow'").fetchone() == (60,)
        repeats = db.execute("SELECT value FROM counters WHERE name = 'outcome:already_used'").fetchone()
        assert repeats is not None and repeats[0] > 0


def test_bench_gate_refuses_an_unusable_workdir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["bench", "gate", "--rounds", "5", "--workdir", str(blocker / "sub")]) == 1
    assert capsys.readouterr().err.startswith("GateError: --workdir")
