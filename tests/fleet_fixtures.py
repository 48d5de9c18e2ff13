"""A venue for the fleet's tests: a real ``gate-central`` and real gates that heartbeat to it.

Each gate also listens on the LAN (``/v1/status``), so ``gatectl fleet --gates`` can ask
it directly. The central calls a gate unreachable after ``SILENT_S`` without a heartbeat
(the gates beat every second), and serves the SOP cards shipped in ``config/sop``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gate_daemon.provision.keyfiles import write_keypair
from tests.central_fixtures import GATES, CentralWorld
from tests.central_process import CONVERGE, SYNC, CentralProcess, numbered_central_world
from tests.gate_process import GateProcess, Launcher, free_port, wait_until
from tests.live import event_toml, write_gate_config

ROOT = Path(__file__).resolve().parents[1]
#: The venue's supervisor (``sam.key`` beside the central's files).
SUPERVISOR = "sam"
#: Seconds without a heartbeat before the central calls a gate unreachable.
SILENT_S = 3


@dataclass
class Venue:
    """The central and the gates of one test; gates are started, killed and started again by id."""

    world: CentralWorld
    central: CentralProcess
    launch: Launcher
    root: Path
    ports: dict[str, int] = field(default_factory=dict)
    gates: dict[str, GateProcess] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)

    def address(self, gate_id: str) -> str:
        """Where the gate's LAN API listens."""
        return f"127.0.0.1:{self.ports[gate_id]}"

    def start(self, gate_id: str) -> GateProcess:
        """Start the gate (again); it fetches the central's manifest and heartbeats every second."""
        self.ports.setdefault(gate_id, free_port())
        folder = self.root / gate_id
        folder.mkdir(parents=True, exist_ok=True)
        lines = [
            "[lan]",
            f'listen = "{self.address(gate_id)}"',
            f'key = "{self.world.live.gate_keys[gate_id]}"',
            "[upstream]",
            f'url = "{self.central.url}"',
            *(f"{key} = {json.dumps(value)}" for key, value in SYNC.items()),
        ]
        config = write_gate_config(
            folder / "gate.toml", self.world.live, gate_id=gate_id, extra="\n".join(lines) + "\n"
        )
        count = self.starts.get(gate_id, 0)
        self.starts[gate_id] = count + 1
        gate = self.launch(config, name=gate_id if not count else f"{gate_id}-{count}")
        self.gates[gate_id] = gate
        wait_until(
            lambda: gate.status()["manifest"].get("version") == 1, CONVERGE, f"{gate_id} to get the manifest"
        )
        return gate

    def kill(self, gate_id: str) -> None:
        """kill -9 the gate: it stops answering and beating at once."""
        self.gates.pop(gate_id).kill()

    def wait_heard(self, *gate_ids: str) -> None:
        """Wait until the central holds a heartbeat of each gate in service, whose drain to it worked."""

        def well(status: dict[str, Any]) -> bool:
            manifest, upstream = status.get("manifest") or {}, status.get("upstream") or {}
            return status.get("in_service") is True and manifest.get("active") and upstream.get("up") is True

        def heard() -> bool:
            beats = self.central.heartbeats()
            return all(g in beats and well(beats[g][2]) for g in gate_ids)

        wait_until(heard, CONVERGE, f"heartbeats of {gate_ids} at the central")


def venue_world(root: Path) -> CentralWorld:
    """The central's files, with supervisor ``sam``, the shipped SOP cards and a short ``silent_s``."""
    world = numbered_central_world(root)
    world.live.supervisor_keys[SUPERVISOR] = write_keypair(root / SUPERVISOR)[0]
    (root / "event.toml").write_text(event_toml(world.live.now, GATES, (SUPERVISOR,)))
    shutil.copytree(ROOT / "config" / "sop", root / "sop")
    text = world.config_path.read_text()
    world.config_path.write_text(f'{text}sop = "sop"\n\n[fleet]\nsilent_s = {SILENT_S}\n')
    return world


@pytest.fixture
def venue(tmp_path: Path, launch: Launcher) -> Iterator[Venue]:
    """A running central (not yet any gate): ``venue.start("north-1")``."""
    world = venue_world(tmp_path / "central")
    with CentralProcess(world.config_path, tmp_path).start() as central:
        yield Venue(world, central, launch, tmp_path / "gates")
