"""A supervisor's override at the gate, on real parts: the ledger file, the turnstile on mock pins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from gate_daemon.core.badges import Role
from gate_daemon.core.conflicts import Move, losers
from gate_daemon.core.evidence import EvidenceError, parse_scan
from gate_daemon.core.reasons import Outcome, Reason
from gate_daemon.gate.staff import OVERRIDE_GRACE_S
from gate_daemon.gate.turnstile import Turnstile
from gate_daemon.hardware.turnstile_pins import GpioRelay
from tests.gate_fixtures import gate_rig
from tests.staff_fixtures import staff_world
from tests.support import World

REF_T0001 = "REF-SAT-FLOOR-0001"  # single entry


async def test_a_supervisor_overrides_an_already_used_ticket(world: World, tmp_path: Path) -> None:
    staff = staff_world(world)
    async with gate_rig(world, tmp_path / "gate", manifest=staff.manifest) as rig:
        gate = rig.gate
        await gate.scan(REF_T0001, device="cam")
        refused = await gate.scan(REF_T0001, device="cam")
        assert refused.decision.outcome is Outcome.ALREADY_USED
        rig.mono.now += 20
        forced = await gate.scan(staff.badge("sam", Role.SUPERVISOR, name="Sam Lee"), device="cam")
        decision = forced.decision
        assert decision.reason is Reason.OVERRIDDEN and decision.outcome is Outcome.ALLOW
        assert decision.ticket_id == "T-0001"
        assert (decision.overrides, decision.overridden_outcome, decision.overridden_reason) == (
            refused.scan_id,
            "already_used",
            "already_used",
        )
        assert decision.message == "Admitted by supervisor Sam Lee (was already_used)"
        row = rig.rows(
            "SELECT operator, kind, outcome, reason, resolution, ticket_id, decision"
            " FROM scans WHERE uuid = ?",
            (forced.scan_id,),
        )[0]
        assert row[:6] == ("sam", "entry", "allow", "overridden", "overridden", "T-0001")
        assert json.loads(row[6])["overrides"] == refused.scan_id
        assert rig.rows("SELECT kind, slot, forced, operator FROM redemptions ORDER BY seq") == [
            ("entry", 1, 0, None),
            ("entry", None, 1, "sam"),
        ]
        counters = await rig.ledger.counters()
        assert counters["overrides"] == 1 and counters["resolution:overridden"] == 1
        assert await rig.ledger.conflict_count() == 0
        # The override does not sign the supervisor in, and spends the refusal.
        assert gate.shift.on_duty is None and gate.shift.pending is None


async def test_a_deny_is_overridden_and_the_relay_pulses(world: World, tmp_path: Path) -> None:
    staff = staff_world(world)
    factory = MockFactory()
    try:
        async with gate_rig(world, tmp_path / "gate", manifest=staff.manifest) as rig:
            relay = GpioRelay("GPIO24", pulse=5.0, pin_factory=factory)
            turnstile = Turnstile(rig.ledger, relay)
            rig.gate.turnstile = turnstile
            turnstile.start()
            pin = factory.pin(24)
            refused = await rig.gate.scan("O-102-B2", device="cam")  # T-0004: canceled
            assert refused.decision.reason is Reason.CANCELED
            assert not pin.state  # locked: a refusal never releases
            await rig.gate.scan(staff.badge("anna"), device="cam")  # a steward's badge: nothing
            assert not pin.state
            rig.clock.now += 1
            refused = await rig.gate.scan("O-102-B2", device="cam")  # refused again: pending again
            forced = await rig.gate.scan(staff.badge("sam", Role.SUPERVISOR), device="cam")
            assert forced.decision.reason is Reason.OVERRIDDEN
            assert forced.decision.overridden_outcome == "deny"
            assert pin.state  # released for the forced entry (a 5 s pulse: still high)
            await turnstile.aclose()
    finally:
        factory.reset()


async def test_a_steward_cannot_override(world: World, tmp_path: Path) -> None:
    staff = staff_world(world)
    async with gate_rig(world, tmp_path / "gate", manifest=staff.manifest) as rig:
        await rig.gate.scan(REF_T0001, device="cam")
        await rig.gate.scan(REF_T0001, device="cam")
        tried = await rig.gate.scan(staff.badge("anna", Role.STEWARD), device="cam")
        assert tried.decision.reason is Reason.OVERRIDE_NOT_SUPERVISOR
        assert tried.decision.outcome is Outcome.STAFF
        assert rig.rows("SELECT COUNT(*) FROM redemptions") == [(1,)]
        assert rig.rows("SELECT resolution FROM scans WHERE uuid = ?", (tried.scan_id,)) == [("refused",)]
        # The refusal is spent: a supervisor now signs in, admitting nobody.
        later = await rig.gate.scan(staff.badge("sam", Role.SUPERVISOR), device="cam")
        assert later.decision.reason is Reason.STAFF_SIGNED_IN
        assert rig.rows("SELECT COUNT(*) FROM redemptions") == [(1,)]


async def test_an_override_window_that_has_passed_is_named(world: World, tmp_path: Path) -> None:
    staff = staff_world(world)
    async with gate_rig(world, tmp_path / "gate", manifest=staff.manifest) as rig:
        await rig.gate.scan(REF_T0001, device="cam")
        await rig.gate.scan(REF_T0001, device="cam")
        rig.mono.now += rig.gate.shift.window_s + 1
        late = await rig.gate.scan(staff.badge("sam", Role.SUPERVISOR), device="cam")
        assert late.decision.reason is Reason.OVERRIDE_WINDOW_PASSED
        assert rig.rows("SELECT COUNT(*) FROM redemptions") == [(1,)]


async def test_a_refusal_long_past_does_not_swallow_the_next_sign_in(world: World, tmp_path: Path) -> None:
    staff = staff_world(world)
    async with gate_rig(world, tmp_path / "gate", manifest=staff.manifest) as rig:
        shift = rig.gate.shift
        await rig.gate.scan(REF_T0001, device="cam")
        await rig.gate.scan(REF_T0001, device="cam")  # already_used: pending for an override
        # Just inside the grace after the window: a supervisor who came for it is still told why not.
        rig.mono.now += shift.window_s + OVERRIDE_GRACE_S - 1
        assert shift.pending is not None
        rig.mono.now += 2  # past the grace: the refusal is forgotten
        assert shift.pending is None
        await rig.gate.scan(REF_T0001, device="cam")  # refused again: pending again
        rig.mono.now += 14400  # the shift changes four hours on
        anna = await rig.gate.scan(staff.badge("anna", name="Anna K"), device="cam")
        assert anna.decision.reason is Reason.STAFF_SIGNED_IN, anna.decision
        assert shift.on_duty is not None and shift.on_duty.operator == "anna"
        assert rig.rows("SELECT reason, operator FROM scans WHERE uuid = ?", (anna.scan_id,)) == [
            ("staff_signed_in", "anna")
        ]
        assert rig.rows("SELECT COUNT(*) FROM redemptions WHERE forced = 1") == [(0,)]


async def test_only_the_last_scan_can_be_overridden(world: World, tmp_path: Path) -> None:
    staff = staff_world(world)
    async with gate_rig(world, tmp_path / "gate", manifest=staff.manifest) as rig:
        await rig.gate.scan(REF_T0001, device="cam")
        await rig.gate.scan(REF_T0001, device="cam")  # already_used
        await rig.gate.scan(world.sign("T-0007"), device="cam")  # allowed: the refusal is no longer pending
        signed = await rig.gate.scan(staff.badge("sam", Role.SUPERVISOR), device="cam")
        assert signed.decision.reason is Reason.STAFF_SIGNED_IN
        assert rig.rows("SELECT COUNT(*) FROM redemptions WHERE forced = 1") == [(0,)]


async def test_force_needs_a_supervisor_badge_and_is_idempotent(world: World, tmp_path: Path) -> None:
    staff = staff_world(world)
    async with gate_rig(world, tmp_path / "gate", manifest=staff.manifest) as rig:
        await rig.gate.scan(REF_T0001, device="cam")
        steward = await rig.gate.force(REF_T0001, staff.badge("anna"), device="ctl")
        assert steward.decision.reason is Reason.OVERRIDE_NOT_SUPERVISOR
        not_badge = await rig.gate.force(REF_T0001, "REF-SAT-FLOOR-0001", device="ctl")
        assert not_badge.decision.reason is Reason.BADGE_INVALID and not not_badge.recorded
        client = "0b8a7c6e-1d2f-4e3a-9b8c-7d6e5f4a3b2c"
        sam = staff.badge("sam", Role.SUPERVISOR)
        forced = await rig.gate.force(REF_T0001, sam, device="ctl", scan_id=client)
        assert forced.decision.reason is Reason.OVERRIDDEN
        again = await rig.gate.force(REF_T0001, sam, device="ctl", scan_id=client)
        assert again.duplicate and again.decision.reason is Reason.OVERRIDDEN
        assert rig.rows("SELECT COUNT(*) FROM redemptions WHERE forced = 1") == [(1,)]
        # An allowed ticket is just admitted: nothing to override.
        fine = await rig.gate.force(world.sign("T-0007"), sam, device="ctl")
        assert fine.decision.reason is Reason.OK


def test_forced_entries_take_no_part_in_conflict_verdicts() -> None:
    moves = [
        Move("a", "entry", 1, "north-1"),
        Move("b", "entry", 2, "north-1", forced=True),
        Move("c", "entry", 3, "south-1"),
    ]
    assert losers(moves, 1) == {"c": "a"}


async def test_a_closed_lane_admits_nobody_even_on_a_supervisor_badge(world: World, tmp_path: Path) -> None:
    staff = staff_world(world)
    async with gate_rig(world, tmp_path / "gate", manifest=staff.manifest) as rig:
        await rig.gate.scan(REF_T0001, device="cam")
        await rig.gate.scan(REF_T0001, device="cam")
        shift, sam = rig.gate.shift, staff.badge("sam", Role.SUPERVISOR)
        verdict = shift.judge(sam, rig.watch.current, rig.clock.now, closed=True)
        assert verdict.decision.reason is Reason.LANE_CLOSED
        assert verdict.decision.overrides is None
        shift.settle(verdict, rig.clock.now)
        assert shift.pending is None  # spent: the next badge signs in


def test_an_uploaded_override_row_names_a_bad_overrides_field() -> None:
    row = {
        "uuid": "0b8a7c6e-1d2f-4e3a-9b8c-7d6e5f4a3b2c", "hlc": 1, "wall": 1.0, "device": "cam",
        "operator": "sam", "ticket_id": "T-1", "kind": "entry", "outcome": "allow", "reason": "overridden",
        "resolution": "overridden", "mode": "offline", "manifest_version": 1,
    }  # fmt: skip
    assert parse_scan(row).as_dict() == row  # an older gate's row, and any row not an override
    refused = {"scan": "1b8a7c6e-1d2f-4e3a-9b8c-7d6e5f4a3b2c", "outcome": "deny", "reason": "revoked"}
    assert parse_scan({**row, "overrides": refused}).as_dict()["overrides"] == refused
    for bad, field in (
        ({"scan": "x", "outcome": "deny", "reason": "revoked"}, "overrides.scan"),
        ({**refused, "reason": "Not A Name"}, "overrides.reason"),
        ({**refused, "extra": 1}, "overrides"),
        ("deny", "overrides"),
    ):
        with pytest.raises(EvidenceError) as caught:
            parse_scan({**row, "overrides": bad})
        assert caught.value.field == field, bad


async def test_a_release_by_hand_after_a_refusal_leaves_nothing_to_override(
    world: World, tmp_path: Path
) -> None:
    staff = staff_world(world)
    async with gate_rig(world, tmp_path / "gate", manifest=staff.manifest) as rig:
        await rig.gate.scan(REF_T0001, device="cam")
        await rig.gate.scan(REF_T0001, device="cam")
        await rig.gate.release(device="button", operator="steward")  # the steward let them in already
        after = await rig.gate.scan(staff.badge("sam", Role.SUPERVISOR), device="cam")
        assert after.decision.reason is Reason.STAFF_SIGNED_IN
        assert rig.rows("SELECT COUNT(*) FROM redemptions WHERE forced = 1") == [(0,)]
