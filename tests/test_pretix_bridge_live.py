"""The central as a bridge to a real pretix: gates admit its tickets offline, pretix gets each check-in once.

Real processes throughout: the session's pretix (``tests.pretix_server``), a
``gate-central`` bridging it through a link the test cuts (pretix down) and heals, and
``gate-daemon`` gates syncing with that central. Every wait polls a condition with a
deadline; nothing here measures time.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gate_daemon.core.pretix_sig import ticket_id_for
from tests.central_process import CONVERGE
from tests.gate_process import GateProcess, Launcher, query, redemptions, wait_until
from tests.live import EVENT_ID
from tests.pretix_bridge_world import BridgeWorld, bridge_world, pretix_time
from tests.pretix_server import PretixServer

pytestmark = [pytest.mark.pretix, pytest.mark.slow]


@pytest.fixture
def world(tmp_path: Path, pretix: PretixServer) -> BridgeWorld:
    with bridge_world(tmp_path / "bridge", pretix) as made:
        yield made  # type: ignore[misc]


def knows(gate: GateProcess, secret: str) -> bool:
    """Whether the gate's manifest has the ticket of ``secret`` (asked by an exit scan, which records nothing
    for a ticket that is not inside)."""
    return gate.scan(secret, kind="exit")["reason"] not in ("unknown_ticket", "manifest_missing")


def test_gates_admit_offline_while_pretix_is_down_and_pretix_ends_with_each_checkin_once_at_scan_time(
    world: BridgeWorld, pretix: PretixServer, launch: Launcher
) -> None:
    fresh = [pretix.make_order(name=f"Offline {n}") for n in range(3)]
    vip = pretix.make_order("vip", name="Offline vip")
    gate = world.gate(launch, "north-1")
    lounge = world.gate(launch, "south-1", zone="vip")

    wait_until(lambda: knows(gate, fresh[-1].secret), CONVERGE, "the new orders at the gate")
    wait_until(lambda: knows(lounge, vip.secret), CONVERGE, "the new orders at the vip gate")
    world.cut()
    scans = {}
    for position in fresh:
        decision = gate.scan(position.secret)
        assert decision["outcome"] == "allow", decision
        scans[position.position_id] = decision
    decision = lounge.scan(vip.secret)
    assert decision["outcome"] == "allow", decision
    scans[vip.position_id] = decision
    assert lounge.scan(fresh[0].secret)["reason"] == "wrong_zone"
    assert all(pretix.checkins_of(p.position_id) == [] for p in fresh)

    world.heal()
    wait_until(
        lambda: all(pretix.checkins_of(p.position_id) for p in (*fresh, vip)),
        CONVERGE,
        "the check-ins in pretix",
    )
    walls = {
        str(u): float(w)
        for ledger in (gate.ledger_path, lounge.ledger_path)
        for u, w in query(ledger, "SELECT uuid, wall FROM redemptions")
    }
    for position in (*fresh, vip):
        held = pretix.checkins_of(position.position_id)
        assert len(held) == 1, held
        assert held[0]["type"] == "entry"
        wall = walls[str(scans[position.position_id]["record_id"])]
        assert abs(pretix_time(held[0]["datetime"]) - wall) < 1.0, (held, wall)
    assert held[0]["list"] == pretix.lists["vip"]
    assert pretix.checkins_of(fresh[0].position_id)[0]["list"] == pretix.lists["main"]
    uploads = world.uploads()
    assert {uploads[str(d["record_id"])][0] for d in scans.values()} == {"applied"}


def test_an_order_canceled_in_pretix_is_refused_at_the_gate_after_the_next_sync(
    world: BridgeWorld, pretix: PretixServer, launch: Launcher
) -> None:
    doomed = pretix.make_order(name="Cancel Later")
    gate = world.gate(launch, "north-1")
    wait_until(lambda: knows(gate, doomed.secret), CONVERGE, "the order")
    before = world.central.report()["manifest"]["version"]
    pretix.cancel_order(doomed.order)

    def refused_version_active() -> bool:
        latest = world.central.report()["manifest"]["version"]
        return bool(latest > before and gate.status()["manifest"].get("version") == latest)

    wait_until(refused_version_active, CONVERGE, "the version after the cancellation at the gate")
    decision = gate.scan(doomed.secret)
    assert (decision["outcome"], decision["reason"]) == ("deny", "revoked"), decision


def test_a_checkin_by_another_pretix_device_is_already_used_at_a_gate(
    world: BridgeWorld, pretix: PretixServer, launch: Launcher
) -> None:
    fresh = pretix.make_order(name="Box Office")
    status, answer = pretix.checkin_as_other_device(fresh.secret)
    assert status == 201, answer
    gate = world.gate(launch, "north-1")
    ticket_id = ticket_id_for(EVENT_ID, fresh.secret)

    def learned() -> bool:
        return any(
            row[:3] == (ticket_id, "entry", "pretix") for row in redemptions(gate.ledger_path).values()
        )

    wait_until(learned, CONVERGE, "the phone's check-in, learned from the central")
    decision = gate.scan(fresh.secret)
    assert (decision["outcome"], decision["last_entry_gate"]) == ("already_used", "pretix"), decision
    (held,) = pretix.checkins_of(fresh.position_id)
    # The phone is named: its record at the gate carries pretix's device, as the gate's report shows it.
    operators = query(gate.ledger_path, "SELECT operator FROM redemptions WHERE ticket_id = ?", ticket_id)
    assert operators == [(f"pretix device {held['device']}",)], (operators, held)
    # ... and so does a ticket search at the gate (gatectl search): who checked it in.
    (hit,) = [
        r
        for r in gate.request({"op": "search", "query": "Box Office"})["results"]
        if r["ticket_id"] == ticket_id
    ]
    assert hit["checkins"][0] == {
        **hit["checkins"][0],
        "gate": "pretix",
        "operator": f"pretix device {held['device']}",
    }


def test_seeded_states_are_refused_at_the_gate_by_name(
    world: BridgeWorld, pretix: PretixServer, launch: Launcher
) -> None:
    gate = world.gate(launch, "north-1")
    paid = pretix.positions["paid3"]
    wait_until(lambda: knows(gate, paid.secret), CONVERGE, "the manifest")
    reasons = {name: gate.scan(pretix.positions[name].secret)["reason"] for name in ("pending", "blocked")}
    assert reasons == {"pending": "unpaid", "blocked": "blocked"}
    assert gate.scan(pretix.positions["revoked"].secret)["reason"] == "revoked"
    assert gate.scan(pretix.positions["canceled"].secret)["reason"] == "revoked"
    assert gate.scan("not-a-pretix-secret-at-all")["reason"] == "unknown_ticket"
    # The refusals reach pretix as failed check-ins (its own reports see them), with pretix's reason.
    blocked = pretix.positions["blocked"].secret
    wait_until(
        lambda: "REASONS=blocked" in failed_checkins(pretix, blocked), CONVERGE * 2, "the failed check-in"
    )


def failed_checkins(pretix: PretixServer, secret: str) -> str:
    """The reasons of the failed check-ins of ``secret`` that a bridge reported (read in pretix's shell)."""
    script = (
        "from pretix.base.models import Checkin\n"
        f"found = Checkin.all.filter(successful=False, raw_barcode={secret!r})\n"
        "found = found.filter(device__name__startswith='gate-central')\n"
        "print('REASONS=' + ','.join(c.error_reason for c in found))"
    )
    return pretix.shell(script)


def test_the_device_token_is_kept_0600_and_never_in_the_log(world: BridgeWorld) -> None:
    kept = world.root / "state" / "pretix-device.json"
    wait_until(kept.exists, CONVERGE, "the device file")
    assert kept.stat().st_mode & 0o777 == 0o600
    token = __import__("json").loads(kept.read_text())["api_token"]
    assert token not in world.central.stderr()
    init = (world.root / "pretix-init-token").read_text().strip()
    assert init not in world.central.stderr()
    with sqlite3.connect(world.central.database) as db:
        assert db.execute("SELECT COUNT(*) FROM pretix_positions").fetchone()[0] >= 8


def test_a_resend_after_a_crash_is_not_a_second_checkin_in_pretix(
    world: BridgeWorld, pretix: PretixServer, launch: Launcher
) -> None:
    fresh = [pretix.make_order(name=f"Resend {n}") for n in range(2)]
    gate = world.gate(launch, "north-1")
    wait_until(lambda: knows(gate, fresh[-1].secret), CONVERGE, "the orders")
    uuids = {str(gate.scan(p.secret)["record_id"]) for p in fresh}
    wait_until(lambda: uuids <= world.uploads().keys(), CONVERGE, "the uploads")
    world.central.close()
    world.forget_uploads()
    world.restart_central()
    wait_until(lambda: uuids <= world.uploads().keys(), CONVERGE, "the uploads sent again")
    assert [len(pretix.checkins_of(p.position_id)) for p in fresh] == [1, 1]


def test_a_double_entry_at_two_gates_cut_off_from_each_other_is_a_conflict_and_pretix_stores_both(
    world: BridgeWorld, pretix: PretixServer, launch: Launcher
) -> None:
    shared = pretix.make_order(name="Two Gates")
    north, south = world.gate(launch, "north-1"), world.gate(launch, "south-1")
    wait_until(lambda: knows(north, shared.secret) and knows(south, shared.secret), CONVERGE, "the order")
    world.central.pause()
    try:
        first = north.scan(shared.secret)
        second = south.scan(shared.secret)
    finally:
        world.central.resume()
    assert first["outcome"] == second["outcome"] == "allow"
    uuids = {str(first["record_id"]), str(second["record_id"])}
    wait_until(lambda: uuids <= world.uploads().keys(), CONVERGE, "both uploads")
    assert sorted(s for s, _ in (world.uploads()[u] for u in uuids)) == ["applied", "conflict"]
    assert len(pretix.checkins_of(shared.position_id)) == 2
    assert [c["ticket_id"] for c in world.central.report()["conflicts"]] == [
        ticket_id_for(EVENT_ID, shared.secret)
    ]


def test_an_exit_and_a_reentry_reach_pretix_in_order(
    world: BridgeWorld, pretix: PretixServer, launch: Launcher
) -> None:
    fresh = pretix.make_order(name="In Out In")
    gate = world.gate(launch, "north-1")
    wait_until(lambda: knows(gate, fresh.secret), CONVERGE, "the order")
    outcomes = [gate.scan(fresh.secret, kind=k)["outcome"] for k in ("entry", "exit", "entry")]
    assert outcomes == ["allow", "allow", "allow"]
    assert gate.scan(fresh.secret)["outcome"] == "already_used"
    wait_until(lambda: len(pretix.checkins_of(fresh.position_id)) == 3, CONVERGE, "three check-ins in pretix")
    held = sorted(pretix.checkins_of(fresh.position_id), key=lambda c: c["datetime"])
    assert [c["type"] for c in held] == ["entry", "exit", "entry"]


def test_online_first_asks_pretix_with_the_records_nonce(
    world: BridgeWorld, pretix: PretixServer, launch: Launcher
) -> None:
    fresh = pretix.make_order(name="Online First")
    online = {"validate_timeout_ms": 6000, "breaker_latency_ms": 5000}
    gate = world.gate(launch, "north-1", decision="online-first", upstream=online)
    wait_until(lambda: gate.status()["manifest"].get("version") is not None, CONVERGE, "the manifest")
    wait_until(lambda: gate.status()["online"]["mode"] == "online", CONVERGE, "online mode")
    decision = gate.scan(fresh.secret)
    assert decision["outcome"] == "allow", decision
    # pretix has it at once: the central asked pretix's redeem before the gate answered.
    (checkin,) = pretix.checkins_of(fresh.position_id)
    assert checkin["type"] == "entry"
    status, answer = pretix.checkin_as_other_device(fresh.secret)
    assert (status, answer["reason"]) == (400, "already_redeemed")
    uuid = str(decision["record_id"])
    wait_until(lambda: uuid in world.uploads(), CONVERGE, "the gate's record at the bridge")
    assert world.uploads()[uuid][0] in ("applied", "duplicate")
    assert len(pretix.checkins_of(fresh.position_id)) == 1


def test_participant_search_goes_through_pretix(
    world: BridgeWorld, pretix: PretixServer, launch: Launcher
) -> None:
    fresh = pretix.make_order(name="Searchable Person")
    gate = world.gate(launch, "north-1")
    ticket_id = ticket_id_for(EVENT_ID, fresh.secret)

    def found() -> list[dict[str, object]]:
        results: list[dict[str, object]] = gate.request({"op": "search", "query": "Searchable Person"})[
            "results"
        ]
        return results

    wait_until(lambda: any(r["ticket_id"] == ticket_id for r in found()), CONVERGE, "pretix's search result")
    (hit,) = [r for r in found() if r["ticket_id"] == ticket_id]
    assert hit["match"] == "pretix" and hit["order_id"] == fresh.order
