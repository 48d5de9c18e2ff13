"""The status snapshot served as JSON has exactly the keys its types declare, part by part."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from gate_daemon.config.load import load_config
from gate_daemon.core import snapshot
from gate_daemon.hardware.picamera_input import CameraStats
from tests.gate_fixtures import serving_config
from tests.live import make_live_world, write_gate_config

PARTS = """
[turnstile]
relay = "GPIO24"
passage = "GPIO25"
[lan]
listen = "127.0.0.1:0"
key = "{key}"
peers = ["127.0.0.1:9"]
[upstream]
url = "http://127.0.0.1:9"
breaker_failures = 1
"""


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    made = MockFactory(pin_class=MockPWMPin)
    yield made
    made.close()


def keys_of(value: Mapping[str, Any], shape: Any) -> None:
    required, optional = shape.__required_keys__, shape.__optional_keys__
    assert required <= set(value) <= required | optional, (shape.__name__, sorted(value))


async def test_every_part_of_a_served_status_has_its_declared_keys(tmp_path: Path, pins: MockFactory) -> None:
    live = make_live_world(tmp_path / "world", gates=("north-1", "north-2"))
    (tmp_path / "drop.gdm").write_bytes(live.manifest(1))
    (tmp_path / "frames").mkdir()
    path = write_gate_config(
        tmp_path / "gate.toml",
        live,
        signals="gpio",
        input_kind="images",
        images=tmp_path / "frames",
        decision="online-first",
        extra=PARTS.format(key=live.gate_keys["north-1"]),
    )
    async with serving_config(load_config(path, {}), pin_factory=pins) as running:
        # The central is down: decided here, and online-first switches offline at once.
        await running.gate.scan("A100-2", device="test")
        assert running.online is not None and running.online.last_switch is not None
        assert running.lan is not None
        status = f"http://127.0.0.1:{running.lan.port}/v1/status"
        async with aiohttp.ClientSession() as http, http.get(status) as response:
            served = await response.json()
    keys_of(served, snapshot.GateSnapshot)
    keys_of(served["manifest"], snapshot.ManifestStatus)
    assert "version" in served["manifest"]
    keys_of(served["turnstile"], snapshot.TurnstileStatus)
    keys_of(served["input_state"], snapshot.InputStatus)
    keys_of(served["ledger"], snapshot.LedgerStatus)
    keys_of(served["clock"], snapshot.ClockStatus)
    replication = served["replication"]
    keys_of(replication, snapshot.ReplicationStatus)
    (peer,) = replication["peers"]
    keys_of(peer, snapshot.PeerStatus)
    upstream = served["upstream"]
    keys_of(upstream, snapshot.UpstreamStatus)
    for loop in upstream["loops"].values():
        keys_of(loop, snapshot.LoopStatus)
    keys_of(served["online"], snapshot.OnlineStatus)
    keys_of(served["online"]["last_switch"], snapshot.SwitchStatus)
    assert served["counters"]["scans"] == 1
    keys_of(served["lane"], snapshot.LaneStatus)
    assert served["lane"]["state"] == "open"


def test_the_camera_part_names_every_camera_stat() -> None:
    stats = CameraStats()
    assert set(stats.as_dict()) == {f.name for f in dataclasses.fields(stats)}
    keys_of(stats.as_dict(), snapshot.CameraStatus)
