"""``gatectl bench upstream`` drains to a real gate-central process and prints its figures."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from gate_daemon.cli.gatectl import main


def test_bench_upstream_drains_exactly_once_and_names_every_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "upstream", "--records", "1200", "--rounds", "20", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"drain +1200 records in [\d.]+ s \(\d+/s, 3 batches\)", out), out
    assert (
        "exactly once: yes (central holds 1200, a second drain sent 0, a batch sent again: 500/500 duplicate)"
        in out
    )
    ms = r"p50 [\d.]+ ms +p99 [\d.]+ ms +max [\d.]+ ms"
    assert re.search(r"decision +local +" + ms, out), out
    assert re.search(r"online-first +" + ms + r" +\(x[\d.]+ / x[\d.]+ of local; timeout 500 ms\)", out), out
    assert re.search(r"hung +first scans \[[\d., ]+\] ms, switched offline after \d+ ms", out), out
    assert "back online after" in out and "'offline': 1" in out, out
    # The central's own file holds each record once, every one signed by the gate.
    with sqlite3.connect(tmp_path / "central" / "central.sqlite") as db:
        drained = (
            "SELECT COUNT(*), COUNT(DISTINCT uuid), COUNT(sig) FROM checkins WHERE origin = 'bench-drain'"
        )
        assert db.execute(drained).fetchone() == (1200, 1200, 1200)


def test_bench_upstream_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "upstream", "--records", "600", "--rounds", "10", "--json", "--workdir", str(tmp_path)]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    drain = result["drain"]
    assert drain["sent"] == drain["central_checkins"] == 600 and drain["exactly_once"] is True
    assert drain["second_drain_sent"] == 0 and drain["budget_s"] == 10.0
    assert result["decision"]["online_calls"]["answered"] >= 10
    hang = result["hang"]
    # The central stopped answering: the gate went offline once and came back once.
    assert hang["switches"] == {"online": 1, "offline": 1} and hang["back_online"] is True
    assert hang["outcomes"] == {"allow": hang["scans"]}  # every scan still answered, locally
