"""Gates sharing redemptions over real sockets: real daemons, real links, partitions that heal.

Every gate here is a real ``gate-daemon`` process started from its config file, listening
on 127.0.0.1 with its key from the manifest's roster. Where a test partitions gates, each
gate's ``peers`` lists one ``tests.link_proxy.Link`` per directed pair, so a test can cut
one gate away and heal it. What a gate holds is read from its ledger file read-only, as
an auditor would, or asked over its control socket; nothing of the package is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import sqlite3
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from gate_daemon.core.hlc import Stamp
from gate_daemon.core.records import Redemption
from gate_daemon.provision.keyfiles import read_secret
from gate_daemon.store.offline_reads import read_conflicts, read_counters
from tests.gate_process import GateProcess, Launcher, free_port, gatectl, redemptions, wait_until
from tests.link_proxy import Link, Mode, close_server
from tests.live import LiveWorld, make_live_world, payload, ticket, tickets_csv, write_gate_config
from tests.loop_thread import LoopThread

#: Single-entry tickets: payload ``P<n>-1`` is ticket ``P-<n>``.
TICKETS = 40
#: Long enough for a loaded machine; every wait ends as soon as its condition holds.
CONVERGE = 30.0


# ------------------------------------------------------------------ reading a gate's ledger


def conflicts(db: Path) -> list[tuple[str, str, str]]:
    """The conflicts recorded in a ledger file: (ticket, loser uuid, winner uuid)."""
    return [(c.ticket_id, c.loser.uuid, c.winner.uuid) for c in read_conflicts(db)]


# ------------------------------------------------------------------ a fleet of gates


@dataclass
class Site:
    """One gate of the fleet: its folder, its address and its running daemon."""

    gate_id: str
    dir: Path
    port: int
    config: Path | None = None
    process: GateProcess | None = None
    restarts: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def db(self) -> Path:
        return self.dir / "state" / "ledger.sqlite"

    @property
    def gate(self) -> GateProcess:
        assert self.process is not None, f"{self.gate_id} is not running"
        return self.process


@dataclass
class Fleet:
    """Gates on one manifest, each a real daemon; optionally linked through cuttable proxies."""

    world: LiveWorld
    launch: Launcher
    loop: LoopThread
    sites: dict[str, Site]
    #: (from, to) -> the link ``from`` uses to reach ``to`` (proxied fleets only).
    links: dict[tuple[str, str], Link] = field(default_factory=dict)

    def __getitem__(self, gate_id: str) -> GateProcess:
        return self.sites[gate_id].gate

    def configure(self, gate_id: str, peers: list[str], **lan: int) -> None:
        site = self.sites[gate_id]
        lines = [
            "[lan]",
            f'listen = "{site.address}"',
            f'key = "{self.world.gate_keys[gate_id]}"',
            "peers = [" + ", ".join(f'"{peer}"' for peer in peers) + "]",
            *(f"{key} = {value}" for key, value in lan.items()),
        ]
        site.config = write_gate_config(
            site.dir / "gate.toml",
            self.world,
            gate_id=gate_id,
            manifest_path=site.dir / "drop.gdm",
            extra="\n".join(lines) + "\n",
        )

    def start(self, gate_id: str) -> GateProcess:
        site = self.sites[gate_id]
        assert site.config is not None and (site.process is None or not site.process.alive)
        name = gate_id if not site.restarts else f"{gate_id}-{site.restarts}"
        site.restarts += 1
        site.process = self.launch(site.config, name=name)
        return site.process

    def stop(self, gate_id: str) -> None:
        assert self[gate_id].stop() == 0
        self.sites[gate_id].process = None

    def kill_all(self) -> None:
        """Kill every gate still running: nothing calls the links or test servers after this."""
        for site in self.sites.values():
            if site.process is not None:
                site.process.close()

    def peer_states(self, gate_id: str) -> list[dict[str, Any]]:
        states: list[dict[str, Any]] = self[gate_id].status()["replication"]["peers"]
        return states

    def wait_links_up(self, *gate_ids: str) -> None:
        for gate_id in gate_ids or tuple(self.sites):
            wait_until(
                lambda gate_id=gate_id: all(p["up"] for p in self.peer_states(gate_id)),  # type: ignore[misc]
                CONVERGE,
                f"every peer link of {gate_id} up",
            )

    def cut(self, gate_id: str, outgoing: Mode = "refuse", incoming: Mode = "blackhole") -> None:
        """Cut ``gate_id`` off from every other gate."""
        for (src, dst), link in self.links.items():
            if gate_id in (src, dst):
                self.loop.run(link.cut(outgoing if src == gate_id else incoming))

    def heal(self) -> None:
        for link in self.links.values():
            self.loop.run(link.heal())

    def holdings(self, gate_ids: tuple[str, ...] | None = None) -> dict[str, dict[str, tuple[Any, ...]]]:
        return {gate_id: redemptions(self.sites[gate_id].db) for gate_id in gate_ids or tuple(self.sites)}

    def wait_all_hold(self, uuids: set[str], gate_ids: tuple[str, ...] | None = None) -> None:
        """Wait until every gate holds exactly the redemptions ``uuids``."""

        def converged() -> bool:
            return all(set(held) == uuids for held in self.holdings(gate_ids).values())

        try:
            wait_until(converged, CONVERGE, "every gate to hold the same redemptions")
        except AssertionError:
            held = {gate: sorted(set(rows) ^ uuids) for gate, rows in self.holdings(gate_ids).items()}
            raise AssertionError(f"redemptions differing from the expected set, per gate: {held}") from None


@pytest.fixture
def make_fleet(tmp_path: Path, launch: Launcher, loop: LoopThread) -> Iterator[Callable[..., Fleet]]:
    """Build a fleet: gate ids, proxied or not, and the ``[lan]`` settings every gate gets."""
    made: list[Fleet] = []

    def build(*gate_ids: str, proxied: bool = False, start: bool = True, **lan: int) -> Fleet:
        world = make_live_world(tmp_path / "world", gates=gate_ids)
        manifest = world.manifest(1, tickets_csv=tickets_csv(TICKETS))
        sites = {}
        for gate_id in gate_ids:
            folder = tmp_path / gate_id
            folder.mkdir()
            (folder / "drop.gdm").write_bytes(manifest)
            sites[gate_id] = Site(gate_id, folder, free_port())
        fleet = Fleet(world, launch, loop, sites)
        made.append(fleet)
        for src in gate_ids:
            peers = []
            for dst in gate_ids:
                if dst == src:
                    continue
                if proxied:
                    link = Link(("127.0.0.1", sites[dst].port), name=f"{src}->{dst}")
                    fleet.links[(src, dst)] = loop.run(link.start())
                    peers.append(link.address)
                else:
                    peers.append(sites[dst].address)
            fleet.configure(src, peers, **lan)
        if start:
            for gate_id in gate_ids:
                fleet.start(gate_id)
        return fleet

    yield build
    for fleet in made:
        fleet.kill_all()  # before the links close (and the loop after them): no gate calls in meanwhile
        for link in fleet.links.values():
            loop.run(link.aclose())


def scan(gate: GateProcess, n: int) -> dict[str, Any]:
    return gate.scan(payload(n))


def scrape(site: Site) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The gate's Prometheus metrics, as fleet ops scrape them from its LAN port."""
    with urllib.request.urlopen(f"http://{site.address}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


# ------------------------------------------------------------------ the link proxy itself


def test_a_cut_link_closes_what_is_under_way_refuses_or_swallows_new_and_heals(loop: LoopThread) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def start_echo() -> asyncio.Server:
        return await asyncio.start_server(echo, "127.0.0.1", 0)

    server = loop.run(start_echo())
    link = loop.run(Link(("127.0.0.1", server.sockets[0].getsockname()[1])).start())
    try:

        def connect() -> socket.socket:
            return socket.create_connection(("127.0.0.1", link.port), timeout=10)

        def echoes(sock: socket.socket) -> bytes:
            sock.sendall(b"ping")
            return sock.recv(16)

        live = connect()
        assert echoes(live) == b"ping"
        loop.run(link.cut("refuse"))
        with pytest.raises(ConnectionResetError):  # the connection under way is reset...
            echoes(live)
        live.close()
        # ...and so is a new one: the reset can come before connect() returns on a busy machine.
        with pytest.raises(ConnectionResetError), connect() as fresh:
            echoes(fresh)
        loop.run(link.cut("blackhole"))
        with connect() as held:
            held.settimeout(0.3)
            held.sendall(b"ping")
            with pytest.raises(TimeoutError):  # accepted, and never a byte back
                held.recv(16)
            loop.run(link.heal())
            held.settimeout(10)  # bounds a failure only: the reset comes as the link heals
            with pytest.raises(ConnectionResetError):  # reset at the heal: its caller retries
                held.recv(16)
        with connect() as healed:
            assert echoes(healed) == b"ping"
        assert (link.forwarded, link.turned_away) == (2, 2)
    finally:
        loop.run(link.aclose())
        server.close()
        loop.run(server.wait_closed())


# ------------------------------------------------------------------ push


def test_an_admission_at_one_gate_is_already_used_at_the_other_by_push(
    make_fleet: Callable[..., Fleet],
) -> None:
    # A pull every minute: the first comes at start, the next long after this test ends, so
    # only a push can carry the admission across in time.
    fleet = make_fleet("gate-a", "gate-b", pull_interval_ms=60_000)
    fleet.wait_links_up()
    a, b = fleet["gate-a"], fleet["gate-b"]
    admitted = scan(a, 1)
    assert admitted["outcome"] == "allow"
    # How fast is measured by `gatectl bench peers` (docs/PERFORMANCE.md), not asserted here.
    # Its deadline only bounds a failure; it stays well inside the minute before gate-b's next pull.
    wait_until(lambda: admitted["record_id"] in redemptions(fleet.sites["gate-b"].db), 20, "gate-b to know")

    done = gatectl("scan", "--socket", b.socket_path, payload(1))
    assert done.returncode == 4, done.stderr
    decision = json.loads(done.stdout)
    assert decision["outcome"] == "already_used" and decision["reason"] == "already_used"
    assert decision["last_entry_gate"] == "gate-a"
    # What the links say: one record pushed from A, none pulled by B.
    (a_to_b,) = fleet.peer_states("gate-a")
    (b_from_a,) = fleet.peer_states("gate-b")
    assert (a_to_b["gate"], a_to_b["pushed"], a_to_b["up"]) == ("gate-b", 1, True)
    assert (b_from_a["gate"], b_from_a["pulled"]) == ("gate-a", 0)
    assert b.counters()["peer:applied"] == 1


# ------------------------------------------------------------------ peers that misbehave


@dataclass
class Impostors:
    """Servers at peer addresses that do not behave as gates, each in its own way."""

    addresses: dict[str, str]
    closers: list[Callable[[], Any]]


def impostor_record(world: LiveWorld) -> dict[str, Any]:
    """A record as a peer might send it, whole but for a time too large to be a number."""
    return {
        "uuid": "0e0e0e0e-0e0e-4e0e-8e0e-0e0e0e0e0e0e",
        "ticket_id": ticket(TICKETS),
        "kind": "entry",
        "slot": 1,
        "origin": "gate-b",
        "epoch": "impostor",
        "seq": 1,
        "hlc": 1,
        "wall": 10**400,  # json.dumps writes all 401 digits; a float cannot hold it
        "operator": None,
        "mode": "offline",
        "forced": False,
        "voids": None,
        "sig": "AAAA",
    }


async def start_impostors(world: LiveWorld) -> Impostors:
    addresses: dict[str, str] = {}
    closers: list[Callable[[], Any]] = []

    # Accepts and never answers a byte.
    hang = await Link(None, name="hang").start()
    await hang.cut("blackhole")
    addresses["hang"] = hang.address
    closers.append(hang.aclose)

    # Bytes that are not HTTP, then the connection closes.
    async def spew(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(os.urandom(512))
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()

    raw = await asyncio.start_server(spew, "127.0.0.1", 0)
    addresses["raw_noise"] = f"127.0.0.1:{raw.sockets[0].getsockname()[1]}"

    closers.append(lambda: close_server(raw))

    async def noise(request: web.Request) -> web.Response:
        return web.Response(body=os.urandom(2048), content_type="application/octet-stream")

    async def challenge(request: web.Request) -> web.Response:
        return web.json_response({"challenge": "c" * 40, "gate": "gate-z", "ttl_ms": 30000})

    async def wrong(request: web.Request) -> web.Response:
        return web.json_response({"records": "all of them", "more": "maybe", "applied": "yes"})

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = "application/json"
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            await response.write(b'{"challenge": "')
            for _ in range(256):  # 16 MiB, past the 4 MiB a gate reads of an answer
                await response.write(b"x" * (64 << 10))
        return response

    async def lie(request: web.Request) -> web.Response:
        if request.path.endswith("/pull"):
            return web.json_response({"records": [impostor_record(world)], "more": False})
        return web.json_response({"applied": 0, "duplicates": 0, "refused": []})

    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
    apps: dict[str, list[tuple[str, str, Handler]]] = {
        "noise": [("GET", "/{tail:.*}", noise), ("POST", "/{tail:.*}", noise)],
        "wrong_json": [("GET", "/v1/challenge", challenge), ("POST", "/{tail:.*}", wrong)],
        "huge": [("GET", "/{tail:.*}", huge), ("POST", "/{tail:.*}", huge)],
        "liar": [("GET", "/v1/challenge", challenge), ("POST", "/{tail:.*}", lie)],
    }
    for name, routes in apps.items():
        app = web.Application()
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        addresses[name] = f"127.0.0.1:{runner.addresses[0][1]}"
        closers.append(runner.cleanup)
    return Impostors(addresses, closers)


#: How each impostor's link must be named in status (the start of ``last_error``).
IMPOSTOR_ERRORS = {
    "hang": "timeout:",
    "raw_noise": "unreachable:",
    "noise": "bad_reply:",
    "wrong_json": "bad_reply:",
    "huge": "too_large:",
}
#: The peer timeout in this test; scans must answer far inside it.
PEER_TIMEOUT = 5.0


def test_scans_are_answered_while_a_request_to_a_peer_hangs(
    make_fleet: Callable[..., Fleet], loop: LoopThread
) -> None:
    # A peer that accepts and never answers, and a peer timeout longer than the test: a
    # scan that waited on that link could not be answered while its request still hangs.
    fleet = make_fleet("gate-a", start=False)
    hang = loop.run(Link(None, name="hang").start())
    try:
        loop.run(hang.cut("blackhole"))
        fleet.configure("gate-a", [hang.address], pull_interval_ms=200, timeout_ms=60_000)
        a = fleet.start("gate-a")
        wait_until(lambda: hang.accepted >= 1, CONVERGE, "gate-a to call the hanging peer")
        for n in range(1, 9):
            assert scan(a, n)["outcome"] == "allow"
        done = gatectl("scan", "--socket", a.socket_path, payload(9))
        assert done.returncode == 0, done.stderr
        (link,) = fleet.peer_states("gate-a")
        # Its first request is still unanswered (no failure yet), and every scan was answered.
        assert (link["failures"], link["last_error"], link["up"]) == (0, None, False), link
    finally:
        loop.run(hang.aclose())


def test_peers_that_hang_or_answer_garbage_never_stop_the_gate(
    make_fleet: Callable[..., Fleet], loop: LoopThread
) -> None:
    fleet = make_fleet("gate-a", "gate-b", start=False)
    impostors = loop.run(start_impostors(fleet.world))
    try:
        peers = [*impostors.addresses.values(), fleet.sites["gate-b"].address]
        fleet.configure("gate-a", peers, pull_interval_ms=200, timeout_ms=int(PEER_TIMEOUT * 1000))
        a, b = fleet.start("gate-a"), fleet.start("gate-b")
        admitted = set()
        for n in range(1, 16):
            decision = scan(a, n)
            assert decision["outcome"] == "allow", decision
            admitted.add(decision["record_id"])
            time.sleep(0.05)
        done = gatectl("scan", "--socket", a.socket_path, payload(16))  # what a steward types
        assert done.returncode == 0, done.stderr
        admitted.add(json.loads(done.stdout)["record_id"])

        def links() -> dict[str, dict[str, Any]]:
            return {state["address"]: state for state in fleet.peer_states("gate-a")}

        def named() -> bool:
            states = links()
            return all(
                (states[impostors.addresses[name]]["last_error"] or "").startswith(prefix)
                for name, prefix in IMPOSTOR_ERRORS.items()
            )

        wait_until(named, CONVERGE, "every impostor's link to be down with its error named")
        states = links()
        for name in IMPOSTOR_ERRORS:
            state = states[impostors.addresses[name]]
            assert state["up"] is False and state["failures"] >= 1, (name, state)
        # The real peer got every admission meanwhile, and the link to it is up.
        fleet.wait_all_hold(admitted)
        assert states[fleet.sites["gate-b"].address]["up"] is True
        # The liar's record, whatever became of it, was never stored; the gate lives on.
        liar = states[impostors.addresses["liar"]]
        assert liar["up"] is False or liar["refused"] >= 1, liar
        assert impostor_record(fleet.world)["uuid"] not in redemptions(fleet.sites["gate-a"].db)
        assert a.alive and scan(a, 17)["outcome"] == "allow"
        assert scan(b, 17)["outcome"] in ("allow", "already_used")
    finally:
        fleet.kill_all()  # gate-a calls every impostor until it stops
        for close in impostors.closers:
            loop.run(close())


def test_a_ledger_too_busy_to_store_what_a_peer_sent_costs_the_link_a_retry_not_the_gate(
    make_fleet: Callable[..., Fleet],
) -> None:
    fleet = make_fleet("gate-a", "gate-b", pull_interval_ms=200, timeout_ms=2000)
    fleet.wait_links_up()
    a, b = fleet["gate-a"], fleet["gate-b"]
    # Someone holds gate-a's ledger's write lock (a tech's sqlite3 shell, a stuck tool)
    # past the ledger's busy timeout, while gate-b admits a ticket.
    with contextlib.closing(sqlite3.connect(fleet.sites["gate-a"].db, isolation_level=None)) as holder:
        holder.execute("BEGIN IMMEDIATE")
        admitted = scan(b, 1)
        assert admitted["outcome"] == "allow"

        # Its status waits on the ledger too: what the link met is read from its log.
        a.wait_output(r"peer 127\.0\.0\.1:\d+: ledger_unavailable", stream="stderr", timeout=CONVERGE)
        holder.execute("ROLLBACK")
    assert a.alive, a.stderr()[-2000:]
    (state,) = fleet.peer_states("gate-a")
    assert state["failures"] >= 1
    fleet.wait_all_hold({admitted["record_id"]})
    fleet.wait_links_up()
    assert scan(a, 1)["outcome"] == "already_used"


# ------------------------------------------------------------------ partitions


def test_a_gate_cut_away_admits_alone_and_once_healed_every_gate_names_the_same_conflict(
    make_fleet: Callable[..., Fleet],
) -> None:
    fleet = make_fleet("gate-a", "gate-b", "gate-c", proxied=True, pull_interval_ms=300, timeout_ms=1000)
    fleet.wait_links_up()
    a, b, c = fleet["gate-a"], fleet["gate-b"], fleet["gate-c"]
    admitted: set[str] = set()

    def admit(gate: GateProcess, n: int) -> dict[str, Any]:
        decision = scan(gate, n)
        assert decision["outcome"] == "allow", decision
        admitted.add(decision["record_id"])
        return decision

    admit(b, 10)  # before the cut: every gate learns it
    fleet.wait_all_hold(admitted)

    # gate-c's own calls are refused at once; calls to it are swallowed until they time out.
    fleet.cut("gate-c", outgoing="refuse", incoming="blackhole")
    first = admit(a, 1)
    time.sleep(0.05)  # a later wall clock: gate-c's entry is the later one by any clock here
    second = admit(c, 1)  # gate-c cannot know of gate-a's entry
    wait_until(
        lambda: first["record_id"] in redemptions(fleet.sites["gate-b"].db), CONVERGE, "gate-b to learn"
    )
    used = scan(b, 1)
    assert (used["outcome"], used["last_entry_gate"]) == ("already_used", "gate-a")
    admit(c, 2)
    admit(b, 3)
    assert scan(c, 10)["outcome"] == "already_used"  # learned before the cut

    def links(gate_id: str) -> dict[str, dict[str, Any]]:
        return {state["gate"]: state for state in fleet.peer_states(gate_id)}

    def partition_seen() -> bool:
        to_c = [links(gate)["gate-c"]["last_error"] or "" for gate in ("gate-a", "gate-b")]
        from_c = [state["last_error"] or "" for state in links("gate-c").values()]
        swallowed = all(error.startswith("timeout:") for error in to_c)
        return swallowed and all(error.startswith("unreachable:") for error in from_c)

    wait_until(partition_seen, CONVERGE, "both sides to see the partition, each in its own way")
    # Still apart: gate-c holds nothing made on the other side since the cut, and they nothing of its.
    held = fleet.holdings()
    assert first["record_id"] not in held["gate-c"] and second["record_id"] not in held["gate-a"]

    fleet.heal()
    fleet.wait_all_hold(admitted)
    fleet.wait_links_up()
    held = fleet.holdings()
    assert held["gate-a"] == held["gate-b"] == held["gate-c"]  # every field, not only the uuids

    # The same verdict on every gate: the earliest entry (hybrid clock, then uuid) stands.
    entries = sorted((held["gate-a"][d["record_id"]][5], d["record_id"]) for d in (first, second))
    assert [uuid for _, uuid in entries] == [first["record_id"], second["record_id"]]
    expected = [(ticket(1), second["record_id"], first["record_id"])]

    def verdicts() -> dict[str, list[tuple[str, str, str]]]:
        return {gate_id: conflicts(site.db) for gate_id, site in fleet.sites.items()}

    wait_until(lambda: all(v == expected for v in verdicts().values()), CONVERGE, "one verdict everywhere")
    for gate_id in fleet.sites:
        status = fleet[gate_id].status()
        assert status["replication"]["conflicts"] == 1, gate_id
        # Each gate found it once, as the second of the two entries reached it.
        assert status["counters"]["conflicts"] == 1, gate_id
        assert read_counters(fleet.sites[gate_id].db)["conflicts"] == 1
        seen = scrape(fleet.sites[gate_id])
        assert seen[("gate_conflicts", ())] == 1 and seen[("gate_conflicts_found_total", ())] == 1
    for gate in (a, b, c):
        report = gate.request({"op": "conflicts"})["conflicts"]
        assert [(r["ticket_id"], r["stands"]["gate"], r["conflict"]["gate"]) for r in report] == [
            (ticket(1), "gate-a", "gate-c")
        ]
    # Healed, every gate refuses what any gate admitted.
    for gate, n in ((a, 2), (b, 2), (c, 3), (a, 1)):
        assert scan(gate, n)["outcome"] == "already_used"


# ------------------------------------------------------------------ restarts and lost state


def dropped_to(fleet: Fleet, gate_id: str, peer: str) -> int:
    (state,) = [s for s in fleet.peer_states(gate_id) if s["address"] == fleet.sites[peer].address]
    return int(state["dropped"])


def test_a_restarted_gate_catches_up_by_pulling_what_it_missed(make_fleet: Callable[..., Fleet]) -> None:
    fleet = make_fleet("gate-a", "gate-b", "gate-c", pull_interval_ms=300, timeout_ms=1000)
    fleet.wait_links_up()
    own = scan(fleet["gate-c"], 1)
    assert own["outcome"] == "allow"
    admitted = {own["record_id"]}
    fleet.wait_all_hold(admitted)
    epoch = fleet["gate-c"].status()["ledger"]["epoch"]

    fleet.stop("gate-c")
    for gate_id, n in (("gate-a", 2), ("gate-a", 3), ("gate-b", 4)):
        decision = scan(fleet[gate_id], n)
        assert decision["outcome"] == "allow"
        admitted.add(decision["record_id"])
    # Their pushes to gate-c failed and were dropped: only a pull can bring them now.
    wait_until(
        lambda: dropped_to(fleet, "gate-a", "gate-c") >= 2 and dropped_to(fleet, "gate-b", "gate-c") >= 1,
        CONVERGE,
        "the pushes to the stopped gate to be given up",
    )
    c = fleet.start("gate-c")
    fleet.wait_all_hold(admitted)
    assert c.status()["ledger"]["epoch"] == epoch  # the same database, carried on
    pulled = sum(state["pulled"] for state in fleet.peer_states("gate-c"))
    assert pulled == 3
    decision = scan(c, 2)
    assert (decision["outcome"], decision["last_entry_gate"]) == ("already_used", "gate-a")
    assert scan(c, 4)["last_entry_gate"] == "gate-b"
    assert scan(fleet["gate-a"], 1)["last_entry_gate"] == "gate-c"


def test_a_gate_whose_state_is_lost_relearns_everything_even_its_own_admissions(
    make_fleet: Callable[..., Fleet],
) -> None:
    fleet = make_fleet("gate-a", "gate-b", "gate-c", pull_interval_ms=300, timeout_ms=1000)
    fleet.wait_links_up()
    admitted = set()
    for gate_id, n in (("gate-c", 1), ("gate-c", 2), ("gate-a", 3), ("gate-b", 4)):
        decision = scan(fleet[gate_id], n)
        assert decision["outcome"] == "allow"
        admitted.add(decision["record_id"])
    fleet.wait_all_hold(admitted)
    old_epoch = fleet["gate-c"].status()["ledger"]["epoch"]
    before = fleet.holdings()["gate-a"]

    fleet.stop("gate-c")
    shutil.rmtree(fleet.sites["gate-c"].dir / "state")  # a new SD card; the config and manifest remain
    c = fleet.start("gate-c")
    new_epoch = c.status()["ledger"]["epoch"]
    assert new_epoch != old_epoch
    fleet.wait_all_hold(admitted)
    assert fleet.holdings()["gate-c"] == before  # its own old records too, under their old epoch
    own = {uuid for uuid, row in before.items() if row[2] == "gate-c"}
    assert len(own) == 2 and {before[uuid][3] for uuid in own} == {old_epoch}

    # What it admitted before it lost its state, it refuses now.
    decision = scan(c, 1)
    assert (decision["outcome"], decision["last_entry_gate"]) == ("already_used", "gate-c")
    assert scan(c, 4)["last_entry_gate"] == "gate-b"
    # And what it admits now is a new log of its own, which the others read from the start.
    fresh = scan(c, 5)
    assert fresh["outcome"] == "allow"
    admitted.add(fresh["record_id"])
    fleet.wait_all_hold(admitted)
    logs = {(row[2], row[3]) for row in fleet.holdings()["gate-a"].values() if row[2] == "gate-c"}
    assert logs == {("gate-c", old_epoch), ("gate-c", new_epoch)}
    assert scan(fleet["gate-b"], 5)["last_entry_gate"] == "gate-c"


def test_a_peer_that_says_it_has_more_but_never_moves_the_gate_on_is_not_asked_forever(
    make_fleet: Callable[..., Fleet], loop: LoopThread
) -> None:
    fleet = make_fleet("gate-a", "gate-b", start=False)
    pulls: list[bytes] = []
    page: list[dict[str, Any]] = []

    async def challenge(request: web.Request) -> web.Response:
        return web.json_response({"challenge": "c" * 40, "gate": "gate-b", "ttl_ms": 30000})

    async def pull(request: web.Request) -> web.Response:
        pulls.append(await request.read())
        # Nothing to offer until the page is made; from then on, the page and "more" forever.
        return web.json_response({"records": page, "more": bool(page)})

    async def serve() -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/v1/challenge", challenge)
        app.router.add_post("/v1/redemptions/pull", pull)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    runner = loop.run(serve())
    try:
        fleet.configure("gate-a", [f"127.0.0.1:{runner.addresses[0][1]}"], pull_interval_ms=200)
        a = fleet.start("gate-a")
        assert scan(a, 1)["outcome"] == "allow" and scan(a, 2)["outcome"] == "allow"  # its seq 1 and 2
        # A page of records of gate-a's own log, genuinely signed, at places it already holds:
        # nothing in it is new to gate-a, so the next page would be asked for with the same
        # cursor, again and again.
        epoch = a.status()["ledger"]["epoch"]
        key = read_secret(fleet.world.gate_keys["gate-a"])
        for seq in (1, 2):
            record = Redemption(
                uuid=f"00000000-0000-4000-8000-00000000000{seq}",
                ticket_id=ticket(30 + seq),
                kind="entry",
                slot=1,
                origin="gate-a",
                epoch=epoch,
                seq=seq,
                hlc=Stamp(int(time.time() * 1000), 0).packed,
                wall=time.time(),
                operator=None,
                mode="offline",
            )
            page.append(record.wire(record.sign(key)))

        def named() -> bool:
            (state,) = fleet.peer_states("gate-a")
            return (state["last_error"] or "").startswith("bad_reply:") and state["up"] is False

        wait_until(named, CONVERGE, "the link to say the peer's answers lead nowhere")
        assert pulls and a.alive
        assert scan(a, 31)["outcome"] == "allow"  # nothing of the page was taken over its own
    finally:
        fleet.kill_all()  # gate-a pulls from the server until it stops
        loop.run(runner.cleanup())


def test_a_gate_put_back_from_an_older_copy_of_its_state_relearns_what_it_admitted_since(
    make_fleet: Callable[..., Fleet], tmp_path: Path
) -> None:
    fleet = make_fleet("gate-a", "gate-b", pull_interval_ms=300, timeout_ms=1000)
    fleet.wait_links_up()
    state = fleet.sites["gate-a"].dir / "state"
    fleet.stop("gate-a")
    shutil.copytree(state, tmp_path / "backup")  # last night's image of the SD card
    a = fleet.start("gate-a")
    later = scan(a, 1)
    assert later["outcome"] == "allow"
    fleet.wait_all_hold({later["record_id"]})
    fleet.stop("gate-a")
    shutil.rmtree(state)
    shutil.copytree(tmp_path / "backup", state)  # the card fails; the image goes back in
    a = fleet.start("gate-a")
    fleet.wait_links_up()
    # What it admitted after the copy was made is still known to its peer; it must come back.
    wait_until(
        lambda: later["record_id"] in redemptions(fleet.sites["gate-a"].db), CONVERGE, "gate-a to relearn"
    )
    assert scan(a, 1)["outcome"] == "already_used"


def test_a_scan_retried_at_another_gate_with_its_scan_id_is_still_one_story_everywhere(
    make_fleet: Callable[..., Fleet],
) -> None:
    fleet = make_fleet("gate-a", "gate-b", proxied=True, pull_interval_ms=300, timeout_ms=1000)
    fleet.wait_links_up()
    fleet.cut("gate-a")  # gate-a's answer (and its push) is lost; the steward retries at gate-b
    retry = "5ca2b1d0-7a4e-4c35-9a6e-0d4e1c7b2f11"
    for gate_id in ("gate-a", "gate-b"):
        done = gatectl("scan", "--socket", fleet[gate_id].socket_path, "--scan-id", retry, payload(1))
        assert done.returncode == 0, done.stderr  # neither gate could know of the other's entry
    fleet.heal()
    fleet.wait_links_up()

    def one_story() -> bool:
        held = fleet.holdings()
        return held["gate-a"] == held["gate-b"] and conflicts(fleet.sites["gate-a"].db) != []

    # Two people went in on one single-entry ticket: both gates must hold both entries and the conflict.
    wait_until(one_story, CONVERGE, "both gates to hold the same records and the double entry")
    assert conflicts(fleet.sites["gate-a"].db) == conflicts(fleet.sites["gate-b"].db)
