"""Strict capacity in real gate-daemon processes: a full gate fetches a place from its peer by itself.

Two real daemons on 127.0.0.1, peers of each other, with the floor's capacity 2 in strict
mode (one place each). Nothing drives the asks but the daemons: a refusal for want of a
place makes the gate ask its peer at once (``net.capacity.CapacityDesk.run``). What the
gates count shows in ``gatectl status``, ``--json`` and ``/metrics``.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.capacity_fixtures import capacity_event
from tests.gate_process import Launcher, free_port, gatectl, wait_until
from tests.live import make_live_world, payload, tickets_csv, write_gate_config

GATES = ("north-1", "north-2")


def share(status: dict[str, object]) -> int | None:
    found = [s for s in status["capacity"] if s["scope"] == "floor"]  # type: ignore[attr-defined, index]
    return found[0]["share"] if found else None  # type: ignore[no-any-return]


def test_a_full_gate_gets_a_place_from_its_peer_and_shows_its_count(tmp_path: Path, launch: Launcher) -> None:
    world = make_live_world(tmp_path / "world", gates=GATES)
    event = capacity_event(world, floor=2, mode="strict")
    manifest = world.manifest(1, tickets_csv=tickets_csv(5), event=event)
    ports = {gate: free_port() for gate in GATES}
    gates = {}
    for gate in GATES:
        folder = tmp_path / gate
        folder.mkdir()
        (folder / "drop.gdm").write_bytes(manifest)
        peers = ", ".join(f'"127.0.0.1:{ports[other]}"' for other in GATES if other != gate)
        lan = (
            f'[lan]\nlisten = "127.0.0.1:{ports[gate]}"\nkey = "{world.gate_keys[gate]}"\npeers = [{peers}]\n'
        )
        config = write_gate_config(folder / "gate.toml", world, gate_id=gate, extra=lan)
        gates[gate] = launch(config, name=gate)
    one, two = gates["north-1"], gates["north-2"]
    for gate in gates.values():
        gate.wait_ready()
    wait_until(lambda: all(p["up"] for g in gates.values() for p in g.status()["replication"]["peers"]))
    assert share(one.status()) == 1 and share(two.status()) == 1

    assert one.scan(payload(1))["reason"] == "ok"
    full = one.scan(payload(2))
    assert (full["outcome"], full["reason"]) == ("too_early", "venue_full"), full
    # Refused for want of a place, north-1 asks north-2, which gives its one place.
    wait_until(lambda: share(one.status()) == 1, what="north-1 to receive north-2's place")
    assert one.scan(payload(2))["reason"] == "ok"
    shown = gatectl("status", "--socket", one.socket_path)
    assert shown.returncode == 0, shown.stderr
    assert "capacity  zone floor: 2 of 2 inside (strict, 0 places held here)" in shown.stdout
    assert {s["scope"] for s in one.status()["capacity"]} == {"floor"}  # no venue capacity set
    assert share(two.status()) == 0
    assert two.scan(payload(3))["reason"] == "venue_full"
    # Someone leaves through north-2: a place there again.
    wait_until(lambda: two.status()["capacity"][0]["inside"] == 2, what="north-2 to learn both entries")
    assert two.scan(payload(1), kind="exit")["reason"] == "ok"
    assert two.scan(payload(3))["reason"] == "ok"

    with urllib.request.urlopen(f"http://127.0.0.1:{ports['north-2']}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found = {
        (sample.name, sample.labels.get("scope")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("gate_capacity")
    }
    assert found[("gate_capacity", "floor")] == 2
    assert found[("gate_capacity_inside", "floor")] == 2
    assert found[("gate_capacity_share", "floor")] == 0
