"""The turnstile: relay pulses on allow, passage sensor, not-passed voids, the steward's button.

Real parts: a real ledger file, a real gate, gpiozero devices on gpiozero's mock pins.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from gate_daemon.core.decision import ScanKind
from gate_daemon.core.reasons import Outcome, Reason
from gate_daemon.gate.turnstile import Turnstile
from gate_daemon.hardware.turnstile_pins import GpioContact, GpioRelay
from tests.gate_fixtures import Rig, gate_rig
from tests.support import World
from tests.waiting import eventually

REF_T0001 = "REF-SAT-FLOOR-0001"  # T-0001: Saturday, floor, one entry
REF_UNKNOWN = "REF-NOT-A-TICKET-0000"
RELAY, PASSAGE, BUTTON = 24, 25, 5


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    factory = MockFactory()
    yield factory
    factory.reset()


def relay_level(pins: MockFactory) -> bool:
    return bool(pins.pin(RELAY).state)


def wire(
    rig: Rig, pins: MockFactory, *, sensor: bool = True, timeout: float = 0.3, active_low: bool = False
) -> Turnstile:
    relay = GpioRelay(f"GPIO{RELAY}", pulse=0.15, active_low=active_low, pin_factory=pins)
    passage = GpioContact(f"GPIO{PASSAGE}", pin_factory=pins) if sensor else None
    turnstile = Turnstile(rig.ledger, relay, passage, pass_timeout=timeout)
    rig.gate.turnstile = turnstile
    turnstile.start()
    return turnstile


async def running(turnstile: Turnstile) -> asyncio.Task[None]:
    task = asyncio.create_task(turnstile.run())
    await asyncio.sleep(0)
    return task


async def stop(task: asyncio.Task[None], turnstile: Turnstile) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await turnstile.aclose()


async def test_only_an_allow_pulses_the_relay(world: World, tmp_path: Path, pins: MockFactory) -> None:
    async with gate_rig(world, tmp_path / "state") as rig:
        turnstile = wire(rig, pins, sensor=False)
        assert not relay_level(pins)
        denied = await rig.gate.scan(REF_UNKNOWN, device="test")
        assert denied.decision.outcome is Outcome.DENY and not relay_level(pins)
        allowed = await rig.gate.scan(REF_T0001, device="test")
        assert allowed.decision.outcome is Outcome.ALLOW
        assert relay_level(pins)  # energised at once...
        await eventually(lambda: not relay_level(pins))  # ...and locked again after the pulse
        used = await rig.gate.scan(REF_T0001, device="test")
        assert used.decision.outcome is Outcome.ALREADY_USED and not relay_level(pins)
        await turnstile.aclose()
        assert pins.pin(RELAY).state == 0


async def test_an_active_low_relay_idles_high_and_pulses_low(
    world: World, tmp_path: Path, pins: MockFactory
) -> None:
    async with gate_rig(world, tmp_path / "state") as rig:
        turnstile = wire(rig, pins, sensor=False, active_low=True)
        assert pins.pin(RELAY).state == 1  # inactive for an active-low module
        await rig.gate.scan(REF_T0001, device="test")
        assert pins.pin(RELAY).state == 0
        await eventually(lambda: pins.pin(RELAY).state == 1)
        await turnstile.aclose()
        assert pins.pin(RELAY).state == 1


async def test_a_person_who_never_passes_leaves_the_ticket_usable(
    world: World, tmp_path: Path, pins: MockFactory
) -> None:
    async with gate_rig(world, tmp_path / "state") as rig:
        turnstile = wire(rig, pins, timeout=0.2)
        task = await running(turnstile)
        first = await rig.gate.scan(REF_T0001, device="test")
        assert first.decision.outcome is Outcome.ALLOW and turnstile.pending == 1
        await eventually(lambda: turnstile.pending == 0)
        await eventually(lambda: rig.scalar("SELECT COUNT(*) FROM redemptions WHERE kind = 'void'") == 1)
        assert rig.rows("SELECT resolution FROM scans WHERE uuid = ?", (first.scan_id,)) == [("not_passed",)]
        assert rig.rows("SELECT voids FROM redemptions WHERE kind = 'void'") == [(first.scan_id,)]
        again = await rig.gate.scan(REF_T0001, device="test")
        assert again.decision.outcome is Outcome.ALLOW  # the holder can try again
        # This time they pass: the entry stands.
        pins.pin(PASSAGE).drive_low()
        pins.pin(PASSAGE).drive_high()
        await eventually(lambda: turnstile.pending == 0)
        await asyncio.sleep(0.3)
        third = await rig.gate.scan(REF_T0001, device="test")
        assert third.decision.outcome is Outcome.ALREADY_USED
        await stop(task, turnstile)
        counters = await rig.ledger.counters()
        assert counters["passage:not_passed"] == 1 and counters["passage:passed"] == 1


async def test_a_passage_with_nothing_released_is_counted(
    world: World, tmp_path: Path, pins: MockFactory
) -> None:
    async with gate_rig(world, tmp_path / "state") as rig:
        turnstile = wire(rig, pins)
        task = await running(turnstile)
        pins.pin(PASSAGE).drive_low()
        await stop(task, turnstile)  # closing waits for the count to be written
        assert (await rig.ledger.counters())["passage:unreleased"] == 1
        assert turnstile.pending == 0


async def test_sensor_callbacks_from_another_thread_run_on_the_loop(
    world: World, tmp_path: Path, pins: MockFactory
) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []
    contact = GpioContact(f"GPIO{PASSAGE}", pin_factory=pins)
    contact.listen(lambda: seen.append(threading.get_ident()))
    # gpiozero calls when_activated on the thread that saw the edge: here, a foreign one.
    other = threading.Thread(target=pins.pin(PASSAGE).drive_low)
    other.start()
    other.join()
    await eventually(lambda: seen == [loop_thread])
    assert contact.closed
    await contact.aclose()


async def test_the_release_button_opens_and_is_recorded(
    world: World, tmp_path: Path, pins: MockFactory
) -> None:
    async with gate_rig(world, tmp_path / "state") as rig:
        turnstile = wire(rig, pins, sensor=False)
        result = await rig.gate.release(device="button", operator="steward")
        assert result.decision.reason is Reason.MANUAL_RELEASE
        assert result.decision.outcome is Outcome.ALLOW and relay_level(pins)
        assert rig.signals.shown[-1].reason is Reason.MANUAL_RELEASE
        row = rig.rows(
            "SELECT device, operator, ticket_id, outcome, reason, resolution, fingerprint, manifest_version"
            " FROM scans WHERE uuid = ?",
            (result.scan_id,),
        )
        assert row == [("button", "steward", None, "allow", "manual_release", "released", "", 1)]
        assert rig.scalar("SELECT COUNT(*) FROM redemptions") == 0
        assert (await rig.ledger.counters())["manual_releases"] == 1
        await turnstile.aclose()


async def test_a_release_the_ledger_cannot_record_does_not_open(
    world: World, tmp_path: Path, pins: MockFactory
) -> None:
    async with gate_rig(world, tmp_path / "state") as rig:
        turnstile = wire(rig, pins, sensor=False)
        await rig.ledger.close()  # the file is gone from under the gate
        result = await rig.gate.release(device="button", operator="steward")
        assert result.decision.reason is Reason.LEDGER_UNAVAILABLE and not result.recorded
        assert not relay_level(pins)
        await turnstile.aclose()


async def test_the_exit_button_makes_the_next_input_scan_an_exit(world: World, tmp_path: Path) -> None:
    async with gate_rig(world, tmp_path / "state") as rig:
        entered = await rig.gate.sighted(REF_T0001, device="camera")
        assert entered is not None and entered.decision.outcome is Outcome.ALLOW
        rig.mono.now += 5  # past the repeat window
        rig.gate.arm_exit("steward", 10)
        left = await rig.gate.sighted(REF_T0001, device="camera")
        assert left is not None and left.decision.outcome is Outcome.ALLOW
        assert rig.rows("SELECT kind, operator, resolution FROM scans WHERE uuid = ?", (left.scan_id,)) == [
            ("exit", "steward", "exited")
        ]
        rig.mono.now += 5
        # Armed once: the next scan is an entry again (T-0001 allows one entry: used).
        after = await rig.gate.sighted(REF_T0001, device="camera")
        assert after is not None and after.decision.outcome is Outcome.ALREADY_USED


async def test_a_stray_code_does_not_use_up_an_armed_exit(world: World, tmp_path: Path) -> None:
    async with gate_rig(world, tmp_path / "state") as rig:
        assert (await rig.gate.sighted(REF_T0001, device="camera")) is not None
        rig.mono.now += 5
        rig.gate.arm_exit("steward", 10)
        stray = await rig.gate.sighted("hello, not a ticket", device="camera")
        assert stray is not None and stray.decision.ticket_id is None
        left = await rig.gate.sighted(REF_T0001, device="camera")
        assert left is not None
        assert rig.rows("SELECT kind, resolution FROM scans WHERE uuid = ?", (left.scan_id,)) == [
            ("exit", "exited")
        ]


async def test_an_armed_exit_lapses(world: World, tmp_path: Path) -> None:
    async with gate_rig(world, tmp_path / "state") as rig:
        rig.gate.arm_exit("steward", 10)
        rig.mono.now += 11
        result = await rig.gate.sighted(REF_T0001, device="camera")
        assert result is not None
        assert rig.rows("SELECT kind FROM scans WHERE uuid = ?", (result.scan_id,)) == [
            (ScanKind.ENTRY.value,)
        ]


class BrokenRelay:
    """A relay whose driver fails (a GPIO error, no thread left to time the pulse)."""

    def __init__(self) -> None:
        self.closed = False

    def pulse(self) -> None:
        raise RuntimeError("can't start new thread")

    async def aclose(self) -> None:
        self.closed = True


async def test_a_relay_that_fails_neither_breaks_the_scan_nor_keeps_the_ticket(
    world: World, tmp_path: Path, pins: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with gate_rig(world, tmp_path / "state") as rig:
        relay = BrokenRelay()
        passage = GpioContact(f"GPIO{PASSAGE}", pin_factory=pins)
        turnstile = Turnstile(rig.ledger, relay, passage, pass_timeout=0.2)
        rig.gate.turnstile = turnstile
        turnstile.start()
        task = await running(turnstile)
        # The scan was committed and shown: the gate answers it, it does not raise.
        first = await rig.gate.scan(REF_T0001, device="test")
        assert first.decision.outcome is Outcome.ALLOW and first.recorded
        assert "the turnstile's relay failed" in caplog.text
        # Nobody could pass a turnstile that never opened: the admission is taken back.
        await eventually(lambda: rig.scalar("SELECT COUNT(*) FROM redemptions WHERE kind = 'void'") == 1)
        again = await rig.gate.scan(REF_T0001, device="test")
        assert again.decision.outcome is Outcome.ALLOW
        released = await rig.gate.release(device="button", operator="steward")
        assert released.decision.reason is Reason.MANUAL_RELEASE
        await stop(task, turnstile)
        assert relay.closed


async def test_a_stop_in_the_same_turn_as_a_release_ends_the_watch(
    world: World, tmp_path: Path, pins: MockFactory
) -> None:
    async with gate_rig(world, tmp_path / "state") as rig:
        turnstile = wire(rig, pins, timeout=5.0)
        task = await running(turnstile)
        turnstile.release("scan-1")
        for _ in range(5):  # a few turns of the loop: the watch now waits for scan-1's deadline
            await asyncio.sleep(0)
        turnstile.release("scan-2")  # wakes the watch...
        task.cancel()  # ...and the gate is told to stop before the watch runs again
        try:
            done, _ = await asyncio.wait({task}, timeout=2)
            # Python 3.11's asyncio.wait_for returns the finished wait and drops the
            # cancellation: the task group would wait for the watch forever.
            assert task in done and task.cancelled()
        finally:
            task.cancel()
            await asyncio.wait({task}, timeout=2)
            await turnstile.aclose()


async def test_a_dead_sensor_stops_giving_tickets_back(
    world: World, tmp_path: Path, pins: MockFactory
) -> None:
    from gate_daemon.gate.turnstile import SUSPECT_AFTER

    async with gate_rig(world, tmp_path / "state") as rig:
        turnstile = wire(rig, pins, timeout=0.1)
        task = await running(turnstile)

        # The sensor never fires: the first admissions are taken back...
        def voids() -> int:
            return int(rig.scalar("SELECT COUNT(*) FROM redemptions WHERE kind = 'void'"))

        for missed in range(1, SUSPECT_AFTER):
            assert (await rig.gate.scan(REF_T0001, device="test")).decision.outcome is Outcome.ALLOW
            async with asyncio.timeout(5):
                while voids() < missed:
                    await asyncio.sleep(0.01)
        assert turnstile.problem is None
        # ...until so many in a row went unseen that the sensor is not believed: entries stand.
        assert (await rig.gate.scan(REF_T0001, device="test")).decision.outcome is Outcome.ALLOW
        await eventually(lambda: turnstile.problem is not None)
        assert "saw no one pass" in (turnstile.problem or "")
        assert voids() == SUSPECT_AFTER - 1
        used = await rig.gate.scan(REF_T0001, device="test")
        assert used.decision.outcome is Outcome.ALREADY_USED  # a screenshot does not get in again
        # The sensor reports a passage again: it is believed again.
        pins.pin(PASSAGE).drive_low()
        await eventually(lambda: turnstile.problem is None)
        await stop(task, turnstile)
        assert (await rig.ledger.counters())["passage:unverified"] == 1


async def test_closing_lets_a_pulse_under_way_finish(pins: MockFactory) -> None:
    relay = GpioRelay(f"GPIO{RELAY}", pulse=0.3, pin_factory=pins)
    relay.pulse()
    started = asyncio.get_running_loop().time()
    await relay.aclose()  # a stop right after an admission: the person still walks through
    assert asyncio.get_running_loop().time() - started >= 0.25
    assert pins.pin(RELAY).state == 0
