"""``gatectl bench commands`` applies every command it times, on a real ledger, and names its figures."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from gate_daemon.cli.gatectl import main


def test_bench_commands_applies_each_command_once_and_prints_three_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "commands", "--rounds", "12", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("verify", "apply", "lan"):
        assert re.search(rf"{name} +p50 +[\d.]+ us +p99 +[\d.]+ us +max +[\d.]+ us", out), out
    # Timed through Lane.command and over HTTP: 24 commands, each applied, each in the evidence log.
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        assert db.execute("SELECT outcome, COUNT(*) FROM commands GROUP BY outcome").fetchall() == [
            ("applied", 24)
        ]
        assert db.execute("SELECT value FROM lane WHERE kind = 'message'").fetchone() == ("note 11",)


def test_bench_commands_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "commands", "--rounds", "3", "--json", "--workdir", str(tmp_path)]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["rounds"] == 3 and set(figures["lan"]) == {"p50_us", "p99_us", "max_us"}
