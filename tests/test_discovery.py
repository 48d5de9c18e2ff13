"""Peers found with zeroconf (real mDNS on 127.0.0.1): they link up, and still have to sign."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gate_daemon.config.load import load_config
from gate_daemon.daemon import app
from gate_daemon.errors import SourceError
from gate_daemon.net.discovery import Discovery
from gate_daemon.provision.keyfiles import write_keypair
from tests.gate_fixtures import serving_config
from tests.live import LiveWorld, make_live_world, write_gate_config
from tests.waiting import eventually


@contextlib.asynccontextmanager
async def discovering(
    tmp_path: Path, world: LiveWorld, gate: str, key: Path
) -> AsyncIterator[app.RunningGate]:
    extra = f'[lan]\nlisten = "127.0.0.1:0"\nkey = "{key}"\ndiscover = true\npull_interval_ms = 200\n'
    (tmp_path / gate).mkdir()
    path = write_gate_config(
        tmp_path / gate / "gate.toml", world, gate_id=gate, manifest_path=tmp_path / "drop.gdm", extra=extra
    )
    async with serving_config(load_config(path, {})) as running:
        yield running


async def test_gates_of_one_event_find_each_other_and_share_a_ticket(tmp_path: Path) -> None:
    world = make_live_world(tmp_path / "world", gates=("gate-a", "gate-b"))
    (tmp_path / "drop.gdm").write_bytes(world.manifest(1))
    async with (
        discovering(tmp_path, world, "gate-a", world.gate_keys["gate-a"]) as a,
        discovering(tmp_path, world, "gate-b", world.gate_keys["gate-b"]) as b,
    ):
        assert a.replicator is not None and b.replicator is not None
        replicator = b.replicator
        await eventually(lambda: any(p.state.up for p in replicator.peers))
        payload = world.sign("L-0001")
        assert (await a.gate.scan(payload, device="t")).decision.outcome.value == "allow"
        await eventually(lambda: b.ledger.held().get((a.ledger.gate_id, a.ledger.epoch)) == 1)
        answer = await b.gate.scan(payload, device="t")
        assert answer.decision.outcome.value == "already_used"
        assert answer.as_dict()["last_entry_gate"] == "gate-a"


async def test_an_announced_gate_outside_the_roster_is_not_linked(tmp_path: Path) -> None:
    world = make_live_world(tmp_path / "world", gates=("gate-a",))
    (tmp_path / "drop.gdm").write_bytes(world.manifest(1))
    found: list[tuple[str, str]] = []
    async with discovering(tmp_path, world, "gate-a", world.gate_keys["gate-a"]) as a:
        assert a.replicator is not None
        # Another machine announcing itself as a gate of this event, with no roster key.
        intruder = Discovery(
            gate_id="gate-z", event_id=world.event.event_id, host="127.0.0.1", port=9, found=lambda *f: None
        )
        watcher = Discovery(
            gate_id="watcher",
            event_id=world.event.event_id,
            host="127.0.0.1",
            port=9,
            found=lambda gate, address: found.append((gate, address)),
        )
        await intruder.start()
        await watcher.start()
        try:
            await eventually(
                lambda: {g for g, _ in found} >= {"gate-a", "gate-z"}
            )  # the announcement is seen
            await asyncio.sleep(0.2)
            assert [p.address for p in a.replicator.peers] == []  # but gate-a links to no one
        finally:
            await intruder.aclose()
            await watcher.aclose()


def test_discover_needs_a_key_and_an_address(tmp_path: Path) -> None:
    world = make_live_world(tmp_path / "world")
    path = write_gate_config(tmp_path / "gate.toml", world, extra="[lan]\ndiscover = true\n")
    with pytest.raises(SourceError) as caught:
        load_config(path, {})
    assert "lan.discover" in str(caught.value) and "key" in str(caught.value)


async def test_a_stray_key_in_discover_mode_still_starts(tmp_path: Path) -> None:
    # A gate whose key the roster does not list still discovers, and says why it cannot share.
    world = make_live_world(tmp_path / "world", gates=("gate-a",))
    (tmp_path / "drop.gdm").write_bytes(world.manifest(1))
    key = write_keypair(tmp_path / "stray")[0]
    async with discovering(tmp_path, world, "gate-q", key) as q:
        status = await q.status.snapshot()
        assert "not in the manifest's roster" in status["replication"]["problem"]
