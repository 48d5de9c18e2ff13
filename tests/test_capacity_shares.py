"""Strict capacity's initial split is signed once and carried forward: a roster change
(a gate enrolled mid-event) never moves places under the gates' feet, and the pretix
bridge's roster gate holds none (docs/CAPACITY.md, "Changing the capacity or the roster").

Through real manifests: ``gatectl manifest build`` (full, then deltas from a base), the
central's ``ManifestBook`` on its real files and database, and a real gate.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

from gate_daemon.central.pretix.mapping import BRIDGE_GATE
from gate_daemon.cli.gatectl import main
from gate_daemon.core.capacity import NO_SHARES, VENUE, Limits, carried
from gate_daemon.core.manifest import open_manifest, peek_header
from gate_daemon.core.manifest_header import Header, RosterGate
from gate_daemon.core.reasons import Reason
from gate_daemon.provision.event import load_event
from gate_daemon.provision.keyfiles import write_keypair
from tests.capacity_fixtures import capacity_gate
from tests.central_fixtures import make_central_world, serving
from tests.live import LiveWorld, make_live_world, payload, tickets_csv

GATES = ("g1", "g2", "g3", "g4", "g5")
STRICT = 'name = "Live Night"\ncapacity = {n}\ncapacity_mode = "strict"\n'


def event_file(world: LiveWorld, name: str, *, capacity: int, gates: tuple[str, ...]) -> Path:
    """The live event with a strict venue capacity and only ``gates`` of the roster."""
    text = (world.dir / "event.toml").read_text()
    text = text.replace('name = "Live Night"\n', STRICT.format(n=capacity))
    for gate in GATES:
        if gate not in gates:
            text = text.replace(f'\n[[gates]]\nid = "{gate}"\npub = "{gate}.pub"\n', "")
    path = world.dir / name
    path.write_text(text)
    return path


def build(world: LiveWorld, event: Path, version: int, base: Path | None = None) -> Header:
    out = world.dir / f"v{version}.gdm"
    args = ["manifest", "build", "--event", str(event), "--tickets", str(world.dir / "tickets.csv")]
    args += ["--key", str(world.dir / "signer.key"), "--version", str(version), "-o", str(out)]
    args += ["--base", str(base)] if base is not None else []
    assert main(args) == 0
    return peek_header(out.read_bytes())[1]


def initial(header: Header, gate: str) -> int:
    limits = Limits.of(header)
    assert limits is not None and limits.strict
    return limits.initial(limits.limits[0], gate)


def most_held(versions: list[Header]) -> int:
    """The most places the gates can hold between them, each gate on any of ``versions``."""
    return max(
        sum(initial(header, gate) for header, gate in zip(chosen, GATES, strict=True))
        for chosen in itertools.product(versions, repeat=len(GATES))
    )


def test_a_gate_enrolled_later_starts_at_0_and_no_mix_of_versions_holds_more(tmp_path: Path) -> None:
    world = make_live_world(tmp_path, gates=GATES)
    (world.dir / "tickets.csv").write_text(tickets_csv(4))
    v1 = build(world, event_file(world, "v1.toml", capacity=100, gates=GATES[:4]), 1)
    assert v1.capacity_shares == {VENUE: {"g1": 25, "g2": 25, "g3": 25, "g4": 25}}
    # A fifth gate joins the roster: the split stays as signed, the newcomer holds none.
    v2 = build(world, event_file(world, "v2.toml", capacity=100, gates=GATES), 2, base=world.dir / "v1.gdm")
    assert v2.capacity_shares == v1.capacity_shares
    assert initial(v2, "g5") == 0 and initial(v2, "g1") == 25
    assert most_held([v1, v2]) == 100  # was 105: g1 on v1 (25) and four on v2's even split (20)
    # The capacity raised by 10: the 10 spread over the holders, each share only grows.
    v3 = build(world, event_file(world, "v3.toml", capacity=110, gates=GATES), 3, base=world.dir / "v1.gdm")
    assert v3.capacity_shares == {VENUE: {"g1": 28, "g2": 28, "g3": 27, "g4": 27}}
    assert most_held([v2, v3]) == 110
    # Lowered by 10 instead: each share only shrinks, so a mix holds no more than the larger limit.
    v4 = build(world, event_file(world, "v4.toml", capacity=90, gates=GATES), 4, base=world.dir / "v1.gdm")
    assert v4.capacity_shares == {VENUE: {"g1": 23, "g2": 23, "g3": 22, "g4": 22}}
    assert most_held([v2, v4]) == 100 and most_held([v4]) == 90


def test_carried_keeps_the_split_and_moves_each_share_one_way() -> None:
    prior = {"a": 3, "b": 0, "c": 7}
    assert carried(prior, 10, ("a", "b", "c", "d")) == prior
    assert carried(None, 10, ("c", "a", "b")) == {"a": 4, "b": 3, "c": 3}
    assert carried(prior, 13, ("a",)) == {"a": 4, "b": 1, "c": 8}
    assert carried(prior, 5, ("a",)) == {"a": 2, "b": -2, "c": 5}  # a share may go below 0


def test_the_pretix_bridges_roster_gate_holds_no_share(tmp_path: Path) -> None:
    assert BRIDGE_GATE in NO_SHARES
    world = make_live_world(tmp_path, gates=("g1", "g2"))
    _, _, bridge = write_keypair(world.dir / "bridge")
    event = load_event(event_file(world, "strict.toml", capacity=9, gates=("g1", "g2")))
    event = dataclasses.replace(event, gates=(*event.gates, RosterGate(BRIDGE_GATE, bridge.public)))
    header = open_manifest(world.manifest(event=event), [world.signer.public]).header
    assert header.capacity_shares == {VENUE: {"g1": 5, "g2": 4}}
    assert initial(header, BRIDGE_GATE) == 0


async def test_the_central_carries_the_split_when_its_roster_grows(tmp_path: Path) -> None:
    world = make_central_world(tmp_path)
    path = world.live.dir / "event.toml"
    path.write_text(path.read_text().replace('name = "Live Night"\n', STRICT.format(n=101)))
    async with serving(world) as running:
        book = running.central.book
        assert book.latest is not None
        first = book.latest.header
        assert first.capacity_shares == {VENUE: {"north-1": 51, "south-1": 50}}
        write_keypair(world.live.dir / "east-1")
        path.write_text(path.read_text() + '\n[[gates]]\nid = "east-1"\npub = "east-1.pub"\n')
        assert await book.refresh()
        assert book.latest.header.version == first.version + 1
        assert [g.id for g in book.latest.header.gates][-1] == "east-1"
        assert book.latest.header.capacity_shares == first.capacity_shares
        # A gate on the first version is served a delta whose header carries the same split.
        served = await book.serve(first.version)
        assert served.kind == "delta" and served.data is not None
        assert peek_header(served.data)[1].capacity_shares == first.capacity_shares


async def test_a_gate_outside_the_signed_split_refuses_until_granted_places(tmp_path: Path) -> None:
    world = make_live_world(tmp_path / "world", gates=GATES)
    event = load_event(event_file(world, "v1.toml", capacity=8, gates=GATES[:4]))
    signed = open_manifest(world.manifest(event=event), [world.signer.public]).header.capacity_shares
    grown = dataclasses.replace(load_event(event_file(world, "v2.toml", capacity=8, gates=GATES)))
    grown = dataclasses.replace(grown, capacity_shares=signed)
    async with capacity_gate(world, grown, tmp_path / "g5", "g5", tickets=tickets_csv(2)) as node:
        refused = await node.gate.scan(payload(1), device="t")
        assert refused.decision.reason is Reason.VENUE_FULL
        assert "this gate's places are taken" in refused.decision.message
        assert node.gate.capacity.status(node.watch.current)[0]["share"] == 0
