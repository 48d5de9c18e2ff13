"""``gatectl bench peers`` runs real gates on loopback and prints its figures (they live in the docs)."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from gate_daemon.cli.gatectl import main


def test_bench_peers_names_every_figure_and_converges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["bench", "peers", "--gates", "3", "--rounds", "20", "--records", "300"]
    assert main([*args, "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    ms = r"p50 ([\d.]+) ms, p99 ([\d.]+) ms"
    propagation = re.search(r"\| propagation, commit at A -> known at B \(40 pairs timed\) \| " + ms, out)
    assert propagation and 0 < float(propagation.group(1)) <= float(propagation.group(2)), out
    assert re.search(r"\| propagation, commit at A -> known at all 2 others \| " + ms, out)
    # One at a time, each redemption is one push to each other gate, and pulls wait 30 s.
    assert "| requests per redemption, one at a time | 2.00 (40 pushes, 0 pulls, 0 challenges) |" in out
    assert re.search(r"\| bytes per redemption, one at a time .*\| \d+ \(\d+ per record carried\) \|", out)
    assert re.search(r"\| every gate scanning back to back: commit -> known .*\| " + ms, out)
    assert re.search(r"\| every gate scanning back to back: requests per redemption \| [\d.]+", out)
    assert re.search(r"\| partition heals: 300 redemptions everywhere .*\| [\d.]+ s \|", out)
    assert re.search(r"\| partition heals: pulls, records per pull, .*\| \d+, \d+, \d+ \|", out)
    assert "| partition heals: conflicts found per gate (expected 2) | 2, 2, 2 |" in out
    assert re.search(r"\| an idle pull's request body \(3 logs known\) \| \d+ bytes \|", out)
    assert re.search(r"\| scan at gate-1, idle before and after \| " + ms, out)
    assert re.search(r"\| scan at gate-1, while the partition heals \(\d+ scans\) \| " + ms, out)
    assert re.search(r"\| ratio converging / idle \| p50 [\d.]+x, p99 [\d.]+x \|", out)
    alone = r" \d+ .*\| p50 [\d.]+ ms, max [\d.]+ ms \|"
    assert re.search(r"\| one pull answer of" + alone, out)
    assert re.search(r"\| the same" + alone, out)
    assert re.search(r"\| sign one record / check its signature \| \d+ us / \d+ us \|", out)
    assert re.search(r"\| gate-3 \| [\d.]+ / [\d.]+ \| [\d.]+ / [\d.]+ \| - \|", out)
    assert "budget met" in out or "BUDGET MISSED" in out
    assert "NOT CONVERGED" not in out and "CONFLICTS DIFFER" not in out
    # Every gate's ledger holds every redemption made during the partition (two admissions
    # of each shared ticket among them) and records the same double entries.
    for gate in ("gate-1", "gate-2", "gate-3"):
        with sqlite3.connect(tmp_path / f"{gate}.sqlite") as db:
            made_apart = "SELECT COUNT(*) FROM redemptions WHERE ticket_id LIKE 'P%' OR ticket_id LIKE 'C-%'"
            assert db.execute(made_apart).fetchone() == (300,), gate
            assert db.execute("SELECT COUNT(*) FROM conflicts").fetchone() == (2,), gate


def test_bench_peers_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "peers", "--gates", "2", "--rounds", "5", "--records", "40", "--json"]
    assert main([*args, "--workdir", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["propagation"]["any_peer"]["count"] == 5
    assert result["propagation"]["messages"]["requests_per_redemption"] == 1.0
    assert result["propagation"]["budget_p99_ms"] == 50.0
    assert result["convergence"]["converged"] is True
    assert result["convergence"]["conflicts"] == {"gate-1": 2, "gate-2": 2}


@pytest.mark.parametrize(
    ("option", "error"),
    [
        (["--gates", "1"], "--gates must be 2"),
        (["--records", "3"], "--records must be"),
        (["--process", "--gates", "1"], "--gates must be 2 to 17 with --process, got 1"),
        (
            ["--process", "--gates", "5", "--records", "3"],
            "--records must be at least the feeders' number (4)",
        ),
    ],
)
def test_bench_peers_refuses_sizes_it_cannot_use(
    option: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "peers", *option]) == 1
    assert capsys.readouterr().err.startswith(f"GateError: {error}")


def test_bench_peers_process_times_scans_of_a_gate_daemon_while_it_catches_up_and_drains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["bench", "peers", "--process", "--gates", "3", "--records", "3000", "--rounds", "10", "--json"]
    assert main([*args, "--workdir", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mode"] == "process"
    assert (result["feeders"], result["records"], result["budget_ratio"]) == (2, 3000, 3.0)
    assert result["idle"]["count"] == 30  # three idle phases of --rounds scans
    for phase in ("catching_up", "draining"):
        figures = result[phase]
        assert figures["count"] > 0, phase
        assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"], phase
        assert figures["ratio_p99"] == round(figures["p99_ms"] / result["idle"]["p99_ms"], 2), phase
        assert isinstance(figures["met"], bool), phase
    # The measured gate learned every feeder's backlog (as its ledger says), and the central
    # answered for everything it held when the central continued: the backlog and its scans.
    gate = tmp_path / "gate-1" / "state" / "ledger.sqlite"
    with sqlite3.connect(gate) as db:
        learned = db.execute("SELECT COUNT(*) FROM redemptions WHERE origin != 'gate-1'").fetchone()
        acked = db.execute("SELECT SUM(seq) FROM upstream_acks").fetchone()
    assert learned == (3000,)
    assert acked[0] >= result["drained"] > 3000
    with sqlite3.connect(tmp_path / "central" / "central.sqlite") as db:
        (checkins,) = db.execute("SELECT COUNT(*) FROM checkins").fetchone()
    assert checkins >= result["drained"]
    # Every process the bench started has ended, and the bench's own CPUs are as they were.
    for name in ("gate-1", "gate-2", "gate-3"):
        assert not (tmp_path / name / "control.sock").exists(), name


def test_bench_peers_process_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "peers", "--process", "--gates", "2", "--records", "200", "--rounds", "5"]
    assert main([*args, "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    ms = r"p50 [\d.]+ ms, p99 [\d.]+ ms"
    assert re.search(r"\| scan, idle \(15 scans\) \| " + ms + r" \|", out), out
    timed = r" \(\d+ scans, [\d.]+ s\) \| "
    assert re.search(r"\| scan, while it learns 200 records from 1 peer" + timed + ms, out)
    assert re.search(r"\| scan, while it drains \d+ records to the central" + timed + ms, out)
    assert re.search(r"\| ratio to idle, catching up \| p50 [\d.]+x, p99 [\d.]+x \|", out)
    assert "budget met" in out or "BUDGET MISSED" in out
