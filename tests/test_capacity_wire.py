"""The capacity route on the LAN, against hostile askers and a giver whose signature is not its roster key.

Real gates in this process (``tests.capacity_fixtures``), their LAN APIs on 127.0.0.1,
asked through the one signed-request flow (``net.peers.Peer``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from gate_daemon.core.capacity import Tally
from gate_daemon.core.reasons import Reason
from gate_daemon.net.capacity import PATH
from gate_daemon.net.peers import Peer, PeerError
from gate_daemon.provision.keyfiles import write_keypair
from gate_daemon.store.capacity_grants import open_asks
from tests.capacity_fixtures import CapacityNode, capacity_event, capacity_gate
from tests.live import LiveWorld, make_live_world, payload, tickets_csv
from tests.loop_thread import LoopThread

GATES = ("g1", "g2")


@asynccontextmanager
async def asking(asker: CapacityNode, giver: CapacityNode) -> AsyncIterator[Peer]:
    """``asker``'s link to ``giver``, named by a first challenge."""
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
        peer = Peer(f"127.0.0.1:{giver.lan.port}", asker.replication, client, timeout=5.0)
        yield peer


def strict_world(root: Path) -> LiveWorld:
    return make_live_world(root, gates=GATES)


async def test_a_grant_signed_by_a_key_the_roster_does_not_list_is_refused(tmp_path: Path) -> None:
    world = strict_world(tmp_path / "world")
    event = capacity_event(world, floor=4, mode="strict")
    tickets = tickets_csv(6)
    async with capacity_gate(world, event, tmp_path / "g1", "g1", tickets=tickets) as one:
        # g2 signs with a key of its own, not the one the roster lists for it.
        write_keypair(world.gate_keys["g2"].with_suffix(""), overwrite=True)
        async with capacity_gate(world, event, tmp_path / "g2", "g2", tickets=tickets) as two:
            for n in (1, 2):
                assert (await one.gate.scan(payload(n), device="t")).decision.reason is Reason.OK
            assert (await one.gate.scan(payload(3), device="t")).decision.reason is Reason.VENUE_FULL
            async with asking(one, two) as peer:
                peer.state.gate_id = "g2"
                one.gate.capacity.urgent = True
                assert await one.desk.rebalance([peer]) == 0
            # g1 holds nothing it cannot verify: its share did not rise, its ask stays open.
            assert one.ledger.occupancy.tallies["floor"].granted_in == 0
            assert [a.peer for a in await open_asks(one.ledger)] == ["g2"]
            assert (await one.gate.scan(payload(3), device="t")).decision.reason is Reason.VENUE_FULL


async def test_a_grant_moves_places_once_and_is_answered_again_for_the_same_ask(tmp_path: Path) -> None:
    world = strict_world(tmp_path / "world")
    event = capacity_event(world, floor=4, mode="strict")
    tickets = tickets_csv(6)
    async with (
        capacity_gate(world, event, tmp_path / "g1", "g1", tickets=tickets) as one,
        capacity_gate(world, event, tmp_path / "g2", "g2", tickets=tickets) as two,
        asking(one, two) as peer,
    ):
        body = {"uuid": "ask-1", "scope": "floor", "share": 0, "want": 2, "urgent": True}
        first = await peer.signed_post(PATH, body)
        again = await peer.signed_post(PATH, {**body, "want": 1})
        assert first == {**again, "share": first["share"]}
        assert first["grant"]["places"] == 1 and first["share"] == 1  # half of 2 - 0
        assert two.ledger.occupancy.tallies["floor"].granted_out == 1


_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "uuid": st.text(max_size=70) | st.integers(),
        "scope": st.sampled_from(["floor", "*", "balcony", ""]) | st.integers(),
        "share": st.integers(-2, 20_000_000) | st.booleans() | st.none(),
        "want": st.integers(-2, 20_000_000) | st.floats(allow_nan=False),
        "urgent": st.booleans() | st.integers(0, 1),
        "extra": st.just(1),
    },
)


def test_hostile_asks_are_refused_by_name_never_a_5xx(tmp_path: Path) -> None:
    world = strict_world(tmp_path / "world")
    event = capacity_event(world, floor=4, mode="strict")
    stack = contextlib.AsyncExitStack()

    async def start() -> tuple[CapacityNode, Peer]:
        tickets = tickets_csv(1)
        one = await stack.enter_async_context(
            capacity_gate(world, event, tmp_path / "g1", "g1", tickets=tickets)
        )
        two = await stack.enter_async_context(
            capacity_gate(world, event, tmp_path / "g2", "g2", tickets=tickets)
        )
        return two, await stack.enter_async_context(asking(one, two))

    async def send(peer: Peer, body: object) -> str:
        try:
            await peer.signed_post(PATH, body)  # type: ignore[arg-type]
        except PeerError as exc:
            assert exc.status is not None and 400 <= exc.status < 500, exc
            return exc.name
        return "granted"

    with LoopThread("wire") as loop:
        two, peer = loop.run(start())
        try:

            @settings(max_examples=60, deadline=None)
            @given(body=_FIELDS | st.lists(st.integers(), max_size=2) | st.text(max_size=5))
            def ask(body: object) -> None:
                name = loop.run(send(peer, body))
                # rate_limited: a refused request carries no next challenge, and fetching
                # challenges is rate-limited per address (docs/LAN.md).
                assert name in {"bad_request", "no_capacity", "granted", "rate_limited"}, name
                if name == "granted":
                    assert isinstance(body, dict) and set(body) == {
                        "uuid",
                        "scope",
                        "share",
                        "want",
                        "urgent",
                    }
                    assert body["scope"] == "floor" and type(body["want"]) is int and body["want"] >= 1

            ask()
            # Whatever was asked, g2 never gave more than it held.
            assert two.ledger.occupancy.tallies.get("floor", Tally()).granted_out <= 2
        finally:
            loop.run(stack.aclose())
