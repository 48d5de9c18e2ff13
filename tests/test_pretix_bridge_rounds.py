"""The bridge's rounds against a real pretix: what a run learns, when cursors move, in what order it sends.

Real processes as in ``test_pretix_bridge_live``: the session's pretix, a ``gate-central``
bridging it, gates syncing with that central; records a gate would push are pushed with
the gate's own key over real HTTP (``tests.central_fixtures.GateClient``). Every wait
polls a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import time
import uuid as uuidlib
from pathlib import Path

import httpx
import pytest

from gate_daemon.central.pretix import online
from gate_daemon.central.pretix.client import PretixClient
from gate_daemon.config.load import load_config
from gate_daemon.core.decision import Checkpoint, LedgerFacts, evaluate
from gate_daemon.core.pretix_sig import ticket_id_for
from gate_daemon.core.reasons import Reason
from gate_daemon.errors import ManifestRefused
from gate_daemon.provision.keyfiles import read_secret, write_keypair
from gate_daemon.store.manifest_file import read_manifest
from tests.central_fixtures import GateClient
from tests.central_process import CONVERGE
from tests.gate_process import GateProcess, Launcher, wait_until
from tests.live import EVENT_ID
from tests.pretix_bridge_world import GATES, BridgeWorld, bridge_world, venue_toml
from tests.pretix_server import PretixServer
from tests.test_pretix_bridge_live import knows

pytestmark = [pytest.mark.pretix, pytest.mark.slow]


@pytest.fixture
def world(tmp_path: Path, pretix: PretixServer) -> BridgeWorld:
    with bridge_world(tmp_path / "bridge", pretix) as made:
        yield made  # type: ignore[misc]


def learned_tickets(world: BridgeWorld) -> set[str]:
    """The tickets the central holds records of gate ``pretix`` for (check-ins it learned)."""
    return {str(row[0]) for row in world.central.checkins().values() if row[2] == "pretix"}


def parking_list(pretix: PretixServer) -> int:
    """A third check-in list, for all products, that no zone of the bridge serves (made once a session)."""
    for found in pretix.event_api("GET", "checkinlists/")["results"]:
        if found["name"] == "Parking":
            return int(found["id"])
    return int(pretix.event_api("POST", "checkinlists/", {"name": "Parking", "all_products": True})["id"])


def checkin_on(pretix: PretixServer, secret: str, list_id: int) -> int:
    """An entry of ``secret`` on list ``list_id`` by the box office phone; pretix's status code."""
    answer = pretix.api(
        "POST",
        f"organizers/{pretix.organizer}/checkinrpc/redeem/",
        {"secret": secret, "lists": [list_id], "type": "entry", "force": False, "questions_supported": False},
        token=f"Device {pretix.other_device_token()}",
    )
    return answer.status_code


def test_a_checkin_on_a_list_no_zone_serves_is_not_learned(world: BridgeWorld, pretix: PretixServer) -> None:
    parking = parking_list(pretix)
    parked, entered = pretix.make_order(name="Parked Only"), pretix.make_order(name="Entered Main")
    assert checkin_on(pretix, parked.secret, parking) == 201
    assert pretix.checkin_as_other_device(entered.secret)[0] == 201
    main_id = ticket_id_for(EVENT_ID, entered.secret)
    wait_until(lambda: main_id in learned_tickets(world), CONVERGE, "the check-in on main, learned")
    assert ticket_id_for(EVENT_ID, parked.secret) not in learned_tickets(world)


def failed_runs(world: BridgeWorld) -> int:
    return world.central.stderr().count("may not use the id 'pretix'")


def test_the_orders_cursor_moves_only_after_the_pages_checkins_are_learned(
    world: BridgeWorld, pretix: PretixServer
) -> None:
    phone = pretix.make_order(name="Phone While Failing")
    venue = world.root / "venue.toml"
    # A venue file the bridge cannot build from: each run stops after the download, before learning.
    write_keypair(world.root / "impostor")
    venue.write_text(venue_toml(GATES) + '\n[[gates]]\nid = "pretix"\npub = "impostor.pub"\n')
    wait_until(lambda: failed_runs(world) >= 1, CONVERGE, "a failing run")
    assert pretix.checkin_as_other_device(phone.secret)[0] == 201
    seen = failed_runs(world)
    wait_until(lambda: failed_runs(world) >= seen + 2, CONVERGE * 2, "a failed run after the check-in")
    venue.write_text(venue_toml(GATES))
    ticket_id = ticket_id_for(EVENT_ID, phone.secret)
    wait_until(lambda: ticket_id in learned_tickets(world), CONVERGE * 2, "the phone's check-in, learned")


def gate_client(world: BridgeWorld, gate: str, http: httpx.AsyncClient) -> GateClient:
    return GateClient(http, gate, read_secret(world.live.gate_keys[gate]))


async def push_entries_and_voids(world: BridgeWorld, secrets: list[str]) -> list[tuple[str, str]]:
    """An offline entry of each secret and, right behind it, its void (the turnstile was not
    passed), pushed as north-1 pushes them; (entry uuid, void uuid) of each."""
    async with httpx.AsyncClient(base_url=world.central.url, timeout=30) as http:
        client = gate_client(world, "north-1", http)
        records, pairs = [], []
        for secret in secrets:
            entry = client.record(ticket_id_for(EVENT_ID, secret))
            void = client.record(entry.ticket_id, "void", voids=entry.uuid)
            records += [entry, void]
            pairs.append((entry.uuid, void.uuid))
        answer = await client.push(*records)
        assert answer.status_code == 200, answer.text
    return pairs


def held_positions(world: BridgeWorld) -> set[str]:
    """The secrets of the positions the central has downloaded from pretix."""
    return {str(secret) for (secret,) in world._query("SELECT secret FROM pretix_positions")}


def test_a_void_is_annulled_in_pretix_after_its_entry_is_stored(
    world: BridgeWorld, pretix: PretixServer
) -> None:
    orders = [pretix.make_order(name=f"Not Passed {n}") for n in range(3)]
    wait_until(
        lambda: {o.secret for o in orders} <= held_positions(world), CONVERGE, "the orders at the central"
    )
    pairs = asyncio.run(push_entries_and_voids(world, [o.secret for o in orders]))
    wanted = {u for pair in pairs for u in pair}
    wait_until(lambda: wanted <= world.uploads().keys(), CONVERGE, "the entries and voids sent")
    uploads = world.uploads()
    assert [uploads[entry][0] for entry, _ in pairs] == ["applied"] * len(pairs), uploads
    assert [uploads[void] for _, void in pairs] == [("applied", None)] * len(pairs), uploads
    # Nobody passed: pretix keeps no check-in for them.
    assert [pretix.checkins_of(o.position_id) for o in orders] == [[]] * len(orders)


def test_a_backlog_does_not_hold_up_a_cancellation(
    world: BridgeWorld, pretix: PretixServer, launch: Launcher
) -> None:
    backlog = pretix.make_positions(400, name="Backlog")  # two batches (upload.BATCH = 200)
    doomed = pretix.make_order(name="Canceled Behind A Backlog")
    gate = world.gate(launch, "north-1")
    wait_until(lambda: knows(gate, backlog[-1]) and knows(gate, doomed.secret), CONVERGE, "the tickets")
    world.central.pause()
    try:
        for secret in backlog:
            assert gate.scan(secret)["outcome"] == "allow"
    finally:
        world.central.resume()
    wait_until(lambda: bool(world.uploads()), CONVERGE, "the backlog's upload under way")
    # Canceled while the central is held mid-backlog: pretix's cancel does not queue behind the
    # upload's check-ins for SQLite's write lock, and the backlog is still there when it resumes.
    world.central.pause()
    try:
        pretix.cancel_order(doomed.order)
    finally:
        world.central.resume()
    refused = Reason.REVOKED
    wait_until(lambda: central_decides(world, doomed.secret) is refused, CONVERGE * 2, "the cancellation")
    sent = len(world.uploads())
    assert sent < len(backlog), f"the cancellation waited for the backlog ({sent} of {len(backlog)} sent)"
    wait_until(
        lambda: decides(world, gate, doomed.secret) is refused, CONVERGE, "the cancellation at the gate"
    )


def central_decides(world: BridgeWorld, secret: str) -> Reason:
    """What the central's latest manifest says of ``secret`` at zone main now."""
    folder = world.central.database.parent / "manifests"
    versions = sorted((p for p in folder.glob("*.gdm") if p.stem.isdigit()), key=lambda p: int(p.stem))
    return decided(versions[-1], world, secret) if versions else Reason.MANIFEST_MISSING


def decides(world: BridgeWorld, gate: GateProcess, secret: str) -> Reason:
    """What the gate's active manifest says of ``secret`` at zone main now (recording nothing)."""
    return decided(load_config(gate.config).active_manifest_path, world, secret)


def decided(path: Path, world: BridgeWorld, secret: str) -> Reason:
    """What the manifest file at ``path`` says of ``secret`` at zone main now, read as a gate reads it."""
    try:
        manifest = read_manifest(path, [world.live.signer.public])
    except (ManifestRefused, OSError):
        return Reason.MANIFEST_MISSING
    try:
        return evaluate(secret, manifest, Checkpoint(zone="main"), time.time(), LedgerFacts()).reason
    finally:
        manifest.release()


def test_online_first_at_a_zone_without_a_list_never_checks_in_on_another_zones_list(
    world: BridgeWorld, pretix: PretixServer, launch: Launcher
) -> None:
    venue = world.root / "venue.toml"
    venue.write_text(
        venue_toml(GATES).replace("[[gates]]", '[[zones]]\nid = "floor"\nname = "Floor"\n\n[[gates]]', 1)
    )
    fresh = pretix.make_order(name="Floor Walker")
    online = {"validate_timeout_ms": 6000, "breaker_latency_ms": 5000}
    gate = world.gate(launch, "north-1", zone="floor", decision="online-first", upstream=online)
    wait_until(lambda: knows(gate, fresh.secret), CONVERGE, "the order and the floor zone at the gate")
    wait_until(lambda: gate.status()["online"]["mode"] == "online", CONVERGE, "online mode")
    decision = gate.scan(fresh.secret)
    # The central answers 503 (no_list): the gate decides locally, and pretix was never asked.
    assert decision["reason"] == "wrong_zone", decision
    assert pretix.checkins_of(fresh.position_id) == []


async def test_online_first_names_a_position_the_bridge_has_not_downloaded_as_the_gates_do(
    pretix: PretixServer,
) -> None:
    fresh = pretix.make_order(name="Sold A Second Ago")
    async with httpx.AsyncClient() as http:
        client = PretixClient(http, pretix.url, pretix.organizer, timeout=30)
        client.use_token(pretix.other_device_token())
        nonce = str(uuidlib.uuid4())
        decision = await online.redeem(
            client, fresh.secret, pretix.lists["main"], "entry", nonce, None, event_id=EVENT_ID, timeout=30
        )
    assert decision.reason is Reason.OK, decision
    assert decision.ticket_id == ticket_id_for(EVENT_ID, fresh.secret)
