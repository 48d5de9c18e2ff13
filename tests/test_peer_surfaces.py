"""What fleet ops and venue techs see of replication: metrics, status, conflicts report, check-config."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gate_daemon.cli import daemon
from gate_daemon.cli.gatectl import main as gatectl_main
from gate_daemon.config.load import load_config
from gate_daemon.core.hlc import Stamp
from gate_daemon.core.records import Redemption
from gate_daemon.daemon import app
from gate_daemon.daemon.systemd import Notifier
from gate_daemon.provision.keyfiles import read_secret, write_keypair
from gate_daemon.store.ledger import Ledger
from tests.live import LiveWorld, make_live_world, write_gate_config
from tests.waiting import eventually

GATES = ("gate-a", "gate-b", "gate-c")


@pytest.fixture
def roster_world(tmp_path: Path) -> LiveWorld:
    world = make_live_world(tmp_path / "world", gates=GATES)
    (tmp_path / "drop.gdm").write_bytes(world.manifest(1))
    return world


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def lan(world: LiveWorld, gate: str, port: int, peers: list[int]) -> str:
    listed = ", ".join(f'"127.0.0.1:{p}"' for p in peers)
    return (
        f'[lan]\nlisten = "127.0.0.1:{port}"\nkey = "{world.gate_keys[gate]}"\n'
        f"peers = [{listed}]\npull_interval_ms = 200\ntimeout_ms = 1000\n"
    )


@contextlib.asynccontextmanager
async def gates(
    tmp_path: Path, world: LiveWorld, peers: dict[str, list[str]]
) -> AsyncIterator[dict[str, app.RunningGate]]:
    ports = {gate: free_port() for gate in peers}
    running: dict[str, app.RunningGate] = {}
    tasks = {}
    stop = asyncio.Event()
    try:
        for gate, others in peers.items():
            extra = lan(world, gate, ports[gate], [ports[o] for o in others])
            path = write_gate_config(
                tmp_path / gate / "gate.toml",
                world,
                gate_id=gate,
                manifest_path=tmp_path / "drop.gdm",
                extra=extra,
            )
            running[gate] = await app.start(load_config(path, {}))
            tasks[gate] = asyncio.create_task(app.serve(running[gate], Notifier(None), stop))
        yield running
    finally:
        stop.set()
        for task in tasks.values():
            assert await task == 0


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_and_status_show_the_peer_links(
    tmp_path: Path, roster_world: LiveWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "gate-a").mkdir()
    (tmp_path / "gate-b").mkdir()
    async with gates(tmp_path, roster_world, {"gate-a": ["gate-b"], "gate-b": ["gate-a"]}) as running:
        a, b = running["gate-a"], running["gate-b"]
        payload = roster_world.sign("L-0002")
        assert (await a.gate.scan(payload, device="test")).decision.outcome.value == "allow"
        await eventually(lambda: b.ledger.held().get((a.ledger.gate_id, a.ledger.epoch)) == 1)
        answer = await b.gate.scan(payload, device="test")
        assert answer.decision.outcome.value == "already_used"
        assert answer.as_dict()["last_entry_gate"] == "gate-a"

        assert b.lan is not None and b.status.replication is not None
        replication = b.status.replication
        await eventually(lambda: "gate-a" in replication.callers)  # A's link came up (pushes or pulls)
        metrics_url = f"http://127.0.0.1:{b.lan.port}/metrics"
        async with aiohttp.ClientSession() as http, http.get(metrics_url) as response:
            seen = samples(await response.text())
        peer_a = f"127.0.0.1:{a.lan.port if a.lan else 0}"
        assert seen[("gate_replication_ok", ())] == 1
        assert seen[("gate_peer_up", (("peer", peer_a),))] == 1
        assert seen[("gate_replicated_records_total", (("result", "applied"),))] == 1
        assert seen[("gate_conflicts", ())] == 0
        assert ("gate_peer_clock_offset_seconds", (("gate", "gate-a"),)) in seen
        assert seen[("gate_peer_lag_seconds", (("peer", peer_a),))] >= 0
        assert seen[("gate_peer_pushed_records_total", (("peer", peer_a),))] == 0  # B admitted no one

        shown = (await b.status.snapshot())["replication"]
        assert shown["problem"] is None and shown["callers"]["gate-a"]["requests"] >= 1
        assert [p["gate"] for p in shown["peers"]] == ["gate-a"]

        code = await asyncio.to_thread(gatectl_main, ["status", "--socket", str(b.config.control.socket)])
        out = capsys.readouterr().out
        assert code == 0
        assert "peers     key " in out and f"{peer_a} (gate-a)" in out and " up, " in out


async def test_a_gate_outside_the_roster_says_so_and_keeps_scanning(tmp_path: Path) -> None:
    world = make_live_world(tmp_path / "world", gates=("gate-a",))
    (tmp_path / "drop.gdm").write_bytes(world.manifest(1))
    stranger = tmp_path / "stranger"
    key_path = write_keypair(stranger)[0]
    extra = f'[lan]\nlisten = "127.0.0.1:0"\nkey = "{key_path}"\n'
    (tmp_path / "g").mkdir()
    path = write_gate_config(
        tmp_path / "g" / "gate.toml",
        world,
        gate_id="gate-x",
        manifest_path=tmp_path / "drop.gdm",
        extra=extra,
    )
    running = await app.start(load_config(path, {}))
    stop = asyncio.Event()
    task = asyncio.create_task(app.serve(running, Notifier(None), stop))
    try:
        status = await running.status.snapshot()
        assert "not in the manifest's roster" in status["replication"]["problem"]
        assert status["in_service"] is True  # sharing is off; the gate still decides locally
        assert (await running.gate.scan(world.sign("L-0001"), device="t")).decision.outcome.value == "allow"
    finally:
        stop.set()
        assert await task == 0


def _record(key_path: Path, origin: str, ticket: str, at_ms: int, seq: int = 1) -> tuple[Redemption, str]:
    record = Redemption(
        uuid=str(uuid.uuid4()),
        ticket_id=ticket,
        kind="entry",
        slot=1,
        origin=origin,
        epoch=f"epoch-{origin}",
        seq=seq,
        hlc=Stamp(at_ms, 0).packed,
        wall=at_ms / 1000,
        operator=None,
        mode="offline",
    )
    return record, record.sign(read_secret(key_path))


async def test_gatectl_report_conflicts_lists_the_entry_that_stands_and_the_one_that_should_not_have(
    tmp_path: Path, roster_world: LiveWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    now_ms = int(time.time() * 1000)
    first = _record(roster_world.gate_keys["gate-b"], "gate-b", "L-0001", now_ms - 60_000)
    second = _record(roster_world.gate_keys["gate-c"], "gate-c", "L-0001", now_ms - 30_000)
    ledger = await Ledger.open(tmp_path / "ledger.sqlite", "gate-a")
    try:
        learned = await ledger.learn([second, first], now=time.time())
        assert learned.conflicts == 1
    finally:
        await ledger.close()

    assert gatectl_main(["report", "conflicts", "--ledger", str(tmp_path / "ledger.sqlite")]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("L-0001"))
    assert line.index("gate-b") < line.index("gate-c")  # the earlier entry stands
    assert "1 conflict" in out

    assert gatectl_main(["report", "conflicts", "--json", "--ledger", str(tmp_path / "ledger.sqlite")]) == 0
    (item,) = json.loads(capsys.readouterr().out)
    assert (item["stands"]["gate"], item["conflict"]["gate"]) == ("gate-b", "gate-c")
    assert item["stands"]["uuid"] == first[0].uuid and item["conflict"]["uuid"] == second[0].uuid


def test_report_conflicts_on_a_clean_ledger_says_there_are_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def make() -> None:
        await (await Ledger.open(tmp_path / "ledger.sqlite", "gate-a")).close()

    asyncio.run(make())
    assert gatectl_main(["report", "conflicts", "--ledger", str(tmp_path / "ledger.sqlite")]) == 0
    assert "no conflicts" in capsys.readouterr().out


def test_check_config_reads_the_gate_key_and_the_roster(
    tmp_path: Path, roster_world: LiveWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    key = roster_world.gate_keys["gate-b"]  # gate-a's config with gate-b's key
    extra = f'[lan]\nlisten = "127.0.0.1:8443"\nkey = "{key}"\n'
    cfg = write_gate_config(
        tmp_path / "gate.toml",
        roster_world,
        gate_id="gate-a",
        manifest_path=tmp_path / "drop.gdm",
        extra=extra,
    )
    assert daemon.main(["check-config", str(cfg)]) == 0
    err = capsys.readouterr().err
    assert "lan.key" in err and "lists another key" in err and "gate-a" in err

    os.chmod(key, 0o640)
    assert daemon.main(["check-config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert f"{cfg}:" in err and "lan.key" in err and "chmod 600" in err
