"""Supervisor commands end to end: real gate-central and gate-daemon processes, the real gatectl.

A command reaches a gate through the central (queued by ``POST /v1/commands``, handed over
in a heartbeat answer, acknowledged by the next heartbeat) and straight over the LAN; the
same command by both paths is applied once; the lane holds across a SIGKILL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.central_fixtures import CentralWorld, make_central_world
from tests.central_process import CONVERGE, SYNC, CentralProcess, manifest_version
from tests.gate_process import GateProcess, Launcher, free_port, gatectl, query, wait_until
from tests.live import write_gate_config

TICKET = "REF-LIVE-FLOOR-000001"  # L-0001


@pytest.fixture
def world(tmp_path: Path) -> CentralWorld:
    return make_central_world(tmp_path / "central", supervisors=("sam", "kim"))


@pytest.fixture
def central(world: CentralWorld, tmp_path: Path) -> Iterator[CentralProcess]:
    with CentralProcess(world.config_path, tmp_path).start() as process:
        yield process


def start_gate(
    launch: Launcher,
    world: CentralWorld,
    root: Path,
    url: str,
    *,
    decision: str | None = None,
    confirm_timeout_ms: int | None = None,
) -> tuple[GateProcess, str]:
    """north-1 syncing with ``url`` (heartbeat every second), its LAN API on a free port."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    lines = [
        "[lan]",
        f'listen = "127.0.0.1:{port}"',
        f'key = "{world.live.gate_keys["north-1"]}"',
        "[upstream]",
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in {"url": url, **SYNC}.items()]
    config = write_gate_config(
        root / "gate.toml",
        world.live,
        decision=decision,
        confirm_timeout_ms=confirm_timeout_ms,
        extra="\n".join(lines) + "\n",
    )
    gate = launch(config, name="north-1")
    wait_until(lambda: manifest_version(gate) == 1, CONVERGE, "north-1 to fetch the central's manifest")
    return gate, f"127.0.0.1:{port}"


def supervisor(world: CentralWorld, who: str = "sam") -> list[str]:
    return ["--key", str(world.live.supervisor_keys[who])]


def lane(gate: GateProcess) -> dict[str, Any]:
    found: dict[str, Any] = gate.status()["lane"]
    return found


def central_commands(central: CentralProcess) -> list[dict[str, Any]]:
    answer = httpx.get(f"{central.url}/v1/commands", params={"gate": "north-1"}).json()
    found: list[dict[str, Any]] = answer["commands"]
    return found


def test_a_lane_closed_through_the_central_holds_across_a_kill(
    world: CentralWorld, central: CentralProcess, launch: Launcher, tmp_path: Path
) -> None:
    gate, _ = start_gate(launch, world, tmp_path / "north-1", central.url)
    done = gatectl("lane", "north-1", "closed", *supervisor(world), "--central", central.url)
    assert done.returncode == 0, done.stderr
    assert "queued" in done.stdout
    wait_until(lambda: lane(gate)["state"] == "closed", CONVERGE, "the heartbeat to bring the command")
    assert lane(gate)["by"] == "sam"
    assert gate.scan(TICKET)["reason"] == "lane_closed"
    # The next heartbeat acknowledges it: the central stops sending it.
    wait_until(lambda: central_commands(central)[0]["acked_at"] is not None, CONVERGE, "the acknowledgement")
    listed = gatectl("commands", "north-1", "--central", central.url)
    assert listed.returncode == 0, listed.stderr
    assert "sam" in listed.stdout and "'closed'" in listed.stdout and "taken by the gate" in listed.stdout
    status = gatectl("status", "--socket", gate.socket_path)
    assert "lane      CLOSED by sam" in status.stdout, status.stdout
    # The central keeps what the gate said in its heartbeats: the fleet sees the lane.
    beat = lambda: central.heartbeats().get("north-1", (0, {}, {}))[2]  # noqa: E731
    wait_until(lambda: beat().get("lane", {}).get("state") == "closed", CONVERGE, "a heartbeat with the lane")

    gate.kill()
    gate = launch(gate.config, name="north-1-again")
    assert lane(gate)["state"] == "closed"
    assert gate.scan(TICKET)["reason"] == "lane_closed"
    rows = query(gate.ledger_path, "SELECT outcome, via, supervisor, value FROM commands")
    assert rows == [("applied", "central", "sam", "closed")]
    # The gate's evidence log of commands, read from its ledger file (the gate may be running).
    logged = gatectl("commands", "--ledger", str(gate.ledger_path))
    assert logged.returncode == 0, logged.stderr
    assert "central" in logged.stdout and "applied" in logged.stdout and "lane 'closed'" in logged.stdout
    assert "1 commands in" in logged.stdout
    as_json = json.loads(gatectl("commands", "--ledger", str(gate.ledger_path), "--json").stdout)
    assert [(r["outcome"], r["supervisor"], r["value"]) for r in as_json] == [("applied", "sam", "closed")]
    neither = gatectl("commands", "north-1")
    assert neither.returncode == 1 and "--central URL" in neither.stderr


def test_one_command_by_both_paths_is_applied_once(
    world: CentralWorld, central: CentralProcess, launch: Launcher, tmp_path: Path
) -> None:
    gate, address = start_gate(launch, world, tmp_path / "north-1", central.url)
    message = "Use the north doors"
    direct = gatectl("message", "north-1", message, *supervisor(world, "kim"), "--gate", address, "--json")
    assert direct.returncode == 0, direct.stderr
    answer = json.loads(direct.stdout)
    assert answer["applied"] is True and answer["state"]["message"] == message
    # The same signed envelope through the central: queued there, a no-op at the gate.
    envelope = query(gate.ledger_path, "SELECT nonce FROM commands")
    (nonce,) = envelope[0]
    posted = httpx.post(f"{central.url}/v1/commands", json=_envelope_sent(gate, nonce, world))
    assert posted.status_code == 200 and posted.json()["queued"] is True

    def acknowledged() -> bool:
        return central_commands(central)[0]["acked_at"] is not None

    wait_until(acknowledged, CONVERGE, "the gate to take the central's copy")
    outcomes = [row[0] for row in query(gate.ledger_path, "SELECT outcome, via FROM commands ORDER BY id")]
    assert outcomes == ["applied", "replayed"]
    assert lane(gate)["message"] == message


def _envelope_sent(gate: GateProcess, nonce: str, world: CentralWorld) -> dict[str, Any]:
    """The envelope the gate applied, rebuilt from its evidence row and signed again by kim (Ed25519 is
    deterministic: the same body and key make the same signature)."""
    from gate_daemon.core.commands import parse_command, sign
    from gate_daemon.provision.keyfiles import read_secret

    (row,) = query(
        gate.ledger_path,
        "SELECT supervisor, gate, kind, value, issued_ms FROM commands WHERE nonce = ?",
        nonce,
    )
    who, gate_id, kind, value, issued_ms = row
    body = {"v": 1, "event": world.live.event.event_id, "gate": gate_id, "kind": kind, "value": value}
    body |= {"supervisor": who, "issued_ms": issued_ms, "nonce": nonce}
    return sign(parse_command(body), read_secret(world.live.supervisor_keys[who])).envelope()


def test_gatectl_names_a_refusal_and_exits_1(
    world: CentralWorld, central: CentralProcess, launch: Launcher, tmp_path: Path
) -> None:
    gate, address = start_gate(launch, world, tmp_path / "north-1", central.url)
    # kim's key, claiming to be sam: the gate refuses it by name.
    forged = gatectl("lane", "north-1", "closed", *supervisor(world, "kim"), "--as", "sam", "--gate", address)
    assert forged.returncode == 1
    assert "bad_signature" in forged.stderr and "Traceback" not in forged.stderr
    # The central refuses it too, and keeps nothing.
    again = gatectl(
        "lane", "north-1", "closed", *supervisor(world, "kim"), "--as", "sam", "--central", central.url
    )
    assert again.returncode == 1 and "bad_signature" in again.stderr
    assert central_commands(central) == []
    wrong = gatectl("lane", "south-9", "closed", *supervisor(world), "--central", central.url)
    assert wrong.returncode == 1 and "wrong_gate" in wrong.stderr
    long = gatectl("message", "north-1", "x" * 141, *supervisor(world), "--gate", address)
    assert long.returncode == 1 and "bad_command" in long.stderr
    assert lane(gate) == {
        "state": "open", "since_ms": None, "by": None, "message": None, "mode_forced": None, "pending": None,
        "unverified": {"bad_signature": 1},  # the forged one: counted, never written
    }  # fmt: skip
    nothing = gatectl("confirm", "--socket", gate.socket_path)
    assert nothing.returncode == 1 and "nothing to confirm" in nothing.stdout


def test_a_supervisor_forces_an_online_first_gate_offline_and_back(
    world: CentralWorld, central: CentralProcess, launch: Launcher, tmp_path: Path
) -> None:
    gate, address = start_gate(launch, world, tmp_path / "north-1", central.url, decision="online-first")
    assert gate.status()["online"]["mode"] == "online"
    forced = gatectl("mode", "north-1", "offline", *supervisor(world), "--gate", address)
    assert forced.returncode == 0, forced.stderr
    status = gate.status()
    assert status["online"]["mode"] == "offline" and status["lane"]["mode_forced"] == "offline"
    decided = gate.scan(TICKET)
    assert decided["outcome"] == "allow"
    (route,) = query(gate.ledger_path, "SELECT mode FROM scans WHERE uuid = ?", decided["record_id"])[0]
    assert route == "offline"
    # It stays offline across a restart (the central answers well: the breaker alone would close).
    gate.kill()
    gate = launch(gate.config, name="north-1-again")
    assert gate.status()["online"]["mode"] == "offline"
    back = gatectl("mode", "north-1", "online", *supervisor(world), "--gate", address)
    assert back.returncode == 0, back.stderr
    assert gate.status()["online"]["mode"] == "online" and gate.status()["lane"]["mode_forced"] == "online"


def test_an_allow_held_when_the_gate_is_killed_is_voided_at_start(
    world: CentralWorld, central: CentralProcess, launch: Launcher, tmp_path: Path
) -> None:
    # Ten minutes to confirm: only the restart can void the allow in this test.
    gate, address = start_gate(launch, world, tmp_path / "north-1", central.url, confirm_timeout_ms=600_000)
    done = gatectl("lane", "north-1", "supervised", *supervisor(world), "--gate", address)
    assert done.returncode == 0, done.stderr
    assert gate.scan(TICKET)["reason"] == "ok"
    assert lane(gate)["pending"]["ticket"] == "L-0001"
    (uuid,) = query(gate.ledger_path, "SELECT uuid FROM scans WHERE ticket_id = 'L-0001'")[0]

    gate.kill()  # SIGKILL while the allow is held: nobody confirmed it, the turnstile stayed locked
    assert query(gate.ledger_path, "SELECT resolution FROM scans WHERE uuid = ?", uuid) == [("admitted",)]
    gate = launch(gate.config, name="north-1-again")
    assert query(gate.ledger_path, "SELECT resolution FROM scans WHERE uuid = ?", uuid) == [
        ("not_confirmed",)
    ]
    assert query(gate.ledger_path, "SELECT outcome, device FROM held WHERE scan_id = ?", uuid) == [
        ("not_confirmed", None)
    ]
    assert gate.counters()["lane:not_confirmed"] == 1
    # Its ticket is usable again; held again, and this time confirmed, by whom the ledger says.
    assert gate.scan(TICKET)["reason"] == "ok"
    confirmed = gatectl("confirm", "--socket", gate.socket_path)
    assert confirmed.returncode == 0, confirmed.stderr
    wait_until(
        lambda: gate.counters().get("lane:confirmed") == 1, CONVERGE, "the confirmation to be recorded"
    )
    rows = query(gate.ledger_path, "SELECT outcome, device FROM held WHERE scan_id != ?", uuid)
    assert len(rows) == 1 and rows[0][0] == "confirmed" and rows[0][1].startswith("gatectl:"), rows
