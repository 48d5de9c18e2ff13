"""The gates of ``gatectl bench peers``, their links, and the phases that time them.

See ``gate_daemon.bench.peers`` for what each phase measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gate_daemon.bench import fixtures
from gate_daemon.bench.peer_traffic import RouteCount, Traffic, messages
from gate_daemon.bench.stats import percentile, summary_ms
from gate_daemon.core.decision import Checkpoint, ScanKind
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.manifest import Manifest
from gate_daemon.core.reasons import Outcome
from gate_daemon.core.records import Redemption, parse_record
from gate_daemon.core.tokens import TicketClaims, encode_signed, event_tag
from gate_daemon.errors import GateError
from gate_daemon.gate.scan import Gate
from gate_daemon.hardware.factory import NullSignals
from gate_daemon.net.lan import LanServer, create_app
from gate_daemon.net.peers import Replicator
from gate_daemon.net.replication import MAX_BATCH, Replication
from gate_daemon.store.learning import Learned
from gate_daemon.store.ledger import Ledger

BUDGET_P99_MS = 50.0
#: Seconds between pulls (the first is at start): long enough that pushes alone carry the
#: propagation phase's records. A gate's default is 1 s.
PULL_INTERVAL = 30.0
#: A request's timeout, as a gate's default ``[lan] timeout_ms``.
TIMEOUT = 2.0
#: How long a record may take to reach every gate before it counts as not propagated.
ROUND_LIMIT = 5.0
#: How long the partition may take to heal before the bench gives up.
CONVERGE_LIMIT = 600.0
#: The pause between two timed scans in the scan latency phase.
PROBE_GAP = 0.005


class _Observed(Ledger):
    """A ledger that tells the bench when records from other gates are committed in it."""

    on_learned: Callable[[_Observed, int, Learned], None] | None = None

    async def learn(self, records: Sequence[tuple[Redemption, str]], *, now: float) -> Learned:
        """Store as a ledger does, then report."""
        learned = await super().learn(records, now=now)
        if self.on_learned is not None:
            self.on_learned(self, len(records), learned)
        return learned


@dataclass
class _Node:
    """One gate of the bench and its links."""

    gate_id: str
    ledger: _Observed
    gate: Gate
    replication: Replication
    server: LanServer
    traffic: Traffic
    replicator: Replicator | None = None
    task: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        """Where its LAN server listens."""
        return f"127.0.0.1:{self.server.port}"

    @property
    def log(self) -> tuple[str, str]:
        """Its own origin log."""
        return (self.gate_id, self.ledger.epoch)


class PeerBench:
    """The gates, their links, and what the phases observe of them."""

    def __init__(self, issuer: SecretKey, rng: random.Random) -> None:
        self.issuer = issuer
        self.tag = event_tag(fixtures.EVENT_ID)
        self.rng = rng
        self.nodes: list[_Node] = []
        #: Records being timed: uuid -> (committed at, gates still to learn it, done).
        self.pending: dict[str, tuple[int, set[str], asyncio.Event]] = {}
        self.tracking = False
        self.samples: dict[tuple[str, str], list[int]] = {}
        self.everywhere: list[int] = []
        self.received = self.applied = 0
        self._tickets = 0

    def payload(self, prefix: str) -> str:
        """A fresh signed ticket."""
        self._tickets += 1
        claims = TicketClaims(ticket_id=f"{prefix}-{self._tickets:07d}", event_tag=self.tag)
        return encode_signed(claims, self.issuer)

    async def add(self, work: Path, gate_id: str, key: SecretKey, manifest: Manifest) -> None:
        """Open one gate: ledger, service, replication, LAN server (the replicator comes later)."""
        path = work / f"{gate_id}.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        ledger = await _Observed.open(path, gate_id)
        assert isinstance(ledger, _Observed)
        try:
            held = fixtures.HeldManifest(manifest)
            gate = Gate(
                gate_id=gate_id,
                event_id=fixtures.EVENT_ID,
                checkpoint=Checkpoint(),
                kind=ScanKind.ENTRY,
                ledger=ledger,
                manifests=held,
                signals=NullSignals(),
            )
            replication = Replication(ledger, key, lambda: held.current)
            if replication.problem is not None:
                raise GateError(f"bench gate {gate_id}: {replication.problem}")

            traffic = Traffic()
            # Every peer calls from 127.0.0.1: one address's challenge rate for them all.
            app = create_app(None, rate=20 * len(manifest.header.gates), replication=replication)
            app.on_response_prepare.append(traffic.on_prepare)
            server = LanServer(app)
            await server.start("127.0.0.1", 0)
        except BaseException:
            await ledger.close()
            raise
        node = _Node(gate_id, ledger, gate, replication, server, traffic)
        ledger.on_learned = self._learned
        ledger.subscribe(lambda record: self._committed(node, record))
        self.nodes.append(node)

    def _committed(self, node: _Node, record: Redemption) -> None:
        """A ledger listener at every gate: stamp the commit, then hand it to the replicator."""
        if self.tracking:
            others = {n.gate_id for n in self.nodes if n is not node}
            self.pending[record.uuid] = (time.perf_counter_ns(), others, asyncio.Event())
        if node.replicator is not None:
            node.replicator.committed(record)

    def _learned(self, ledger: _Observed, received: int, learned: Learned) -> None:
        at = time.perf_counter_ns()
        self.received += received
        self.applied += len(learned.applied)
        for record in learned.applied:
            entry = self.pending.get(record.uuid)
            if entry is None:
                continue
            committed, waiting, done = entry
            self.samples.setdefault((record.origin, ledger.gate_id), []).append(at - committed)
            waiting.discard(ledger.gate_id)
            if not waiting:
                self.everywhere.append(at - committed)
                del self.pending[record.uuid]
                done.set()

    async def connect(self) -> None:
        """Start every gate's replicator, with every other gate as a peer."""
        for node in self.nodes:
            addresses = [n.address for n in self.nodes if n is not node]
            node.replicator = Replicator(
                node.replication, addresses, pull_interval=PULL_INTERVAL, timeout=TIMEOUT
            )
            node.task = asyncio.create_task(node.replicator.run(), name=f"replicator {node.gate_id}")

    async def wait_up(self) -> None:
        """Wait until every link has answered once (its first pull)."""
        deadline = time.monotonic() + 30
        while not all(
            node.replicator is not None
            and len(node.replicator.peers) == len(self.nodes) - 1
            and all(peer.state.up for peer in node.replicator.peers)
            for node in self.nodes
        ):
            if time.monotonic() > deadline:
                raise GateError("the bench gates did not reach each other within 30 s")
            await asyncio.sleep(0.01)

    async def disconnect(self) -> None:
        """Stop every replicator: a partition (the LAN servers still answer, nobody calls)."""
        for node in self.nodes:
            if node.task is not None:
                node.task.cancel()
        for node in self.nodes:
            if node.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await node.task
            node.task, node.replicator = None, None

    async def aclose(self) -> None:
        """Stop everything: replicators, then servers, then ledgers."""
        await self.disconnect()
        for node in self.nodes:
            await node.server.aclose()
        for node in self.nodes:
            await node.ledger.close()

    def traffic(self) -> dict[str, RouteCount]:
        """What every gate's server answered so far, summed by route."""
        total: dict[str, RouteCount] = {}
        for node in self.nodes:
            for path, seen in node.traffic.paths.items():
                into = total.setdefault(path, RouteCount())
                into.requests += seen.requests
                into.sent += seen.sent
                into.answered += seen.answered
                into.records += seen.records
        return total

    async def scan(self, node: _Node, payload: str) -> int:
        """One admission at ``node``; its time in ns."""
        t0 = time.perf_counter_ns()
        result = await node.gate.scan(payload, device="bench")
        took = time.perf_counter_ns() - t0
        if result.decision.outcome is not Outcome.ALLOW:
            raise GateError(f"bench scan at {node.gate_id} was not admitted: {result.decision.reason.value}")
        return took

    def _start_phase(self) -> tuple[dict[str, RouteCount], int]:
        self.samples, self.everywhere, self.pending = {}, [], {}
        self.tracking = True
        return self.traffic(), time.perf_counter_ns()

    def _end_phase(self, before: dict[str, RouteCount], t0: int, redemptions: int) -> dict[str, Any]:
        self.tracking = False
        elapsed = time.perf_counter_ns() - t0
        pairs = [ns for samples in self.samples.values() for ns in samples]
        lost = len(self.pending)
        self.pending = {}
        return {
            "redemptions": redemptions,
            "seconds": round(elapsed / 1e9, 3),
            "any_peer": summary_ms(pairs),
            "every_peer": summary_ms(self.everywhere),
            "pairs": {f"{a}>{b}": summary_ms(s) for (a, b), s in sorted(self.samples.items())},
            "lost": lost,
            "messages": messages(before, self.traffic(), redemptions),
        }

    async def one_at_a_time(self, rounds: int) -> dict[str, Any]:
        """Phase 1: a scan at a random gate, then wait until every other gate holds it."""
        await self.wait_up()
        self._start_phase()
        for _ in range(2 * len(self.nodes)):  # warm the links up
            await self._round(self.rng.choice(self.nodes))
        before, t0 = self._start_phase()
        for _ in range(rounds):
            await self._round(self.rng.choice(self.nodes))
        result = self._end_phase(before, t0, rounds)
        result["budget_p99_ms"] = BUDGET_P99_MS
        result["met"] = result["any_peer"]["p99_ms"] <= BUDGET_P99_MS and not result["lost"]
        return result

    async def _round(self, node: _Node) -> None:
        result = await node.gate.scan(self.payload("G"), device="bench")
        entry = self.pending.get(result.scan_id)
        if entry is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ROUND_LIMIT):
                    await entry[2].wait()

    async def all_at_once(self, rounds: int) -> dict[str, Any]:
        """Phase 2: every gate scans back to back; wait until every record is everywhere."""
        each = max(1, rounds // len(self.nodes))
        payloads = [[self.payload("B") for _ in range(each)] for _ in self.nodes]
        before, t0 = self._start_phase()

        async def lane(node: _Node, mine: list[str]) -> None:
            for payload in mine:
                await self.scan(node, payload)

        await asyncio.gather(*(lane(n, p) for n, p in zip(self.nodes, payloads, strict=True)))
        deadline = time.monotonic() + ROUND_LIMIT
        while self.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        return self._end_phase(before, t0, each * len(self.nodes))

    async def partition_heals(self, records: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Phases 3 and 4: commit ``records`` apart, heal, time convergence and scans meanwhile."""
        n = len(self.nodes)
        shared = max(2, records // 1000)
        lanes: list[list[str]] = [[] for _ in self.nodes]
        for j in range(shared):  # one ticket admitted at two gates that cannot talk: a conflict
            payload = self.payload("C")
            lanes[j % n].append(payload)
            lanes[(j + 1) % n].append(payload)
        for g, lane in enumerate(lanes):
            quota = records // n + (1 if g < records % n else 0)
            lane.extend(self.payload(f"P{g}") for _ in range(quota - len(lane)))
        t0 = time.perf_counter_ns()
        await asyncio.gather(
            *(self._scan_all(node, lane) for node, lane in zip(self.nodes, lanes, strict=True))
        )
        committing = (time.perf_counter_ns() - t0) / 1e9

        probe = self.nodes[0]
        count = max(20, min(200, records // 50))
        idle = [await self._probe(probe) for _ in range(count)]

        target = {node.log: node.ledger.known()[node.log] for node in self.nodes}
        done: dict[str, float] = {}
        healed = asyncio.Event()
        self.received = self.applied = 0
        watch = self._learned
        start = time.perf_counter_ns()

        def learned(ledger: _Observed, received: int, outcome: Learned) -> None:
            watch(ledger, received, outcome)
            if ledger.gate_id in done:
                return
            known = ledger.known()
            if all(known.get(log, 0) >= seq for log, seq in target.items()):
                done[ledger.gate_id] = (time.perf_counter_ns() - start) / 1e9
                if len(done) == n:
                    healed.set()

        for node in self.nodes:
            node.ledger.on_learned = learned
        before = self.traffic()
        start = time.perf_counter_ns()  # the partition heals
        await self.connect()
        busy: list[int] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CONVERGE_LIMIT):
                while not healed.is_set():
                    busy.append(await self._probe(probe))
        elapsed = (time.perf_counter_ns() - start) / 1e9
        moved = messages(before, self.traffic(), records)
        received, applied = self.received, self.applied
        for node in self.nodes:
            node.ledger.on_learned = self._learned
        idle += [await self._probe(probe) for _ in range(count)]
        conflicts = {node.gate_id: await node.ledger.conflict_count() for node in self.nodes}
        convergence = {
            "records": records,
            "shared_tickets": shared,
            "committing_s": round(committing, 3),
            "converged": healed.is_set(),
            "seconds": round(max(done.values(), default=elapsed), 3),
            "per_gate_s": {gate: round(s, 3) for gate, s in sorted(done.items())},
            "records_received": received,
            "records_applied": applied,
            "conflicts": conflicts,
            "conflicts_expected": shared,
            "messages": moved,
        }
        i, b = summary_ms(idle), summary_ms(busy)
        scan = {
            "gate": probe.gate_id,
            "gap_ms": PROBE_GAP * 1000,
            "idle": i,
            "converging": b,
            "ratio_p50": round(b["p50_ms"] / i["p50_ms"], 2),
            "ratio_p99": round(b["p99_ms"] / i["p99_ms"], 2),
        }
        return convergence, scan

    async def parts(self, work: Path) -> dict[str, Any]:
        """What one pull answer costs at each end, alone, and one record's signature.

        Serving reads a batch of the gate's own records on the ledger's read-only
        connection and signs those not signed before; storing it takes transactions of
        ``LEARN_BATCH`` records, each holding the ledger's scan lock.
        """
        source = self.nodes[1 % len(self.nodes)]
        known = source.ledger.known()
        own = known[source.log]
        size = max(1, min(MAX_BATCH, own // 4))
        path = work / "alone.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        alone = await Ledger.open(path, "bench-alone")
        served: list[int] = []
        stored: list[int] = []
        try:
            for start in range(0, 4 * size, size):
                t0 = time.perf_counter_ns()
                wires, _ = await source.replication.serve({**known, source.log: start}, size)
                served.append(time.perf_counter_ns() - t0)
                batch = [parse_record(item) for item in wires]
                t0 = time.perf_counter_ns()
                await alone.learn(batch, now=time.time())
                stored.append(time.perf_counter_ns() - t0)
        finally:
            await alone.close()
        wires, _ = await source.replication.serve({**known, source.log: 0}, 1)
        record, signature = parse_record(wires[0])
        key, public = source.replication.key, source.replication.key.public
        signing, checking = [], []
        for _ in range(1000):
            t0 = time.perf_counter_ns()
            record.sign(key)
            t1 = time.perf_counter_ns()
            record.signed_by(public, signature)
            checking.append(time.perf_counter_ns() - t1)
            signing.append(t1 - t0)
        return {
            "batch": size,
            "serve": summary_ms(served),
            "store": summary_ms(stored),
            "sign_us": round(percentile(signing, 0.5) / 1000, 1),
            "check_us": round(percentile(checking, 0.5) / 1000, 1),
        }

    async def _scan_all(self, node: _Node, payloads: list[str]) -> None:
        for payload in payloads:
            await self.scan(node, payload)

    async def _probe(self, node: _Node) -> int:
        await asyncio.sleep(PROBE_GAP)
        return await self.scan(node, self.payload("S"))
