"""A supervisor's override from a real gate to a real central, and on to another gate.

Real ``gate-daemon`` processes sync with a real ``gate-central``; the event lists a staff
key. The override is made with ``gatectl scan --force --badge`` as a user runs it, then
read back with ``gatectl report overrides`` at the gate and ``gate-central report`` at
the central; the forced entry reaches the other gate through the central's pull. Every
wait polls a condition with a deadline.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gate_daemon.core.badges import BadgeClaims, Role, encode_badge
from gate_daemon.core.tokens import event_tag
from gate_daemon.net.metrics import render
from gate_daemon.provision.keyfiles import write_keypair
from tests.central_fixtures import CentralWorld
from tests.central_process import CONVERGE, CentralProcess, manifest_version, upstream_config
from tests.gate_process import BIN, GateProcess, Launcher, query, wait_until
from tests.live import EVENT_ID, payload, ticket

pytestmark = pytest.mark.slow


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    """A command of this package, as a user runs it."""
    return subprocess.run(
        [str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def staffed(central_world: CentralWorld, tmp_path: Path) -> Iterator[tuple[CentralProcess, dict[str, str]]]:
    """The central serving an event whose manifest lists a staff key; badges it signed, by role."""
    _, _, key = write_keypair(central_world.live.dir / "staff")
    event = central_world.live.dir / "event.toml"
    event.write_text('staff_keys = ["staff.pub"]\n' + event.read_text())
    tag = event_tag(EVENT_ID)
    badges = {
        role.value: encode_badge(BadgeClaims(f"op-{role.value}", f"Pat {role.value}", role, tag), key)
        for role in Role
    }
    with CentralProcess(central_world.config_path, tmp_path, name="central").start() as central:
        yield central, badges


def start(
    launch: Launcher, world: CentralWorld, root: Path, central: CentralProcess, gate_id: str
) -> GateProcess:
    gate = launch(upstream_config(world, root / gate_id, central.url, gate_id=gate_id), name=gate_id)
    wait_until(lambda: manifest_version(gate) == 1, CONVERGE, f"{gate_id} to fetch the central's manifest")
    return gate


def force(gate: GateProcess, code: str, badge: str | None) -> subprocess.CompletedProcess[str]:
    extra = [] if badge is None else ["--badge", badge]
    return run("gatectl", "scan", "--socket", str(gate.socket_path), "--force", *extra, "--", code)


def test_an_override_is_recorded_at_the_gate_the_central_and_the_other_gate(
    staffed: tuple[CentralProcess, dict[str, str]],
    central_world: CentralWorld,
    launch: Launcher,
    tmp_path: Path,
) -> None:
    central, badges = staffed
    north = start(launch, central_world, tmp_path, central, "north-1")
    # Started before any record exists: a gate that pulls before its first manifest is active
    # refuses what it pulls (no roster yet) and moves past it.
    south = start(launch, central_world, tmp_path, central, "south-1")
    assert north.scan(payload(1))["reason"] == "ok"
    assert north.scan(payload(1))["reason"] == "already_used"

    bare = force(north, payload(1), None)
    assert bare.returncode == 1 and "--force needs --badge" in bare.stderr and "Traceback" not in bare.stderr
    steward = force(north, payload(1), badges["steward"])
    assert steward.returncode == 6, steward.stderr
    assert json.loads(steward.stdout)["reason"] == "override_not_supervisor"
    forced = force(north, payload(1), badges["supervisor"])
    assert forced.returncode == 0, forced.stderr
    decision = json.loads(forced.stdout)
    assert (decision["reason"], decision["staff"], decision["overridden_reason"]) == (
        "overridden",
        "op-supervisor",
        "already_used",
    )
    override_id = decision["record_id"]
    assert north.counters()["overrides"] == 1
    assert b"\ngate_overrides_total 1.0\n" in render(north.status())  # what /metrics serves

    # At the gate: the report, and the forced record it replicates.
    report = run("gatectl", "report", "overrides", "--ledger", str(north.ledger_path), "--json")
    assert report.returncode == 0, report.stderr
    [row] = json.loads(report.stdout)
    assert (row["uuid"], row["supervisor"], row["ticket_id"]) == (override_id, "op-supervisor", ticket(1))
    assert (row["refused_outcome"], row["refused_reason"]) == ("already_used", "already_used")
    assert row["refused_scan"] == decision["overrides"]

    # At the central: the check-in (forced, the supervisor's) and the evidence row naming the refusal.
    def at_central() -> bool:
        rows = query(central.database, "SELECT overrides FROM evidence WHERE uuid = ?", override_id)
        return bool(rows) and override_id in central.checkins()

    wait_until(at_central, CONVERGE, "the override to reach the central")
    [(operator, forced_flag)] = query(
        central.database, "SELECT operator, forced FROM checkins WHERE uuid = ?", override_id
    )
    assert (operator, forced_flag) == ("op-supervisor", 1)
    text = run("gate-central", "report", "--config", str(central_world.config_path))
    assert text.returncode == 0, text.stderr
    assert "overrides  1 (forced entries: no part in conflicts)" in text.stdout
    assert f"{ticket(1)}: admitted at north-1" in text.stdout and "over already_used" in text.stdout
    full: dict[str, Any] = json.loads(
        run("gate-central", "report", "--config", str(central_world.config_path), "--json").stdout
    )
    assert full["conflicts"] == []
    assert [(o["uuid"], o["refused_scan"]) for o in full["overrides"]] == [
        (override_id, decision["overrides"])
    ]

    # At another gate: the forced entry arrives (through the central's pull), signed by north-1.

    def learned() -> bool:
        return bool(query(south.ledger_path, "SELECT 1 FROM redemptions WHERE uuid = ?", override_id))

    wait_until(learned, CONVERGE, "south-1 to learn the forced entry")
    assert query(
        south.ledger_path,
        "SELECT origin, forced, slot, operator FROM redemptions WHERE uuid = ?",
        override_id,
    ) == [("north-1", 1, None, "op-supervisor")]
    assert query(south.ledger_path, "SELECT COUNT(*) FROM conflicts") == [(0,)]

    # A badge signs its holder in: the status says who, and later scans are recorded with them.
    assert south.scan(badges["steward"])["reason"] == "staff_signed_in"
    assert south.status()["staff"]["operator"] == "op-steward"
    shown = run("gatectl", "status", "--socket", str(south.socket_path))
    assert "staff     Pat steward (steward, op-steward) signed in" in shown.stdout, shown.stderr
    assert south.scan(payload(2))["reason"] == "ok"
    rows = query(south.ledger_path, "SELECT operator FROM scans WHERE ticket_id = ?", ticket(2))
    assert rows == [("op-steward",)]
    assert south.scan(payload(1))["reason"] == "already_used"
