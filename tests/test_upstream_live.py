"""Gates and the reference central over real HTTP: outages, flaps, lost answers, kill -9, two gates apart.

Every gate is a real ``gate-daemon`` process; the central is a real ``gate-central``
process (``tests.central_process``), its SQLite file read read-only as an auditor would.
Where a test takes the central away, the gate reaches it through a ``tests.link_proxy.Link``
that the test cuts (new connections reset, or swallowed) and heals. What must hold in the
end is compared record by record: the uuids (and origin, epoch, seq) in the gates' ledger
files against the central's ``checkins``.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gate_daemon.net.metrics import render
from gate_daemon.store.offline_reads import read_conflicts
from tests.central_fixtures import CentralWorld
from tests.central_process import (
    CONVERGE,
    CentralProcess,
    loop_errors,
    manifest_version,
    own_records,
    upstream_config,
    upstream_status,
    wait_drained,
)
from tests.gate_process import GateProcess, Launcher, gatectl, redemptions, wait_until
from tests.link_proxy import Link
from tests.live import LiveWorld, payload, ticket, write_gate_config
from tests.loop_thread import LoopThread

#: How a loop names a central it cannot reach (a reset, a refused connection, or no answer in time).
DOWN = ("unreachable:", "timeout:")


@pytest.fixture
def uplink(gate_central: CentralProcess, loop: LoopThread) -> Iterator[Callable[[], Link]]:
    """Make links to the central (one per gate); all closed at the end."""
    made: list[Link] = []

    def make() -> Link:
        link = loop.run(Link(("127.0.0.1", gate_central.port), name="uplink").start())
        made.append(link)
        return link

    yield make
    for link in made:
        loop.run(link.aclose())


def start_gate(
    launch: Launcher, world: CentralWorld, root: Path, url: str, gate_id: str = "north-1", *, batch: int = 500
) -> GateProcess:
    """A gate without a manifest of its own, syncing with ``url``; running once it has the central's."""
    config = upstream_config(world, root / gate_id, url, gate_id=gate_id, batch=batch)
    gate = launch(config, name=gate_id)
    wait_until(lambda: manifest_version(gate) == 1, CONVERGE, f"{gate_id} to fetch the central's manifest")
    return gate


def admit(gate: GateProcess, n: int) -> str:
    """Scan ticket ``n``, which must be admitted; its record's uuid."""
    decision = gate.scan(payload(n))
    assert decision["outcome"] == "allow", decision
    return str(decision["record_id"])


def results(gate: GateProcess) -> dict[str, int]:
    """The central's answers the gate stored, by status (persisted counters)."""
    counters = gate.counters()
    return {s: counters.get(f"upstream:{s}", 0) for s in ("applied", "duplicate", "conflict", "rejected")}


def conflicts_found(gate: GateProcess) -> list[tuple[str, str, str]]:
    """The double entries the gate found: (ticket, loser uuid, winner uuid)."""
    return [(c.ticket_id, c.loser.uuid, c.winner.uuid) for c in read_conflicts(gate.ledger_path)]


def assert_central_holds_exactly(central: CentralProcess, gate: GateProcess, gate_id: str) -> None:
    """The central holds each of the gate's own records once, with the same log position, signed."""
    held = central.checkins()
    own = own_records(gate, gate_id)
    assert {uuid: row[:5] for uuid, row in held.items() if row[2] == gate_id} == own
    assert all(held[uuid][5] for uuid in own)  # signed: servable to other gates' pulls
    positions = [row[2:5] for row in held.values()]
    assert len(positions) == len(set(positions))  # no log position twice


# ------------------------------------------------------------------ a gate that starts empty


def test_a_gate_without_a_manifest_fetches_it_admits_and_finds_the_check_in_by_search(
    central_world: CentralWorld, gate_central: CentralProcess, launch: Launcher, tmp_path: Path
) -> None:
    gate = start_gate(launch, central_world, tmp_path, gate_central.url)
    wait_until(lambda: gate.counters().get("upstream:manifests") == 1, CONVERGE, "the download counted")
    uuid = admit(gate, 1)
    wait_drained(gate, gate_central, {uuid})

    found = gate.request({"op": "search", "query": ticket(1)})["results"]
    assert found[0]["ticket_id"] == ticket(1) and found[0]["match"] == "exact"
    assert [(c["kind"], c["gate"]) for c in found[0]["checkins"]] == [("entry", "north-1")]
    # A ticket nobody scanned is found with no check-in.
    (other,) = [
        r for r in gate.request({"op": "search", "query": ticket(2)})["results"] if r["match"] == "exact"
    ]
    assert other["checkins"] == []
    assert_central_holds_exactly(gate_central, gate, "north-1")
    assert gate_central.report()["checkins"] == 1

    # Its heartbeats carry its counters and a short status.
    def reported() -> bool:
        beat = gate_central.heartbeats().get("north-1")
        return beat is not None and beat[1].get("upstream:applied") == 1

    wait_until(reported, CONVERGE, "a heartbeat with the drain's counters")
    _beats, counters, status = gate_central.heartbeats()["north-1"]
    assert counters["upstream:manifests"] == 1
    assert (status["decision"], status["zone"], status["manifest"]["version"]) == ("local", "floor", 1)
    assert status["uptime_seconds"] >= 0 and "clock" in status


def test_status_metrics_and_search_show_the_central_to_techs_and_fleet_ops(
    central_world: CentralWorld, gate_central: CentralProcess, launch: Launcher, tmp_path: Path
) -> None:
    gate = start_gate(launch, central_world, tmp_path, gate_central.url)
    uuid = admit(gate, 3)
    wait_drained(gate, gate_central, {uuid})
    socket = ("--socket", str(gate.socket_path))

    shown = gatectl("status", *socket)
    assert shown.returncode == 0, shown.stderr
    assert f"central   {gate_central.url} up, 0 records to send, pull cursor" in shown.stdout, shown.stdout

    found = gatectl("search", ticket(3), *socket)
    assert found.returncode == 0, found.stderr
    line = next(row for row in found.stdout.splitlines() if row.startswith(ticket(3)))
    # The last check-in, with who made it (the scan's operator: here the user gatectl ran as).
    assert "exact" in line and re.search(r"entry at north-1( \(\S+\))?$", line), found.stdout
    missing = gatectl("search", "nothing-like-it", *socket, "--json")
    assert (missing.returncode, missing.stdout.strip()) == (1, "[]")
    refused = gatectl("search", "x", *socket)  # one character: not a search
    assert refused.returncode == 1 and "bad_request" in refused.stderr and "Traceback" not in refused.stderr

    # What fleet ops scrape: the gate's real status through the real exposition.
    metrics = render(gate.status()).decode()
    for line in (
        "gate_upstream_up 1.0",
        "gate_upstream_pending_records 0.0",
        'gate_upstream_records_total{result="applied"} 1.0',
        "gate_clock_ok 1.0",
    ):
        assert line in metrics, line
    assert 'gate_upstream_last_ok_timestamp_seconds{loop="drain"}' in metrics


def test_a_gate_without_a_central_says_so_when_asked_to_search(
    live: LiveWorld, launch: Launcher, tmp_path: Path
) -> None:
    gate = launch(write_gate_config(tmp_path / "gate.toml", live), name="alone")
    answer = gatectl("search", "A100", "--socket", str(gate.socket_path))
    assert answer.returncode == 1 and "no_upstream" in answer.stderr, answer.stderr
    status = gate.status()
    assert status["upstream"] is None and status["online"] is None and status["decision"] == "local"


# ------------------------------------------------------------------ outages


def test_what_a_gate_admits_while_the_central_is_down_reaches_it_once_it_is_back(
    central_world: CentralWorld,
    gate_central: CentralProcess,
    launch: Launcher,
    uplink: Callable[[], Link],
    loop: LoopThread,
    tmp_path: Path,
) -> None:
    link = uplink()
    gate = start_gate(launch, central_world, tmp_path, f"http://{link.address}")
    before = admit(gate, 1)
    wait_drained(gate, gate_central, {before})

    loop.run(link.cut("refuse"))
    admitted = {admit(gate, n) for n in range(2, 22)}
    assert gate.scan(payload(2))["outcome"] == "already_used"  # the gate decides alone meanwhile

    def named() -> bool:
        errors = loop_errors(gate)
        return all((errors[name] or "").startswith(DOWN) for name in ("drain", "pull", "heartbeat"))

    wait_until(named, CONVERGE, "the loops to name the outage")
    for error in loop_errors(gate).values():  # each says what, too
        assert not (error or "").rstrip().endswith(":"), error
    state = upstream_status(gate)
    assert state["pending"] == len(admitted) and state["up"] is False
    assert before in gate_central.checkins() and not admitted & gate_central.checkins().keys()

    loop.run(link.heal())
    wait_drained(gate, gate_central, admitted | {before})
    wait_until(lambda: not any(loop_errors(gate).values()), CONVERGE, "every loop to succeed again")
    assert upstream_status(gate)["up"] is True
    assert_central_holds_exactly(gate_central, gate, "north-1")
    assert set(gate_central.checkins()) == admitted | {before}
    counted = results(gate)
    assert counted["applied"] + counted["duplicate"] == len(admitted) + 1
    assert counted["conflict"] == counted["rejected"] == 0


def test_a_flapping_link_leaves_the_central_with_exactly_the_gates_records(
    central_world: CentralWorld,
    gate_central: CentralProcess,
    launch: Launcher,
    uplink: Callable[[], Link],
    loop: LoopThread,
    tmp_path: Path,
) -> None:
    link = uplink()
    gate = start_gate(launch, central_world, tmp_path, f"http://{link.address}")
    admitted: set[str] = set()
    n = 0

    def scans(count: int) -> None:
        nonlocal n
        for _ in range(count):
            n += 1
            admitted.add(admit(gate, n))

    def drain() -> dict[str, Any]:
        state: dict[str, Any] = upstream_status(gate)["loops"]["drain"]
        return state

    def failed_since(before: int) -> Callable[[], bool]:
        return lambda: drain()["failures"] > before

    for flap in range(4):
        # Scans right before each cut: their pushes are likely under way when it comes, so
        # some answers are lost after the central stored the batch.
        scans(4)
        failures = drain()["failures"]
        loop.run(link.cut("blackhole" if flap % 2 else "refuse"))
        scans(3)
        wait_until(failed_since(failures), CONVERGE, "the drain to meet the cut")
        assert drain()["error"].startswith(DOWN)
        loop.run(link.heal())
        scans(2)
        wait_until(lambda: drain()["error"] is None, CONVERGE, "the drain to get through again")
    wait_drained(gate, gate_central, admitted)

    assert set(gate_central.checkins()) == admitted
    assert_central_holds_exactly(gate_central, gate, "north-1")
    counted = results(gate)
    assert counted["applied"] + counted["duplicate"] == len(admitted)  # each answer stored once
    assert counted["conflict"] == counted["rejected"] == 0
    assert gate_central.report()["cursor"] == len(admitted)


# ------------------------------------------------------------------ answers lost


def test_a_gate_that_lost_the_centrals_answers_sends_again_and_is_told_duplicate(
    central_world: CentralWorld, gate_central: CentralProcess, launch: Launcher, tmp_path: Path
) -> None:
    gate = start_gate(launch, central_world, tmp_path, gate_central.url)
    admitted = {admit(gate, n) for n in range(1, 26)}
    wait_drained(gate, gate_central, admitted)
    first = results(gate)
    assert first["applied"] + first["duplicate"] == len(admitted)
    report = gate_central.report()
    assert gate.stop() == 0

    # As if the answers never arrived: the positions the gate keeps are gone.
    with contextlib.closing(sqlite3.connect(gate.ledger_path)) as db, db:
        assert db.execute("DELETE FROM upstream_acks").rowcount == 1
    again = launch(gate.config, name="north-1-again")
    wait_until(
        lambda: results(again)["duplicate"] == first["duplicate"] + len(admitted),
        CONVERGE,
        "every record to be sent again and answered duplicate",
    )
    wait_drained(again, gate_central, admitted)
    assert results(again) == {**first, "duplicate": first["duplicate"] + len(admitted)}
    after = gate_central.report()
    assert (after["checkins"], after["cursor"]) == (report["checkins"], report["cursor"]) == (25, 25)
    assert set(gate_central.checkins()) == admitted


# ------------------------------------------------------------------ two gates apart


def test_two_gates_apart_from_the_central_and_each_other_converge_through_it(
    central_world: CentralWorld,
    gate_central: CentralProcess,
    launch: Launcher,
    uplink: Callable[[], Link],
    loop: LoopThread,
    tmp_path: Path,
) -> None:
    links = {gate_id: uplink() for gate_id in ("north-1", "south-1")}
    gates = {
        gate_id: start_gate(launch, central_world, tmp_path, f"http://{link.address}", gate_id)
        for gate_id, link in links.items()
    }
    north, south = gates["north-1"], gates["south-1"]

    def pulled(gate: GateProcess) -> Callable[[], bool]:
        return lambda: upstream_status(gate)["loops"]["pull"]["ok_at"] is not None

    for gate in gates.values():  # each has pulled once: what it learns later comes from this outage
        wait_until(pulled(gate), CONVERGE, "a first pull")
    for link in links.values():
        loop.run(link.cut("refuse"))

    only_north = {admit(north, n) for n in (1, 2, 3)}
    only_south = {admit(south, n) for n in (4, 5)}
    first = admit(north, 6)
    time.sleep(0.05)  # a later clock: south's entry is the later one by any clock here
    second = admit(south, 6)  # neither can know of the other's
    admitted = only_north | only_south | {first, second}

    for link in links.values():
        loop.run(link.heal())
    wait_drained(north, gate_central, only_north | {first})
    wait_drained(south, gate_central, only_south | {second})

    def converged() -> bool:
        return all(set(redemptions(gate.ledger_path)) == admitted for gate in gates.values())

    wait_until(converged, CONVERGE, "each gate to learn the other's records from the central")
    assert set(gate_central.checkins()) == admitted
    for gate_id, gate in gates.items():
        assert_central_holds_exactly(gate_central, gate, gate_id)
    (conflict,) = gate_central.report()["conflicts"]
    assert (conflict["ticket_id"], conflict["winner"], conflict["loser"]) == (ticket(6), first, second)

    # Each gate judged the same double entry from what it pulled.
    def judged(gate: GateProcess) -> Callable[[], bool]:
        return lambda: conflicts_found(gate) == [(ticket(6), second, first)]

    for gate in gates.values():
        wait_until(judged(gate), CONVERGE, "each gate to find the double entry")
    # The central answers "conflict" to the entry that loses as it arrives: south's, if north's
    # got there first (its cursor is the order they arrived in); the winner never.
    held = gate_central.checkins()
    assert results(north)["conflict"] == 0
    assert results(south)["conflict"] == (1 if held[first][7] < held[second][7] else 0)

    used = south.scan(payload(1))
    assert (used["outcome"], used["last_entry_gate"]) == ("already_used", "north-1")
    used = north.scan(payload(4))
    assert (used["outcome"], used["last_entry_gate"]) == ("already_used", "south-1")


# ------------------------------------------------------------------ kill -9 mid-drain


def test_a_gate_killed_while_it_drains_a_backlog_leaves_the_central_each_record_once(
    central_world: CentralWorld,
    gate_central: CentralProcess,
    launch: Launcher,
    uplink: Callable[[], Link],
    loop: LoopThread,
    tmp_path: Path,
) -> None:
    link = uplink()
    # Small batches: the backlog takes many round trips, so the kill lands in the middle of it.
    gate = start_gate(launch, central_world, tmp_path, f"http://{link.address}", batch=10)
    loop.run(link.cut("refuse"))
    admitted = {admit(gate, n) for n in range(1, 301)}
    assert upstream_status(gate)["pending"] == 300

    loop.run(link.heal())
    wait_until(lambda: len(gate_central.checkins()) > 0, CONVERGE, "the drain to begin")
    assert gate.kill() == -9

    again = launch(gate.config, name="north-1-again")
    wait_drained(again, gate_central, admitted)
    assert set(redemptions(again.ledger_path)) == admitted  # every shown admission survived the kill
    assert set(gate_central.checkins()) == admitted
    assert_central_holds_exactly(gate_central, again, "north-1")
    counted = results(again)
    # Positions and counters move in one transaction: each record's answer was stored once,
    # whichever batches were sent twice.
    assert counted["applied"] + counted["duplicate"] == 300
    assert gate_central.report()["checkins"] == 300
