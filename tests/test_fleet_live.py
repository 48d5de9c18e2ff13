"""``gatectl fleet`` against a real central and real gates: from the heartbeats and from the gates.

One gate is killed: it is listed first as unreachable, with the reason, and the command
exits 1; started again, the fleet is well again. The central's ``/v1/fleet`` is refused
to an address outside ``[central] fleet_allow``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from gate_daemon.central.config import LOOPBACK
from gate_daemon.central.fleet import allowed
from tests.central_process import CONVERGE
from tests.fleet_fixtures import SILENT_S, Venue
from tests.gate_process import free_port, gatectl, wait_until

pytestmark = pytest.mark.slow


def fleet(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``gatectl fleet ...`` as a person runs it."""
    return gatectl("fleet", *args)


def fleet_json(*args: str | Path) -> tuple[int, dict]:
    done = fleet(*args, "--json")
    assert done.stderr == "", done.stderr
    return done.returncode, json.loads(done.stdout)


def conditions_by_gate(answer: dict) -> list[tuple[str, list[str]]]:
    return [(g["gate"], g["conditions"]) for g in answer["gates"]]


def test_a_gate_killed_is_listed_first_as_unreachable_from_the_central_and_from_the_gates(
    venue: Venue, tmp_path: Path
) -> None:
    for gate_id in ("north-1", "south-1"):
        venue.start(gate_id)
    venue.gates["north-1"].scan("P1-1")
    venue.wait_heard("north-1", "south-1")
    gates_file = tmp_path / "gates.txt"
    gates_file.write_text(
        f"# the venue's gates\n{venue.address('north-1')}\n\nhttp://{venue.address('south-1')}/\n"
    )
    central = ("--central", venue.central.url, "--silent-s", str(SILENT_S))

    def central_sees_scans() -> bool:
        code, answer = fleet_json(*central)
        return code == 0 and {g["gate"]: g["scans"] for g in answer["gates"]}.get("north-1") == 1

    wait_until(central_sees_scans, CONVERGE, "the central's fleet all well, with north-1's scan")
    code, answer = fleet_json("--gates", gates_file)
    assert code == 0, answer
    assert {g["gate"]: (g["reachable"], g["scans"]) for g in answer["gates"]} == {
        "north-1": (True, 1),
        "south-1": (True, 0),
    }
    shown = fleet(*central)
    assert shown.returncode == 0 and "all 2 gates well" in shown.stdout
    assert shown.stdout.splitlines()[0].split()[:3] == ["gate", "reachable", "lane"]

    venue.kill("south-1")

    code, answer = fleet_json("--gates", gates_file)
    assert code == 1
    assert conditions_by_gate(answer) == [(venue.address("south-1"), ["unreachable"]), ("north-1", [])]
    shown = fleet("--gates", gates_file)
    assert shown.returncode == 1
    rows = shown.stdout.splitlines()
    assert rows[1].split()[:2] == [venue.address("south-1"), "NO"]
    assert f"{venue.address('south-1')}: unreachable: ConnectError" in shown.stdout

    def central_calls_it_unreachable() -> bool:
        code, answer = fleet_json(*central)
        return code == 1 and conditions_by_gate(answer) == [("south-1", ["unreachable"]), ("north-1", [])]

    wait_until(central_calls_it_unreachable, CONVERGE, "the central to call south-1 unreachable")
    shown = fleet(*central)
    assert shown.returncode == 1
    assert "1 of 2 gates need attention:" in shown.stdout
    assert "south-1: unreachable: not heard from for" in shown.stdout

    venue.start("south-1")
    wait_until(lambda: fleet_json(*central)[0] == 0, CONVERGE, "south-1 back at the central")
    assert fleet_json("--gates", gates_file)[0] == 0


def test_the_central_judges_with_its_own_thresholds_and_serves_the_sop_cards(venue: Venue) -> None:
    venue.start("north-1")
    venue.wait_heard("north-1")

    def answer() -> dict:
        got = httpx.get(f"{venue.central.url}/v1/fleet", timeout=10)
        assert got.status_code == 200 and got.headers["Cache-Control"] == "no-store"
        return got.json()

    # south-1 is in the roster and has never been heard from.
    wait_until(
        lambda: conditions_by_gate(answer())[0] == ("south-1", ["unreachable"]), CONVERGE, "the roster"
    )
    state = answer()
    assert state["gates"][0]["error"] == "never heard from"
    assert state["gates"][0]["reasons"] == ["never heard from"]
    assert state["attention"] == 1, conditions_by_gate(state)
    assert state["thresholds"]["silent_s"] == SILENT_S
    assert state["event"] == "live-2026" and state["roster"] == ["north-1", "south-1"]
    assert "<strong>The gate does not answer.</strong>" in state["sop"]["unreachable"]
    assert "<strong>The central cannot be reached.</strong>" in state["sop"]["central_down"]
    # gatectl's own thresholds: a manifest more than a second old needs attention.
    code, judged = fleet_json("--central", venue.central.url, "--manifest-age-s", "0.001")
    assert code == 1
    assert dict(conditions_by_gate(judged))["north-1"] == ["manifest_old"]


def test_the_central_down_or_a_bad_gates_file_is_named(tmp_path: Path) -> None:
    down = fleet("--central", f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 1 and down.stdout == ""
    assert "did not answer (ConnectError); when the central is down, ask the gates" in down.stderr
    bad = tmp_path / "gates.txt"
    bad.write_text("127.0.0.1:8710\nnot an address\n")
    done = fleet("--gates", bad)
    assert done.returncode == 1
    assert f"{bad}, line 2: 'not an address' is not HOST:PORT" in done.stderr
    assert "Traceback" not in done.stderr
    bad.write_bytes(b"\xff\n")
    assert "not UTF-8 text (byte 0)" in fleet("--gates", bad).stderr
    missing = fleet("--gates", tmp_path / "none.txt")
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    usage = fleet("--gates", bad, "--clock-s", "-1")
    assert usage.returncode == 2 and "--clock-s" in usage.stderr
    usage = fleet("--gates", bad, "--backlog", "0")
    assert usage.returncode == 2 and "--backlog" in usage.stderr


def test_only_the_allowed_networks_read_the_fleet() -> None:
    assert (
        allowed("127.0.0.1", LOOPBACK) and allowed("::1", LOOPBACK) and allowed("::ffff:127.0.0.1", LOOPBACK)
    )
    assert (
        not allowed("10.0.0.5", LOOPBACK)
        and not allowed(None, LOOPBACK)
        and not allowed("fe80::1%eth0", LOOPBACK)
    )
