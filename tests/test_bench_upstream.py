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
    # How often it switched depends on how quick the central is on this machine (a loaded one may
    # open the breaker before the hang too); every switch offline was followed by one back online.
    assert "back online after" in out and re.search(
        r"switches \{'online': ([1-9]\d*), 'offline': \1\}", out
    ), out
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
    calls = result["decision"]["online_calls"]
    # Every online-first scan was put to the central, or skipped while a slow (loaded) central had
    # opened the breaker; the central answered.
    assert calls["answered"] + calls["failed"] + calls["skipped"] >= 10 and calls["answered"] >= 1
    hang = result["hang"]
    # The central stopped answering: the gate went offline, and came back each time it had.
    switches = hang["switches"]
    assert switches["offline"] >= 1 and switches["online"] == switches["offline"]
    assert hang["back_online"] is True
    assert hang["outcomes"] == {"allow": hang["scans"]}  # every scan still answered, locally
