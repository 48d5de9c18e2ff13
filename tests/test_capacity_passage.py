"""Capacity at the door: a supervisor's forced entry is weighed like any entry, and a
passage counts in the zone of the gate it goes through.

Through a real gate (``gate.scan.Gate``) on its real ledger file and manifest watch, with
a real staff key and badges (``tests.staff_fixtures``): docs/CAPACITY.md, "The refusal"
and "Counting who is inside".
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gate_daemon.core.badges import Role
from gate_daemon.core.capacity import VENUE, Tally
from gate_daemon.core.decision import ScanKind
from gate_daemon.core.reasons import Reason
from gate_daemon.provision.event import EventSpec
from gate_daemon.provision.keyfiles import write_keypair
from gate_daemon.store.ledger import Ledger
from gate_daemon.store.offline_reads import read_overrides
from tests.capacity_fixtures import capacity_event, capacity_gate
from tests.live import EVENT_ID, LiveWorld, make_live_world, payload, ticket, tickets_csv
from tests.staff_fixtures import Staff


def with_staff(world: LiveWorld, event: EventSpec) -> tuple[EventSpec, Staff]:
    """``event`` listing a staff key, and the badges that key signs."""
    key_path, pub_path, key = write_keypair(world.dir / "staff")
    return dataclasses.replace(event, staff_keys=(key.public,)), Staff(key, key_path, pub_path, b"")


@pytest.mark.parametrize("mode", ["count", "strict"])
async def test_a_supervisors_override_does_not_overfill_a_full_venue(tmp_path: Path, mode: str) -> None:
    world = make_live_world(tmp_path / "world", gates=("g1",))
    event, staff = with_staff(world, capacity_event(world, venue=1, mode=mode))
    boss = staff.badge("sam", Role.SUPERVISOR, event=EVENT_ID)
    async with capacity_gate(world, event, tmp_path / "g1", "g1", tickets=tickets_csv(3)) as node:
        assert (await node.gate.scan(payload(1), device="t")).decision.reason is Reason.OK
        again = await node.gate.scan(payload(1), device="t")
        assert again.decision.reason is Reason.ALREADY_USED
        forced = await node.gate.scan(boss, device="t")
        # Refused by name, with the count; nobody admitted, the relay untouched.
        assert forced.decision.reason is Reason.VENUE_FULL, forced.decision
        assert forced.decision.message.startswith("Override refused: Venue full: 1 of 1 inside")
        assert forced.decision.staff == "sam" and forced.decision.ticket_id == ticket(1)
        venue = node.ledger.occupancy.tallies[VENUE]
        assert venue.inside == 1 and venue.own_entries == 1
        assert read_overrides(node.ledger.path) == []
        if mode == "strict":
            assert node.gate.capacity.status(node.watch.current)[0]["share"] == 0  # never below
        # Once someone has left, the supervisor's badge admits again.
        assert (await node.gate.scan(payload(1), device="t", kind=ScanKind.EXIT)).decision.reason is Reason.OK
        refused = await node.gate.scan(payload(1), device="t")
        assert refused.decision.reason is Reason.ALREADY_USED
        admitted = await node.gate.scan(boss, device="t")
        assert admitted.decision.reason is Reason.OVERRIDDEN, admitted.decision
        assert node.ledger.occupancy.tallies[VENUE].inside == 1
        assert len(read_overrides(node.ledger.path)) == 1


async def test_an_override_at_a_full_zone_is_refused_and_the_zones_count_holds(tmp_path: Path) -> None:
    world = make_live_world(tmp_path / "world", gates=("g1",))
    event, staff = with_staff(world, capacity_event(world, floor=1, mode="count"))
    boss = staff.badge("sam", Role.SUPERVISOR, event=EVENT_ID)
    async with capacity_gate(world, event, tmp_path / "g1", "g1", tickets=tickets_csv(3)) as node:
        assert (await node.gate.scan(payload(1), device="t")).decision.reason is Reason.OK
        assert (await node.gate.scan(payload(1), device="t")).decision.reason is Reason.ALREADY_USED
        forced = await node.gate.scan(boss, device="t")
        assert forced.decision.reason is Reason.VENUE_FULL
        assert "Zone Floor full: 1 of 1 inside" in forced.decision.message
        assert node.ledger.occupancy.tallies["floor"].inside == 1


def zoneless_tickets(count: int) -> str:
    """``tickets_csv(count)`` whose tickets name no zone: valid at any entrance."""
    return tickets_csv(count).replace(",now,floor,", ",now,,")


async def test_a_zoneless_ticket_at_a_zones_gate_counts_against_that_zone(tmp_path: Path) -> None:
    world = make_live_world(tmp_path / "world", gates=("g1",))
    event = capacity_event(world, floor=2, mode="count")
    async with capacity_gate(world, event, tmp_path / "g1", "g1", tickets=zoneless_tickets(4)) as node:
        assert node.gate.checkpoint.zone == "floor"
        for n in (1, 2):
            entered = await node.gate.scan(payload(n), device="t")
            assert entered.decision.reason is Reason.OK and entered.decision.zone == "floor"
        full = await node.gate.scan(payload(3), device="t")
        assert full.decision.reason is Reason.VENUE_FULL, full.decision
        assert full.decision.message == "Zone Floor full: 2 of 2 inside"
        # An exit through the floor's gate frees a place of the floor.
        left = await node.gate.scan(payload(1), device="t", kind=ScanKind.EXIT)
        assert left.decision.reason is Reason.OK and left.decision.zone == "floor"
        assert node.ledger.occupancy.tallies["floor"] == Tally(inside=1, own_entries=2, own_exits=1)
        assert (await node.gate.scan(payload(3), device="t")).decision.reason is Reason.OK
        in_memory = dict(node.ledger.occupancy.tallies)
        path = node.ledger.path
    # The file's triggers counted the same (the recorded decision names the gate's zone).
    reopened = await Ledger.open(path, "g1")
    try:
        assert reopened.occupancy.tallies == in_memory
    finally:
        await reopened.close()
