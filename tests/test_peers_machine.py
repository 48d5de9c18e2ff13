"""Replication as a state machine: 3 to 5 gates, links cut and healed at random, then healed for good.

Each gate runs in this process but on its own real parts: a ledger on its own SQLite
file, its manifest watch, the gate service deciding scans, its LAN API (aiohttp) on
127.0.0.1 and its replicator. Every gate reaches every other through a
``tests.link_proxy.Link`` per directed pair, so a rule can cut one direction of one pair
(refused or blackholed), isolate a gate, or heal. Gates and links live on one asyncio loop
on a thread of its own (``tests.loop_thread``); hypothesis drives them from the test's thread.

What must hold:

- at every step, on every gate: the conflicts recorded are exactly those its own
  records make (records and verdicts are written in one transaction), and it holds
  nothing that no gate committed;
- once every link is healed and the gates are quiet: every gate holds exactly the
  redemptions committed anywhere, field for field; the conflict tables are identical;
  and every double entry is recorded, the earliest entry by (hybrid clock, uuid) standing.

The expected verdicts are computed here from the records, by the rule as docs/LAN.md
states it, not by the package's own ``core.conflicts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from gate_daemon.core.decision import Checkpoint, ScanKind
from gate_daemon.core.reasons import Outcome
from gate_daemon.gate.manifest_watch import ManifestWatch
from gate_daemon.gate.scan import Gate
from gate_daemon.hardware.factory import NullSignals
from gate_daemon.net.lan import LanServer, create_app
from gate_daemon.net.peers import Replicator
from gate_daemon.net.replication import Replication
from gate_daemon.provision.keyfiles import read_public, read_secret
from gate_daemon.store.conflicts import entry_limit
from gate_daemon.store.ledger import Ledger
from tests.link_proxy import Link
from tests.live import EVENT_ID, LiveWorld, make_live_world
from tests.loop_thread import LoopThread

GATE_IDS = ("gate-1", "gate-2", "gate-3", "gate-4", "gate-5")
#: The tickets scanned: ticket id -> (payload, entries allowed; None: re-entry after each exit).
POOL: dict[str, tuple[str, int | None]] = {
    **{f"S-{n}": (f"S{n}-1", 1) for n in range(1, 6)},
    "M-1": ("M1-1", 3),
    "R-1": ("R1-1", None),
}
PULL_INTERVAL = 0.15
#: Cut links are reset when they heal, so a long timeout costs nothing; a short one fails on a slow machine.
PEER_TIMEOUT = 2.0
#: How long the gates get to converge once healed; they take well under a second.
QUIET_WITHIN = 30.0


def pool_csv() -> str:
    rows = ["ticket_id,order_id,seat,status,session,zone,entries,code"]
    for ticket_id, (payload, entries) in POOL.items():
        order = payload.split("-")[0]
        rows.append(f"{ticket_id},{order},1,completed,now,floor,{'reentry' if entries is None else entries},")
    return "\n".join(rows) + "\n"


# ------------------------------------------------------------------ the oracle


@dataclass(frozen=True)
class Row:
    """A redemption as a ledger file holds it."""

    uuid: str
    ticket_id: str
    kind: str
    origin: str
    epoch: str
    seq: int
    hlc: int
    slot: int | None


def expected_conflicts(rows: list[Row]) -> set[tuple[str, str, str]]:
    """(ticket, loser, winner) for every entry the ticket's policy would have refused."""
    out: set[tuple[str, str, str]] = set()
    for ticket_id in {row.ticket_id for row in rows}:
        moves = sorted((r for r in rows if r.ticket_id == ticket_id), key=lambda r: (r.hlc, r.uuid))
        allowed = POOL[ticket_id][1]
        if allowed is None:
            inside: str | None = None
            for move in moves:
                if move.kind == "exit":
                    inside = None
                elif inside is None:
                    inside = move.uuid
                else:
                    out.add((ticket_id, move.uuid, inside))
        else:
            entries = [m.uuid for m in moves if m.kind == "entry"]
            out |= {(ticket_id, loser, entries[allowed - 1]) for loser in entries[allowed:]}
    return out


@dataclass(frozen=True)
class Holding:
    """One gate's redemptions and conflicts, read in one transaction."""

    rows: dict[str, Row]
    conflicts: set[tuple[str, str, str]]


def read_holding(db: Path) -> Holding:
    uri = f"file:{urllib.parse.quote(str(db))}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10, isolation_level=None)) as conn:
        conn.execute("BEGIN")  # one snapshot: records and the verdicts written with them
        rows = conn.execute("SELECT uuid, ticket_id, kind, origin, epoch, seq, hlc, slot FROM redemptions")
        held = {str(r[0]): Row(*r) for r in rows.fetchall()}
        found = {
            (str(t), str(lo), str(w))
            for t, lo, w in conn.execute("SELECT ticket_id, loser, winner FROM conflicts")
        }
        conn.execute("COMMIT")
    return Holding(held, found)


# ------------------------------------------------------------------ gates in this process


@dataclass
class Node:
    """One gate's parts, wired as ``gate_daemon.daemon.app.start`` wires them."""

    gate_id: str
    db: Path
    ledger: Ledger
    gate: Gate
    replication: Replication
    lan: LanServer
    replicator: Replicator | None = None
    task: asyncio.Task[None] | None = None


async def open_node(world: LiveWorld, manifest: bytes, folder: Path, gate_id: str) -> Node:
    folder.mkdir(parents=True)
    (folder / "drop.gdm").write_bytes(manifest)
    # As the daemon wires it: conflicts judged by the active manifest's entry rules.
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
            signals=NullSignals(),
        )
        replication = Replication(ledger, read_secret(world.gate_keys[gate_id]), lambda: watch.current)
        assert replication.problem is None

        async def status() -> dict[str, Any]:
            return {"gate": gate_id}

        lan = LanServer(create_app(status, replication=replication))
        await lan.start("127.0.0.1", 0)
    except BaseException:
        await ledger.close()
        raise
    return Node(gate_id, ledger.path, ledger, gate, replication, lan)


def link(node: Node, addresses: list[str]) -> None:
    """Start the node's replicator on ``addresses`` (its links to the others)."""
    node.replicator = Replicator(
        node.replication, addresses, pull_interval=PULL_INTERVAL, timeout=PEER_TIMEOUT
    )
    node.ledger.subscribe(node.replicator.committed)
    node.task = asyncio.create_task(node.replicator.run(), name=f"replicator {node.gate_id}")


async def close_nodes(nodes: list[Node], links: list[Link]) -> None:
    """Stop the callers first, then the links, then what they called: no request meets a closing server."""
    tasks = [node.task for node in nodes if node.task is not None]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for found in links:
        await found.aclose()
    for node in nodes:
        await node.lan.aclose()
        await node.ledger.close()


# ------------------------------------------------------------------ the machine


@dataclass(frozen=True)
class Committed:
    """A redemption a gate committed (its scan was answered allow)."""

    gate_id: str
    ticket_id: str
    kind: str


class Replicas(RuleBasedStateMachine):
    """Gates scanning a small pool of tickets while their links come and go."""

    def __init__(self, loop: LoopThread, world: LiveWorld, manifest: bytes, root: Path) -> None:
        super().__init__()
        self.loop = loop
        self.world = world
        self.manifest = manifest
        self.root = root
        self.nodes: list[Node] = []
        self.links: dict[tuple[int, int], Link] = {}
        self.committed: dict[str, Committed] = {}
        #: Set while a rule runs: a rule that failed leaves it set, and teardown then only cleans up.
        self.busy = False

    # -------------------------------------------------------------- rules

    @initialize(count=st.integers(3, 5))
    def start_gates(self, count: int) -> None:
        self.busy = True
        self.loop.run(self._start(count))
        self.busy = False

    async def _start(self, count: int) -> None:
        for gate_id in GATE_IDS[:count]:
            self.nodes.append(await open_node(self.world, self.manifest, self.root / gate_id, gate_id))
        for i, j in itertools.permutations(range(count), 2):
            target = ("127.0.0.1", self.nodes[j].lan.port)
            self.links[(i, j)] = await Link(target, name=f"{i}->{j}").start()
        for i, node in enumerate(self.nodes):
            link(node, [self.links[(i, j)].address for j in range(count) if j != i])

    @rule(
        burst=st.lists(
            st.tuples(st.integers(0, 4), st.sampled_from(sorted(POOL)), st.booleans()), min_size=1, max_size=4
        )
    )
    def scans(self, burst: list[tuple[int, str, bool]]) -> None:
        """A few scans, one after the other, at gates chosen among those running."""
        for at, ticket_id, leaving in burst:
            self.scan(at, ticket_id, leaving=leaving)

    def scan(self, at: int, ticket_id: str, *, leaving: bool) -> None:
        self.busy = True
        node = self.nodes[at % len(self.nodes)]
        kind = ScanKind.EXIT if leaving else ScanKind.ENTRY
        result = self.loop.run(node.gate.scan(POOL[ticket_id][0], device="machine", kind=kind))
        decision = result.decision
        assert result.recorded, decision
        assert decision.ticket_id == ticket_id
        if decision.outcome is Outcome.ALLOW:
            self.committed[result.scan_id] = Committed(node.gate_id, ticket_id, kind.value)
        self.busy = False

    @rule(src=st.integers(0, 4), dst=st.integers(0, 4), blackhole=st.booleans())
    def cut(self, src: int, dst: int, blackhole: bool) -> None:
        found = self._link(src, dst)
        if found is not None:
            self.loop.run(found.cut("blackhole" if blackhole else "refuse"))

    @rule(src=st.integers(0, 4), dst=st.integers(0, 4))
    def heal(self, src: int, dst: int) -> None:
        found = self._link(src, dst)
        if found is not None:
            self.loop.run(found.heal())

    @rule(at=st.integers(0, 4))
    def isolate(self, at: int) -> None:
        index = at % len(self.nodes)
        for (i, j), found in self.links.items():
            if index in (i, j):
                self.loop.run(found.cut("refuse"))

    @rule()
    def heal_all(self) -> None:
        for found in self.links.values():
            self.loop.run(found.heal())

    @rule()
    def heal_and_settle(self) -> None:
        """Heal every link and check the converged state now, not only at the end."""
        self.busy = True
        self.heal_all()
        self.converge()
        self.busy = False

    @rule()
    def let_it_travel(self) -> None:
        """Give pushes and pulls a moment over whatever links are up."""
        time.sleep(PULL_INTERVAL)

    def _link(self, src: int, dst: int) -> Link | None:
        count = len(self.nodes)
        return self.links.get((src % count, dst % count))

    # -------------------------------------------------------------- what must hold

    def holdings(self) -> dict[str, Holding]:
        return {node.gate_id: read_holding(node.db) for node in self.nodes}

    @invariant()
    def each_gate_is_consistent_with_itself(self) -> None:
        for gate_id, holding in self.holdings().items():
            phantom = set(holding.rows) - set(self.committed)
            assert not phantom, f"{gate_id} holds redemptions no gate committed: {phantom}"
            expected = expected_conflicts(list(holding.rows.values()))
            assert holding.conflicts == expected, (
                f"{gate_id}'s conflicts are not what its own records make: "
                f"recorded {sorted(holding.conflicts)}, expected {sorted(expected)}"
            )

    def teardown(self) -> None:
        try:
            if not self.busy and self.nodes:
                self.heal_all()
                self.converge()
        finally:
            self.close()

    def close(self) -> None:
        """Stop every gate and link."""
        self.loop.run(close_nodes(self.nodes, list(self.links.values())), timeout=60)

    def converge(self) -> None:
        """Wait (bounded) until every gate holds what was committed, then check the final state."""
        committed = set(self.committed)
        deadline = time.monotonic() + QUIET_WITHIN
        while True:
            holdings = self.holdings()
            if all(set(h.rows) == committed for h in holdings.values()):
                break
            if time.monotonic() > deadline:
                missing = {gate: sorted(committed - set(h.rows)) for gate, h in holdings.items()}
                raise AssertionError(f"not converged in {QUIET_WITHIN} s; missing per gate: {missing}")
            time.sleep(0.02)
        first = next(iter(holdings.values()))
        for gate_id, holding in holdings.items():
            assert holding.rows == first.rows, f"{gate_id} holds the same uuids with other fields"
            assert holding.conflicts == first.conflicts, f"{gate_id}'s conflicts differ"
        # Every record is where and what it was committed as.
        for uuid, made in self.committed.items():
            row = first.rows[uuid]
            assert (row.origin, row.ticket_id, row.kind) == (made.gate_id, made.ticket_id, made.kind)
        assert first.conflicts == expected_conflicts(list(first.rows.values()))
        # Every double entry of a single-entry ticket is recorded, its earliest entry standing.
        for ticket_id, (_, allowed) in POOL.items():
            entries = sorted(
                (r.hlc, r.uuid) for r in first.rows.values() if r.ticket_id == ticket_id and r.kind == "entry"
            )
            if allowed == 1 and len(entries) > 1:
                winner = entries[0][1]
                assert {(ticket_id, uuid, winner) for _, uuid in entries[1:]} <= first.conflicts


def test_gates_converge_on_the_same_records_and_verdicts_whatever_the_partitions(
    tmp_path: Path, loop: LoopThread, fast_retries: None
) -> None:
    world = make_live_world(tmp_path / "world", gates=GATE_IDS)
    manifest = world.manifest(1, tickets_csv=pool_csv())
    examples = itertools.count()

    def machine() -> Replicas:
        return Replicas(loop, world, manifest, tmp_path / f"example-{next(examples)}")

    run_state_machine_as_test(
        machine,  # type: ignore[arg-type]  # a factory is documented use: the machine needs the loop
        settings=settings(
            max_examples=25,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_two_exits_made_apart_do_not_let_a_second_person_in_on_a_reentry_ticket(
    tmp_path: Path, loop: LoopThread, fast_retries: None
) -> None:
    world = make_live_world(tmp_path / "world", gates=GATE_IDS[:3])
    machine = Replicas(loop, world, world.manifest(1, tickets_csv=pool_csv()), tmp_path / "gates")
    try:
        machine.start_gates(3)
        machine.scan(0, "R-1", leaving=False)
        machine.heal_and_settle()
        machine.isolate(0)
        machine.scan(0, "R-1", leaving=True)  # the holder leaves through gate-1...
        machine.scan(1, "R-1", leaving=True)  # ...and, as gate-2 saw it, through gate-2 too
        machine.heal_and_settle()
        assert [c.kind for c in machine.committed.values()] == ["entry", "exit", "exit"]
        machine.scan(2, "R-1", leaving=False)  # back in
        machine.heal_and_settle()
        result = loop.run(machine.nodes[2].gate.scan(POOL["R-1"][0], device="test"))
        # Inside since the last entry: a second person on the same ticket is refused.
        assert result.decision.outcome is Outcome.ALREADY_USED, result.decision
    finally:
        machine.close()
