"""A whole gate started from its config with GPIO lights, buzzer, relay, sensor and button.

``app.start`` builds every device from the config on gpiozero's mock pins (what a Pi
would do on lgpio); the test presses the button and trips the sensor on those pins.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from gpiozero import DigitalInputDevice
from gpiozero.pins.mock import MockFactory, MockPWMPin

from gate_daemon.cli import gatectl
from gate_daemon.config.load import load_config
from gate_daemon.core.reasons import Outcome, Reason
from gate_daemon.daemon import app
from gate_daemon.daemon.systemd import Notifier
from gate_daemon.errors import GateError
from gate_daemon.hardware.safe_state import make_safe, output_pins
from gate_daemon.hardware.turnstile_pins import GpioContact
from tests.live import LiveWorld, write_gate_config
from tests.waiting import eventually

GREEN, RED, YELLOW, BUZZER, RELAY, PASSAGE, BUTTON = 17, 27, 22, 23, 24, 25, 5
TURNSTILE = """
[turnstile]
relay = "GPIO24"
pulse_ms = 200
passage = "GPIO25"
pass_timeout_ms = 600
button = "GPIO5"
button_action = "{action}"
button_operator = "steward"
"""


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    made = MockFactory(pin_class=MockPWMPin)
    yield made
    made.close()


def level(pins: MockFactory, number: int) -> bool:
    return bool(pins.pin(number).state)


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path, live: LiveWorld, pins: MockFactory, action: str = "release", drop: bool = True
) -> AsyncIterator[app.RunningGate]:
    if not drop:
        (tmp_path / "drop.gdm").unlink()
    path = write_gate_config(
        tmp_path / "gate.toml", live, signals="gpio", extra=TURNSTILE.format(action=action)
    )
    config = load_config(path, {})
    running = await app.start(config, pin_factory=pins)
    stop = asyncio.Event()
    task = asyncio.create_task(app.serve(running, Notifier(None), stop))
    button = running.button
    assert isinstance(button, GpioContact)
    await eventually(lambda: button.device.when_activated is not None)  # serve() listens
    try:
        yield running
    finally:
        stop.set()
        assert await task == 0


async def test_an_allow_lights_green_and_pulses_the_relay_then_the_person_passes(
    tmp_path: Path, live: LiveWorld, pins: MockFactory
) -> None:
    async with serving(tmp_path, live, pins) as running:
        result = await running.gate.scan("A100-2", device="test")
        assert result.decision.outcome is Outcome.ALLOW
        assert level(pins, RELAY) and level(pins, GREEN)
        pins.pin(PASSAGE).drive_low()  # the turnstile turns
        pins.pin(PASSAGE).drive_high()
        await eventually(lambda: not level(pins, RELAY))
        status = await running.status.snapshot()
        assert status["turnstile"] == {"relay": True, "passage_sensor": True, "pending": 0, "problem": None}
        assert status["in_service"] is True
        await asyncio.sleep(0.8)  # past the pass timeout: the entry stands
        assert (await running.gate.scan("A100-2", device="test")).decision.outcome is Outcome.ALREADY_USED
        assert not level(pins, RELAY)
    assert not level(pins, RELAY) and not level(pins, GREEN)  # stopped: locked and dark


async def test_no_passage_gives_the_ticket_back(tmp_path: Path, live: LiveWorld, pins: MockFactory) -> None:
    async with serving(tmp_path, live, pins) as running:
        first = await running.gate.scan("A100-2", device="test")
        assert first.decision.outcome is Outcome.ALLOW
        await eventually(lambda: running.turnstile is not None and running.turnstile.pending == 0)
        await asyncio.sleep(0.1)
        again = await running.gate.scan("A100-2", device="test")
        assert again.decision.outcome is Outcome.ALLOW
        assert (await running.ledger.counters())["passage:not_passed"] == 1


async def test_the_button_releases_and_records_the_steward(
    tmp_path: Path, live: LiveWorld, pins: MockFactory
) -> None:
    async with serving(tmp_path, live, pins) as running:
        pins.pin(BUTTON).drive_low()
        await eventually(lambda: level(pins, RELAY))
        pins.pin(BUTTON).drive_high()
        await eventually(lambda: not running.in_flight)
        counters = await running.ledger.counters()
        assert counters["manual_releases"] == 1
        assert "scans" not in counters  # a release is not a scan


async def test_the_exit_button_arms_an_exit_scan(tmp_path: Path, live: LiveWorld, pins: MockFactory) -> None:
    async with serving(tmp_path, live, pins, action="exit") as running:
        assert (await running.gate.sighted("A100-2", device="camera")) is not None
        running.gate._seen.clear()  # as if the repeat window had passed
        pins.pin(BUTTON).drive_low()
        await eventually(lambda: running.gate._armed is not None)
        left = await running.gate.sighted("A100-2", device="camera")
        assert left is not None and left.decision.outcome is Outcome.ALLOW
        assert level(pins, RELAY)  # an exit is released like an entry
        counters = await running.ledger.counters()
        assert counters["kind:exit"] == 1 and counters["resolution:exited"] == 1


async def test_without_a_manifest_the_lights_say_out_of_service(
    tmp_path: Path, live: LiveWorld, pins: MockFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    async with serving(tmp_path, live, pins, drop=False) as running:
        await eventually(lambda: level(pins, RED) and level(pins, YELLOW))
        assert running.status.problem == "no valid manifest"
        assert "OUT OF SERVICE" in running.status.line()
        socket = str(running.config.control.socket)
        assert await asyncio.to_thread(gatectl.main, ["status", "--socket", socket]) == 0
        shown = capsys.readouterr().out
        assert "SERVICE   OUT OF SERVICE: no valid manifest" in shown
        assert "turnstile relay, passage sensor, 0 admitted and not yet through" in shown
        result = await running.gate.scan("A100-2", device="test")
        assert result.decision.reason is Reason.MANIFEST_MISSING
        assert not level(pins, RELAY)
        # The manifest arrives: back in service, lights dark until the next scan.
        (tmp_path / "drop.gdm").write_bytes(live.manifest(1))
        await eventually(lambda: running.status.problem is None, timeout=8)
        await asyncio.sleep(1.6)  # past the deny's hold
        await eventually(lambda: not level(pins, RED) and not level(pins, YELLOW))


def open_files() -> set[str]:
    """What this process holds open now, by path."""
    held = set()
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # the descriptor listing the folder is gone already
            held.add(os.readlink(fd))
    return held


async def test_a_start_that_fails_half_way_closes_what_it_opened(
    tmp_path: Path, live: LiveWorld, pins: MockFactory
) -> None:
    with socket.socket() as taken:  # the LAN's port: the last thing but the control socket to open
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        lan = f'[lan]\nlisten = "127.0.0.1:{port}"\n'
        extra = TURNSTILE.format(action="release") + lan
        config = load_config(write_gate_config(tmp_path / "gate.toml", live, signals="gpio", extra=extra), {})
        with pytest.raises(GateError, match=f"cannot listen on 127.0.0.1:{port}"):
            await app.start(config, pin_factory=pins)
    ledger = str(config.ledger_path)
    state = config.gate.state_dir
    assert open_files().isdisjoint({ledger, f"{ledger}-wal", f"{ledger}-shm", str(state / "lock")})
    for number in (GREEN, RED, YELLOW, BUZZER, RELAY, PASSAGE, BUTTON):
        DigitalInputDevice(number, pin_factory=pins).close()  # GPIOPinInUse while a device holds it
    running = await app.start(config, pin_factory=pins)  # the lock is free, the port too now
    try:
        assert (await running.gate.scan("A100-2", device="test")).decision.outcome is Outcome.ALLOW
    finally:
        await app.shutdown(running)
    assert open_files().isdisjoint({ledger, str(state / "lock")})


def test_safe_state_drives_every_output_inactive(tmp_path: Path, live: LiveWorld, pins: MockFactory) -> None:
    extra = TURNSTILE.format(action="release").replace("pulse_ms", "relay_active_low = true\npulse_ms")
    config = load_config(write_gate_config(tmp_path / "gate.toml", live, signals="gpio", extra=extra), {})
    assert [what for what, _, _ in output_pins(config)] == [
        "green light", "red light", "yellow light", "buzzer", "turnstile relay",
    ]  # fmt: skip
    # A killed daemon left the relay energised (an active-low module: the pin low) and a light on.
    for number, stuck in ((RELAY, 0), (GREEN, 1)):
        pin = pins.pin(number)  # claimed by no device, as after a dead process
        pin.function = "output"
        pin.state = stuck
        pin.clear_states()
    report = make_safe(config, pin_factory=pins)
    assert all(line.endswith(": off") for line in report), report
    # Each output was driven to its inactive level (active low: high is locked), then let
    # go: an input again, held by the relay module's own bias or the pull resistor (hw/).
    assert pins.pin(RELAY).states[1].state == 1
    assert pins.pin(GREEN).states[1].state == 0
    assert {pins.pin(n).function for n in (GREEN, RED, YELLOW, BUZZER, RELAY)} == {"input"}
