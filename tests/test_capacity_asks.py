"""Asking for places during a partition: one open ask per peer and scope, none to a peer
known down, answered asks deleted, and a heal that leaves the shares fair.

Four gates on real sockets and real ledger files (``tests.test_capacity_machine.Venue``),
one cut off from the others while it asks, round after round (docs/CAPACITY.md, "How
places come back").
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gate_daemon.store.capacity_grants import open_asks
from tests.capacity_fixtures import capacity_event
from tests.live import make_live_world
from tests.loop_thread import LoopThread
from tests.test_capacity_machine import GATE_IDS, Venue

ROUNDS = 30


def rows(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT COUNT(*) FROM capacity_asks").fetchone()[0])


def test_a_gate_cut_off_asks_at_most_once_per_peer_and_a_heal_drains_nobody(
    tmp_path: Path, loop: LoopThread, fast_retries: None
) -> None:
    world = make_live_world(tmp_path / "world", gates=GATE_IDS[:4])
    venue = Venue(loop, world, capacity_event(world, floor=100, mode="strict"), tmp_path / "gates", 40)
    try:
        loop.run(venue.start(4))
        ledger = venue.nodes[0].ledger
        loop.run(venue.cut({0}))
        # Gate 1 fills its own 25 places at once, asking (urgently) whenever it is full:
        # some asks go out before its links are known down.
        assert len(loop.run(venue.fill([0], list(range(40))))) == 25
        for _ in range(ROUNDS):
            loop.run(venue.rebalance(0, urgent=True))
            asks = loop.run(open_asks(ledger))
            assert len(asks) <= 3, asks  # one per peer (one scope) at most
            assert len({(a.peer, a.scope) for a in asks}) == len(asks)
        loop.run(venue.until(lambda: all(not p.state.up for p in venue.replicators[0].peers)))
        before = loop.run(open_asks(ledger))
        for _ in range(ROUNDS):
            assert loop.run(venue.rebalance(0, urgent=True)) == 0
        assert loop.run(open_asks(ledger)) == before  # known down: nothing new, nothing dropped
        loop.run(venue.settle(25))
        shares = venue.shares()
        assert sum(shares) == 100 - 25
        # Each peer gave at most half the difference once: none drained to the asker.
        assert min(shares[1:]) >= 10, shares
        assert rows(ledger.path) == 0  # answered asks are deleted
    finally:
        loop.run(venue.close(), timeout=60)
