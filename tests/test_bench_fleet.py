"""``gatectl bench fleet`` runs a real gate-central with its gates' heartbeats and prints its figures."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from gate_daemon.cli.gatectl import main


def test_bench_fleet_keeps_every_heartbeat_and_names_every_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["bench", "fleet", "--gates", "4", "--rounds", "5", "--workdir", str(tmp_path)]
    assert main([*args, "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["gates"] == 4
    assert 800 < figures["heartbeat"]["bytes"] < 4096 and figures["heartbeat"]["per_s"] > 0
    page = figures["fleet_read"]
    assert page["bytes"] > 4 * 800 and 0 < page["p50_ms"] <= page["p99_ms"]
    assert figures["judge_p50_ms"] > 0
    with sqlite3.connect(tmp_path / "central" / "central.sqlite") as db:
        assert db.execute("SELECT COUNT(*), MIN(beats) FROM gates").fetchone() == (4, 5)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("fleet bench: 4 gates, 5 reads")
    assert "beats/s taken" in out and "/v1/fleet" in out and "judging" in out
