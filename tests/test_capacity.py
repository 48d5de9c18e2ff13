"""Capacity: the limits in event.toml and the manifest, the counts in the ledger, the check at the gate.

The pure parts (``core.capacity``) by example and by property; the counts through real
ledger files; the check through a real gate (``gate.scan.Gate``) on its real ledger and
manifest watch. Strict mode across gates on real sockets is in
``tests/test_capacity_machine.py``.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gate_daemon.cli.gatectl import main
from gate_daemon.core.capacity import VENUE, Grant, Limit, Limits, Tally, bounded, to_give
from gate_daemon.core.decision import Decision, ScanKind
from gate_daemon.core.manifest import open_manifest
from gate_daemon.core.reasons import Outcome, Reason
from gate_daemon.core.screen import scan_view
from gate_daemon.errors import SourceError
from gate_daemon.provision.event import load_event
from gate_daemon.store.capacity_grants import Ask, GrantTaken, give, open_ask, open_asks, take
from gate_daemon.store.ledger import Ledger
from gate_daemon.store.schema import MIGRATIONS
from tests.capacity_fixtures import capacity_event, capacity_gate
from tests.gate_fixtures import RecordingSignals
from tests.live import EVENT_ID, make_live_world, payload, tickets_csv

# ------------------------------------------------------------------ the pure rule


def limits(capacity: int = 10, mode: str = "strict", gates: tuple[str, ...] = ("a", "b", "c")) -> Limits:
    return Limits(mode, (Limit("floor", "Floor", capacity),), gates)


def ok(zone: str | None = "floor") -> Decision:
    return Decision(Reason.OK, "Entry allowed", ticket_id="T-1", zone=zone)


@given(capacity=st.integers(1, 10_000), count=st.integers(1, 40))
def test_the_initial_shares_add_up_to_the_capacity_and_differ_by_one_at_most(
    capacity: int, count: int
) -> None:
    gates = tuple(f"g{n:02d}" for n in range(count))
    found = limits(capacity, gates=gates)
    shares = [found.initial(found.limits[0], gate) for gate in gates]
    assert sum(shares) == capacity
    assert max(shares) - min(shares) <= 1
    assert found.initial(found.limits[0], "not-in-the-roster") == 0


def test_count_mode_refuses_at_the_capacity_with_the_count_in_the_message() -> None:
    found = limits(3, mode="count")
    assert bounded(ok(), ScanKind.ENTRY, found, {"floor": Tally(inside=2)}, "a").reason is Reason.OK
    full = bounded(ok(), ScanKind.ENTRY, found, {"floor": Tally(inside=3)}, "a")
    assert full.reason is Reason.VENUE_FULL and full.outcome is Outcome.TOO_EARLY
    assert full.message == "Zone Floor full: 3 of 3 inside"
    assert full.ticket_id == "T-1" and full.zone == "floor"


def test_strict_mode_admits_from_the_gates_own_share_only() -> None:
    found = limits(9)  # 3 each
    mine = Tally(inside=3, own_entries=3)
    full = bounded(ok(), ScanKind.ENTRY, found, {"floor": mine}, "a")
    assert full.reason is Reason.VENUE_FULL
    assert "3 of 9 inside" in full.message and "this gate's places" in full.message
    # An exit here, or a place granted, is one more place here.
    for more in (Tally(inside=2, own_entries=3, own_exits=1), Tally(inside=3, own_entries=3, granted_in=1)):
        assert bounded(ok(), ScanKind.ENTRY, found, {"floor": more}, "a").reason is Reason.OK
    given_away = Tally(granted_out=3)
    assert bounded(ok(), ScanKind.ENTRY, found, {"floor": given_away}, "a").reason is Reason.VENUE_FULL


def test_exits_refusals_and_other_zones_pass_unweighed() -> None:
    found = limits(1, mode="count")
    full = {"floor": Tally(inside=5)}
    assert bounded(ok(), ScanKind.EXIT, found, full, "a").reason is Reason.OK
    refused = Decision(Reason.REVOKED, "Ticket has been revoked", zone="floor")
    assert bounded(refused, ScanKind.ENTRY, found, full, "a") is refused
    assert bounded(ok("balcony"), ScanKind.ENTRY, found, full, "a").reason is Reason.OK
    assert bounded(ok(), ScanKind.ENTRY, None, full, "a").reason is Reason.OK


def test_the_venue_limit_applies_to_every_zone() -> None:
    found = Limits("count", (Limit(VENUE, "Live Night", 2),), ())
    full = bounded(ok("balcony"), ScanKind.ENTRY, found, {VENUE: Tally(inside=2)}, "a")
    assert full.reason is Reason.VENUE_FULL and full.message == "Venue full: 2 of 2 inside"
    assert bounded(ok(None), ScanKind.ENTRY, found, {VENUE: Tally(inside=2)}, "a").reason is Reason.VENUE_FULL


@given(
    own=st.integers(-5, 1000), theirs=st.integers(0, 1000), want=st.integers(1, 1000), urgent=st.booleans()
)
def test_a_grant_never_exceeds_what_the_giver_holds_or_what_was_asked(
    own: int, theirs: int, want: int, urgent: bool
) -> None:
    given_places = to_give(own, theirs, want, urgent=urgent)
    assert 0 <= given_places <= max(0, min(own, want))
    if urgent and own >= 1:
        assert given_places >= 1
    if not urgent:
        # Half the difference at most: shares never swing back and forth.
        assert own - given_places >= theirs + given_places or given_places == 0


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5), st.lists, max_leaves=8))
def test_a_grant_from_garbage_is_refused_by_name(data: object) -> None:
    with pytest.raises(ValueError, match="grant"):
        Grant.parse(data)


@given(
    st.fixed_dictionaries(
        {
            "uuid": st.text(max_size=130),
            "event": st.text(min_size=1, max_size=4),
            "scope": st.text(min_size=1, max_size=4),
            "giver": st.text(min_size=1, max_size=4),
            "receiver": st.text(min_size=1, max_size=4),
            "places": st.integers(-3, 10_000_003) | st.booleans() | st.none(),
        }
    )
)
def test_a_grant_with_one_bad_field_names_it(data: dict[str, object]) -> None:
    try:
        grant = Grant.parse(data)
    except ValueError as exc:
        assert str(exc).startswith("grant")
    else:
        assert Grant.parse(json.loads(json.dumps(grant.wire_body()))) == grant


# ------------------------------------------------------------------ event.toml and the manifest


def test_capacities_travel_from_event_toml_into_the_signed_manifest(tmp_path: Path) -> None:
    world = make_live_world(tmp_path, gates=("g1", "g2"))
    event = capacity_event(world, venue=500, floor=100, mode="strict")
    manifest = open_manifest(world.manifest(event=event), [world.signer.public])
    header = manifest.header
    assert (header.capacity, header.capacity_mode) == (500, "strict")
    assert {z.id: z.capacity for z in header.zones} == {"floor": 100, "balcony": None}
    found = Limits.of(header)
    assert found is not None and found.strict and found.gates == ("g1", "g2")
    assert [(limit.scope, limit.capacity) for limit in found.limits] == [(VENUE, 500), ("floor", 100)]


def test_a_manifest_without_capacities_reads_as_before(tmp_path: Path) -> None:
    world = make_live_world(tmp_path)
    manifest = open_manifest(world.manifest(), [world.signer.public])
    assert "capacity" not in manifest.header.raw["event"]
    assert manifest.header.capacity is None and manifest.header.capacity_mode == "count"
    assert Limits.of(manifest.header) is None


def test_count_is_the_mode_when_none_is_given(tmp_path: Path) -> None:
    world = make_live_world(tmp_path)
    manifest = open_manifest(world.manifest(event=capacity_event(world, floor=5)), [world.signer.public])
    assert manifest.header.raw["event"]["capacity_mode"] == "count"
    assert manifest.header.capacity is None


@pytest.mark.parametrize(
    ("event_lines", "zone_lines", "where", "says"),
    [
        ("capacity = 0", "", "event.capacity", "outside 1..10000000"),
        ('capacity = "many"', "", "event.capacity", "expected an integer"),
        ('capacity_mode = "loose"', "", "event.capacity_mode", "must be one of: count, strict"),
        ("", "capacity = -1", "zones[0].capacity", "outside"),
        ("", "capacity = 1.5", "zones[0].capacity", "expected an integer"),
        ("", "seats = 4", "zones[0].seats", "unknown key"),
    ],
)
def test_a_bad_capacity_is_named_with_its_key_and_line(
    tmp_path: Path, event_lines: str, zone_lines: str, where: str, says: str
) -> None:
    world = make_live_world(tmp_path)
    path = tmp_path / "event.toml"
    text = path.read_text()
    text = text.replace('name = "Live Night"\n', f'name = "Live Night"\n{event_lines}\n')
    text = text.replace('id = "floor"\nname = "Floor"\n', f'id = "floor"\nname = "Floor"\n{zone_lines}\n')
    path.write_text(text)
    with pytest.raises(SourceError) as caught:
        load_event(path)
    problems = caught.value.problems
    assert any(p.where == where and says in p.message and p.line for p in problems), problems
    assert world.event.capacity is None


# ------------------------------------------------------------------ the counts in the ledger


async def test_the_counts_survive_a_restart_and_a_void_gives_the_place_back(tmp_path: Path) -> None:
    world = make_live_world(tmp_path / "world", gates=("g1",))
    event = capacity_event(world, floor=3, mode="count")
    async with capacity_gate(world, event, tmp_path / "g1", "g1", tickets=tickets_csv(6)) as node:
        for n in (1, 2):
            assert (await node.gate.scan(payload(n), device="t")).decision.reason is Reason.OK
        third = await node.gate.scan(payload(3), device="t")
        assert third.decision.reason is Reason.OK
        assert (await node.gate.scan(payload(4), device="t")).decision.reason is Reason.VENUE_FULL
        assert node.ledger.occupancy.tallies["floor"].inside == 3
        await node.ledger.void(third.scan_id, wall=world.now, operator=None, counters=[])
        assert node.ledger.occupancy.tallies["floor"].inside == 2
        in_memory = dict(node.ledger.occupancy.tallies)
    reopened = await Ledger.open(tmp_path / "g1" / "ledger.sqlite", "g1")
    try:
        assert reopened.occupancy.tallies == in_memory
        assert in_memory["*"] == Tally(inside=2, own_entries=2)
    finally:
        await reopened.close()


async def test_records_learned_from_a_peer_count_for_their_tickets_zone(tmp_path: Path) -> None:
    world = make_live_world(tmp_path / "world", gates=("g1", "g2"))
    event = capacity_event(world, floor=2, mode="count")
    tickets = tickets_csv(4)
    async with (
        capacity_gate(world, event, tmp_path / "g1", "g1", tickets=tickets) as one,
        capacity_gate(world, event, tmp_path / "g2", "g2", tickets=tickets) as two,
    ):
        entered = await one.gate.scan(payload(1), device="t")
        assert entered.decision.reason is Reason.OK
        records, _ = await one.ledger.records_after({}, 100)
        await two.replication.receive([one.replication.wire(r) for r, _ in records])
        assert two.ledger.occupancy.tallies["floor"] == Tally(inside=1)
        assert (await two.gate.scan(payload(2), device="t")).decision.reason is Reason.OK
        # Now full as gate g2 counts it: one of g1's, one of its own.
        full = await two.gate.scan(payload(3), device="t")
        assert full.decision.reason is Reason.VENUE_FULL, full.decision
        assert full.decision.message == "Zone Floor full: 2 of 2 inside"
        # g1's void of its entry, learned, frees the place at g2.
        await one.ledger.void(entered.scan_id, wall=world.now, operator=None, counters=[])
        records, _ = await one.ledger.records_after({}, 100)
        await two.replication.receive([one.replication.wire(r) for r, _ in records])
        assert two.ledger.occupancy.tallies["floor"].inside == 1
        assert (await two.gate.scan(payload(3), device="t")).decision.reason is Reason.OK


async def test_exits_free_places(tmp_path: Path) -> None:
    world = make_live_world(tmp_path / "world", gates=("g1",))
    event = capacity_event(world, venue=1, mode="strict")
    async with capacity_gate(world, event, tmp_path / "g1", "g1", tickets=tickets_csv(3)) as node:
        assert (await node.gate.scan(payload(1), device="t")).decision.reason is Reason.OK
        signals = node.gate.signals
        assert isinstance(signals, RecordingSignals)
        full = await node.gate.scan(payload(2), device="t")
        assert full.decision.reason is Reason.VENUE_FULL
        assert signals.shown[-1].reason is Reason.VENUE_FULL  # shown, in yellow
        left = await node.gate.scan(payload(1), device="t", kind=ScanKind.EXIT)
        assert left.decision.reason is Reason.OK
        assert (await node.gate.scan(payload(2), device="t")).decision.reason is Reason.OK
        status = node.gate.capacity.status(node.watch.current)
        assert status == [{"scope": "*", "capacity": 1, "mode": "strict", "inside": 1, "share": 0}]


# ------------------------------------------------------------------ grants in the store


async def test_a_grant_is_written_once_and_answered_again_for_the_same_ask(tmp_path: Path) -> None:
    giver = await Ledger.open(tmp_path / "giver.sqlite", "g1")
    receiver = await Ledger.open(tmp_path / "receiver.sqlite", "g2")
    try:
        made = 0

        def amount(_tallies: dict[str, Tally]) -> int:
            nonlocal made
            made += 1
            return 4

        def sign(grant: Grant) -> str:
            return "00" * 64

        first = await give(
            giver, "ask-1", event=EVENT_ID, scope="floor", receiver="g2", amount=amount, sign=sign
        )
        again = await give(
            giver, "ask-1", event=EVENT_ID, scope="floor", receiver="g2", amount=amount, sign=sign
        )
        assert first == again and made == 1
        assert giver.occupancy.tallies["floor"] == Tally(granted_out=4)
        with pytest.raises(GrantTaken):
            await give(giver, "ask-1", event=EVENT_ID, scope="floor", receiver="g3", amount=amount, sign=sign)
        await open_ask(receiver, Ask("ask-1", "floor", "g1", 4, urgent=False))
        assert [a.uuid for a in await open_asks(receiver)] == ["ask-1"]
        await take(receiver, *first)
        await take(receiver, *first)  # a second answer to the same ask changes nothing
        assert receiver.occupancy.tallies["floor"] == Tally(granted_in=4)
        assert await open_asks(receiver) == []
    finally:
        await giver.close()
        await receiver.close()


# ------------------------------------------------------------------ the bench


def test_bench_gate_with_capacity_weighs_every_admission_and_fills_the_venue_exactly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "gate", "--rounds", "40", "--capacity", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "# gatectl bench gate --rounds 40 --capacity" in out
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        # Every admission counted; the venue (40 places, strict, one gate) is exactly full.
        assert db.execute("SELECT entries, exits FROM occupancy WHERE scope = '*'").fetchall() == [(40, 0)]
        assert db.execute("SELECT COUNT(*) FROM scans WHERE reason = 'venue_full'").fetchone() == (0,)


def test_the_gate_screen_says_full_with_the_count() -> None:
    full = bounded(ok(), ScanKind.ENTRY, limits(3, mode="count"), {"floor": Tally(inside=3)}, "a")
    view = scan_view(full, None, None, 0.0, names=False)
    assert (view["colour"], view["headline"]) == ("yellow", "Full")
    assert view["text"] == "Zone Floor full: 3 of 3 inside"
    assert view["advice"] == "Ask them to wait: someone must leave first"


async def test_a_ledger_from_before_capacity_is_counted_once_when_it_migrates(tmp_path: Path) -> None:
    world = make_live_world(tmp_path / "world", gates=("g1",))
    event = capacity_event(world, floor=5, mode="count")
    async with capacity_gate(world, event, tmp_path / "g1", "g1", tickets=tickets_csv(4)) as node:
        for n in (1, 2, 3):
            assert (await node.gate.scan(payload(n), device="t")).decision.reason is Reason.OK
        assert (await node.gate.scan(payload(1), device="t", kind=ScanKind.EXIT)).decision.reason is Reason.OK
        counted = dict(node.ledger.occupancy.tallies)
    db = tmp_path / "g1" / "ledger.sqlite"
    # The capacity migration's number (others may come after it: they are idempotent).
    version = next(n for n, sql in enumerate(MIGRATIONS, 1) if "EXISTS occupancy (" in sql)
    with sqlite3.connect(db) as conn:
        # As the file was before the capacity migration: no counts at all.
        conn.executescript(
            "DROP TRIGGER occupancy_scan; DROP TRIGGER occupancy_void; DROP TABLE occupancy;"
            f" PRAGMA user_version = {version - 1};"
        )
    for _ in range(2):  # migrated, then run again from the version before: counted once
        reopened = await Ledger.open(db, "g1")
        try:
            assert reopened.occupancy.tallies == counted
            assert counted["floor"] == Tally(inside=2, own_entries=3, own_exits=1)
        finally:
            await reopened.close()
        with sqlite3.connect(db) as conn:
            conn.execute(f"PRAGMA user_version = {version - 1}")
