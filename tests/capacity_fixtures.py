"""A gate with capacity, in this process on its real parts: the event file and the gate.

``capacity_event`` writes the live event (``tests.live``) with a venue and a floor
capacity and loads it back through ``provision.event``. ``capacity_gate`` opens one
gate as ``daemon.app.start`` wires it: a ledger on its own file, its manifest watch, the
gate service, its replication and capacity desk, and its LAN API on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gate_daemon.core.decision import Checkpoint, ScanKind
from gate_daemon.gate.manifest_watch import ManifestWatch
from gate_daemon.gate.scan import Gate
from gate_daemon.net.capacity import CapacityDesk
from gate_daemon.net.lan import LanServer, create_app
from gate_daemon.net.replication import Replication
from gate_daemon.provision.event import EventSpec, load_event
from gate_daemon.provision.keyfiles import read_public, read_secret
from gate_daemon.store.conflicts import entry_limit
from gate_daemon.store.ledger import Ledger
from tests.gate_fixtures import RecordingSignals
from tests.live import EVENT_ID, LiveWorld


def capacity_event(
    world: LiveWorld, *, venue: int | None = None, floor: int | None = None, mode: str | None = None
) -> EventSpec:
    """The live event with ``capacity = venue`` under ``[event]``, ``floor`` on the floor zone."""
    text = (world.dir / "event.toml").read_text()
    lines = [f"capacity = {venue}"] if venue is not None else []
    lines += [f'capacity_mode = "{mode}"'] if mode is not None else []
    text = text.replace('name = "Live Night"\n', 'name = "Live Night"\n' + "".join(f"{x}\n" for x in lines))
    if floor is not None:
        text = text.replace(
            'id = "floor"\nname = "Floor"\n', f'id = "floor"\nname = "Floor"\ncapacity = {floor}\n'
        )
    path = world.dir / "event-capacity.toml"
    path.write_text(text)
    return load_event(path)


@dataclass
class CapacityNode:
    """One gate's parts."""

    gate_id: str
    ledger: Ledger
    watch: ManifestWatch
    gate: Gate
    replication: Replication
    desk: CapacityDesk
    lan: LanServer


@asynccontextmanager
async def capacity_gate(
    world: LiveWorld, event: EventSpec, folder: Path, gate_id: str, *, tickets: str
) -> AsyncIterator[CapacityNode]:
    """A gate of ``event`` (a roster gate of ``world``), its LAN API on 127.0.0.1, until the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "drop.gdm").write_bytes(world.manifest(1, tickets_csv=tickets, event=event))
    ledger = await Ledger.open(
        folder / "ledger.sqlite",
        gate_id,
        entries_allowed=lambda ticket_id: entry_limit(watch.current, ticket_id),
    )
    try:
        checkpoint = Checkpoint("floor", None)
        watch = ManifestWatch(
            drop_path=folder / "drop.gdm",
            private_path=folder / "manifest.active",
            trusted=[read_public(world.signer_pub)],
            ledger=ledger,
            event_id=EVENT_ID,
            checkpoint=checkpoint,
        )
        await watch.start()
        assert watch.current is not None
        gate = Gate(
            gate_id=gate_id,
            event_id=EVENT_ID,
            checkpoint=checkpoint,
            kind=ScanKind.ENTRY,
            ledger=ledger,
            manifests=watch,
            signals=RecordingSignals(),
            repeat_window=0.0,
        )
        replication = Replication(ledger, read_secret(world.gate_keys[gate_id]), lambda: watch.current)
        desk = CapacityDesk(replication, gate.capacity, lambda: watch.current)

        async def status() -> dict[str, Any]:
            return {"gate": gate_id}

        lan = LanServer(create_app(status, replication=replication, capacity=desk))  # type: ignore[arg-type]
        await lan.start("127.0.0.1", 0)
        try:
            yield CapacityNode(gate_id, ledger, watch, gate, replication, desk, lan)
        finally:
            await lan.aclose()
    finally:
        await ledger.close()
