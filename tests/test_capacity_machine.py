"""Strict capacity across gates on real sockets: partitions, entries, exits and places moving.

Each gate runs in this process on its own real parts (``tests.capacity_fixtures``): a
ledger on its own SQLite file, its manifest watch, the gate service, its LAN API on
127.0.0.1 with the capacity route, its replicator; every gate reaches every other
through a ``tests.link_proxy.Link`` per directed pair, which a rule cuts or heals. The
asks for places are run by the rules (``CapacityDesk.rebalance``), not by a timer, so
each example is the same whatever the machine's speed.

The people are modelled here: one person per re-entry ticket, who enters only while
outside and leaves only while inside, and moves only when the gate says ``ok``. A
supervisor may force someone in (the ticket of someone inside, refused ``already_used``
at the gate they entered by, then a supervisor's badge): ``overridden`` puts one more
person inside, who never leaves; ``venue_full`` puts nobody in.

What must hold:

- after every step: the people inside never exceed the capacity, no share is below
  zero, and the shares every gate holds, added to the people inside, never exceed the
  capacity either (a grant counts at its giver from the moment it is written, at its
  receiver only once held); no gate has more than one ask open per peer, however many
  rounds it asks while cut off;
- once every link is healed and the asks left open are sent again: the shares and the
  people inside add up to the capacity exactly (no place lost), and entries at one gate,
  asking the peers whenever it is full, admit exactly the capacity minus those inside.

Settings: 3 to 5 gates, capacity 7 of the floor, 14 people; 15 examples of at most 20
steps (well under a minute on the dev machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import time
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from gate_daemon.core.badges import Role
from gate_daemon.core.capacity import Tally
from gate_daemon.core.decision import ScanKind
from gate_daemon.core.reasons import Reason
from gate_daemon.net.peers import Replicator
from gate_daemon.provision.event import EventSpec
from gate_daemon.provision.keyfiles import write_keypair
from gate_daemon.store.capacity_grants import open_asks
from tests.capacity_fixtures import CapacityNode, capacity_event, capacity_gate
from tests.link_proxy import Link
from tests.live import EVENT_ID, LiveWorld, make_live_world
from tests.loop_thread import LoopThread
from tests.staff_fixtures import Staff

GATE_IDS = ("gate-1", "gate-2", "gate-3", "gate-4", "gate-5")
CAPACITY = 7
PEOPLE = 14
PULL_INTERVAL = 0.15
PEER_TIMEOUT = 2.0
SETTLE_WITHIN = 30.0


def people_csv(count: int) -> str:
    """One re-entry ticket of the floor per person: person ``n`` scans ``R<n>-1``."""
    rows = ["ticket_id,order_id,seat,status,session,zone,entries,code"]
    rows += [f"R-{n},R{n},1,completed,now,floor,reentry," for n in range(count)]
    return "\n".join(rows) + "\n"


def person(n: int) -> str:
    return f"R{n}-1"


class Venue:
    """Gates of one event, each linked to every other through a cuttable link."""

    def __init__(self, loop: LoopThread, world: LiveWorld, event: EventSpec, root: Path, people: int) -> None:
        self.loop = loop
        self.world = world
        self.event = event
        self.root = root
        self.tickets = people_csv(people)
        self.nodes: list[CapacityNode] = []
        self.replicators: list[Replicator] = []
        self.links: dict[tuple[int, int], Link] = {}
        self._stack = contextlib.AsyncExitStack()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, count: int) -> None:
        for gate_id in GATE_IDS[:count]:
            gate = capacity_gate(self.world, self.event, self.root / gate_id, gate_id, tickets=self.tickets)
            self.nodes.append(await self._stack.enter_async_context(gate))
        for i, j in itertools.permutations(range(count), 2):
            target = ("127.0.0.1", self.nodes[j].lan.port)
            self.links[(i, j)] = await Link(target, name=f"{i}->{j}").start()
        for i, node in enumerate(self.nodes):
            addresses = [self.links[(i, j)].address for j in range(count) if j != i]
            replicator = Replicator(
                node.replication, addresses, pull_interval=PULL_INTERVAL, timeout=PEER_TIMEOUT
            )
            node.ledger.subscribe(replicator.committed)
            self.replicators.append(replicator)
            self._tasks.append(asyncio.create_task(replicator.run(), name=f"replicator {node.gate_id}"))
        # Every link names its peer (from a challenge) before any ask: a grant is checked by that name.
        await self.until(lambda: all(len(r.peers) == count - 1 and all(p.state.gate_id for p in r.peers)
                                     for r in self.replicators))  # fmt: skip

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for found in self.links.values():
            await found.aclose()
        await self._stack.aclose()

    async def until(self, condition: Callable[[], bool], within: float = SETTLE_WITHIN) -> None:
        deadline = time.monotonic() + within
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"not settled within {within} s")
            await asyncio.sleep(0.02)

    async def scan(self, at: int, who: int, kind: ScanKind) -> Reason:
        result = await self.nodes[at].gate.scan(person(who), device="machine", kind=kind)
        assert result.recorded, result.decision
        return result.decision.reason

    async def rebalance(self, at: int, *, urgent: bool = False) -> int:
        node = self.nodes[at]
        node.gate.capacity.urgent = urgent
        return await node.desk.rebalance(self.replicators[at].peers)

    def shares(self) -> list[int]:
        out = []
        for node in self.nodes:
            limits = node.gate.capacity.limits(node.watch.current)
            assert limits is not None
            limit = limits.limits[0]
            out.append(limits.share(limit, node.gate_id, node.ledger.occupancy.tallies.get("floor", Tally())))
        return out

    async def cut(self, nodes: set[int]) -> None:
        """Cut every link between ``nodes`` and the rest."""
        for (i, j), found in self.links.items():
            if (i in nodes) != (j in nodes):
                await found.cut("refuse")

    async def heal(self) -> None:
        for found in self.links.values():
            await found.heal()

    async def settle(self, inside: int) -> None:
        """Heal, let every gate learn every record, and send every ask left open again."""
        await self.heal()
        await self.until(lambda: all(n.ledger.occupancy.tallies.get("floor", Tally()).inside == inside
                                     for n in self.nodes))  # fmt: skip
        # An ask waits while its peer is known down: every link up again first.
        await self.until(lambda: all(p.state.up for r in self.replicators for p in r.peers))
        for at in range(len(self.nodes)):
            while await open_asks(self.nodes[at].ledger):
                await self.rebalance(at)

    async def fill(self, gates: list[int], outside: list[int]) -> list[int]:
        """Entries at ``gates`` in turn, a full gate asking its peers, until none admits; who got in."""
        admitted: list[int] = []
        waiting = list(outside)
        full: set[int] = set()
        for at in itertools.cycle(gates):
            if not waiting or full >= set(gates):
                return admitted
            if at in full:
                continue
            reason = await self.scan(at, waiting[0], ScanKind.ENTRY)
            if reason is Reason.OK:
                admitted.append(waiting.pop(0))
            elif reason is Reason.VENUE_FULL and not await self.rebalance(at, urgent=True):
                full.add(at)
            else:
                assert reason is Reason.VENUE_FULL, reason
        return admitted


class Crowd(RuleBasedStateMachine):
    """People entering and leaving through 3 to 5 gates while links come and go."""

    def __init__(
        self, loop: LoopThread, worlds: dict[int, tuple[LiveWorld, EventSpec]], root: Path, badge: str
    ) -> None:
        super().__init__()
        self.loop = loop
        self.worlds = worlds
        self.root = root
        self.badge = badge
        self.venue: Venue | None = None
        self.inside: set[int] = set()
        #: The gate each person inside entered by.
        self.entered_at: dict[int, int] = {}
        #: People a supervisor forced in: inside for good.
        self.forced = 0

    @initialize(count=st.integers(3, 5))
    def start_gates(self, count: int) -> None:
        # The roster is the gates that run: a roster gate that never runs holds its share for ever.
        world, event = self.worlds[count]
        self.venue = Venue(self.loop, world, event, self.root, PEOPLE)
        self.loop.run(self._venue.start(count))

    @property
    def _venue(self) -> Venue:
        assert self.venue is not None, "start_gates first"
        return self.venue

    def _gate(self, at: int) -> int:
        return at % len(self._venue.nodes)

    @rule(at=st.integers(0, 4), who=st.integers(0, PEOPLE - 1))
    def enter(self, at: int, who: int) -> None:
        if who in self.inside:
            return
        if self.loop.run(self._venue.scan(self._gate(at), who, ScanKind.ENTRY)) is Reason.OK:
            self.inside.add(who)
            self.entered_at[who] = self._gate(at)

    @rule(at=st.integers(0, 4), pick=st.integers(0, PEOPLE - 1))
    def leave(self, at: int, pick: int) -> None:
        if not self.inside:
            return
        who = sorted(self.inside)[pick % len(self.inside)]
        if self.loop.run(self._venue.scan(self._gate(at), who, ScanKind.EXIT)) is Reason.OK:
            self.inside.discard(who)

    @rule(at=st.integers(0, 4), urgent=st.booleans())
    def ask_for_places(self, at: int, urgent: bool) -> None:
        self.loop.run(self._venue.rebalance(self._gate(at), urgent=urgent))

    @rule(pick=st.integers(0, PEOPLE - 1))
    def force_in(self, pick: int) -> None:
        """Someone inside shows their ticket again where they entered; a supervisor forces it."""
        if not self.inside:
            return
        who = sorted(self.inside)[pick % len(self.inside)]
        at = self.entered_at[who]
        assert self.loop.run(self._venue.scan(at, who, ScanKind.ENTRY)) is Reason.ALREADY_USED
        forced = self.loop.run(self._venue.nodes[at].gate.scan(self.badge, device="machine")).decision
        assert forced.reason in (Reason.OVERRIDDEN, Reason.VENUE_FULL), forced
        self.forced += forced.reason is Reason.OVERRIDDEN

    @rule(at=st.integers(0, 4), rounds=st.integers(5, 25))
    def ask_while_cut_off(self, at: int, rounds: int) -> None:
        """A gate cut off from every peer asks for places, urgently, round after round."""
        gate = self._gate(at)
        self.loop.run(self._venue.cut({gate}))
        for _ in range(rounds):
            self.loop.run(self._venue.rebalance(gate, urgent=True))

    @rule(src=st.integers(0, 4), dst=st.integers(0, 4))
    def cut_link(self, src: int, dst: int) -> None:
        found = self._venue.links.get((self._gate(src), self._gate(dst)))
        if found is not None:
            self.loop.run(found.cut("refuse"))

    @rule(at=st.integers(0, 4))
    def isolate(self, at: int) -> None:
        self.loop.run(self._venue.cut({self._gate(at)}))

    @rule(split=st.integers(1, 4))
    def islands(self, split: int) -> None:
        self.loop.run(self._venue.cut(set(range(split % len(self._venue.nodes)))))

    @rule()
    def heal(self) -> None:
        self.loop.run(self._venue.heal())

    @rule()
    def heal_and_fill(self) -> None:
        self.check_healed()

    @invariant()
    def never_more_than_the_capacity(self) -> None:
        if self.venue is None:
            return
        inside = len(self.inside) + self.forced
        assert inside <= CAPACITY
        shares = self._shares()
        assert all(share >= 0 for share in shares), shares
        assert sum(shares) + inside <= CAPACITY, (shares, sorted(self.inside), self.forced)

    @invariant()
    def one_open_ask_per_peer_at_most(self) -> None:
        if self.venue is None:
            return
        for node in self.venue.nodes:
            asks = self.loop.run(open_asks(node.ledger))
            assert len(asks) <= len(self.venue.nodes) - 1, asks  # one scope: one ask per peer

    def _shares(self) -> list[int]:
        async def read() -> list[int]:
            return self._venue.shares()

        return self.loop.run(read())

    def check_healed(self) -> None:
        """Healed and settled, every place is held by some gate, and all of them can be used at one."""
        inside = len(self.inside) + self.forced
        self.loop.run(self._venue.settle(inside))
        assert sum(self._shares()) + inside == CAPACITY, (self._shares(), sorted(self.inside), self.forced)
        outside = [n for n in range(PEOPLE) if n not in self.inside]
        admitted = self.loop.run(self._venue.fill([0], outside))
        assert len(admitted) == CAPACITY - inside, (admitted, sorted(self.inside), self.forced)
        for who in admitted:  # and they leave again, through the same gate
            assert self.loop.run(self._venue.scan(0, who, ScanKind.EXIT)) is Reason.OK

    def teardown(self) -> None:
        if self.venue is None:
            return
        try:
            self.check_healed()
        finally:
            self.loop.run(self.venue.close(), timeout=60)


def test_strict_capacity_holds_under_any_partition_and_every_place_comes_back(
    tmp_path: Path, loop: LoopThread, fast_retries: None
) -> None:
    worlds = {}
    key_path, pub_path, key = write_keypair(tmp_path / "staff")
    for count in (3, 4, 5):
        world = make_live_world(tmp_path / f"world-{count}", gates=GATE_IDS[:count])
        event = capacity_event(world, floor=CAPACITY, mode="strict")
        worlds[count] = (world, dataclasses.replace(event, staff_keys=(key.public,)))
    badge = Staff(key, key_path, pub_path, b"").badge("boss", Role.SUPERVISOR, event=EVENT_ID)
    examples = itertools.count()

    def machine() -> Crowd:
        return Crowd(loop, worlds, tmp_path / f"example-{next(examples)}", badge)

    run_state_machine_as_test(
        machine,  # type: ignore[arg-type]  # a factory is documented use: the machine needs the loop
        settings=settings(
            max_examples=15,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_a_zone_of_100_admits_at_most_100_across_4_gates_in_2_islands_and_again_as_people_leave(
    tmp_path: Path, loop: LoopThread, fast_retries: None
) -> None:
    world = make_live_world(tmp_path / "world", gates=GATE_IDS[:4])
    venue = Venue(loop, world, capacity_event(world, floor=100, mode="strict"), tmp_path / "gates", 130)
    try:
        loop.run(venue.start(4))
        loop.run(venue.cut({0, 1}))  # islands: gates 1 and 2, gates 3 and 4
        everyone = list(range(130))
        first = loop.run(venue.fill([0, 1], everyone[:65]))
        second = loop.run(venue.fill([2, 3], everyone[65:]))
        assert len(first) == len(second) == 50  # each island admits from the 50 places it holds
        assert sum(venue.shares()) == 0
        # Ten leave through gate 1: ten more get in, on that island, while still cut off.
        for who in first[:10]:
            assert loop.run(venue.scan(0, who, ScanKind.EXIT)) is Reason.OK
        assert loop.run(venue.scan(3, everyone[120], ScanKind.ENTRY)) is Reason.VENUE_FULL
        again = loop.run(venue.fill([1, 0], everyone[120:]))
        assert len(again) == 10
        inside = 100
        loop.run(venue.settle(inside))
        assert sum(venue.shares()) == 0
        for who in second[:5]:
            assert loop.run(venue.scan(2, who, ScanKind.EXIT)) is Reason.OK
        loop.run(venue.settle(inside - 5))
        # Healed: the five places freed at gate 3 can be used at gate 1.
        assert len(loop.run(venue.fill([0], first[:10]))) == 5
    finally:
        loop.run(venue.close(), timeout=60)
