"""The GPIO adapters on a real Pi's pins, through lgpio: run by a tech on a wired gate.

Skipped unless lgpio imports, a gpiochip exists and ``GATE_HW_TEST=1`` is set: these
drive real pins (the relay pulses), so they never run by accident on a gate in service.
Run on the Pi, with the gate stopped:

    sudo systemctl stop gate-daemon
    GATE_HW_TEST=1 .venv/bin/python -m pytest -q tests/test_gpio_real.py
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from gate_daemon.config.sections import DEFAULT_PINS, BuzzerKind
from gate_daemon.core.decision import Decision
from gate_daemon.core.reasons import Reason

try:
    import lgpio  # noqa: F401

    HAVE_LGPIO = True
except ImportError:
    HAVE_LGPIO = False

pytestmark = pytest.mark.skipif(
    not (HAVE_LGPIO and any(Path("/dev").glob("gpiochip*")) and os.environ.get("GATE_HW_TEST") == "1"),
    reason="needs a Raspberry Pi with lgpio and GATE_HW_TEST=1 (drives real pins)",
)


@pytest.fixture
def factory():  # type: ignore[no-untyped-def]
    from gpiozero.pins.lgpio import LGPIOFactory

    made = LGPIOFactory()
    yield made
    made.close()


async def test_lights_and_buzzer_drive_their_pins(factory) -> None:  # type: ignore[no-untyped-def]
    from gate_daemon.hardware.gpio_signals import GpioSignals

    signals = GpioSignals(DEFAULT_PINS, hold=0.3, buzzer=BuzzerKind.PLAIN, pin_factory=factory)
    try:
        signals.show(Decision(Reason.OK, "hw"))
        await asyncio.sleep(0.05)
        assert signals.green.value == 1 and signals.red.value == 0
        await asyncio.sleep(0.4)
        assert signals.green.value == 0
    finally:
        await signals.aclose()


async def test_the_relay_pulses_and_locks(factory) -> None:  # type: ignore[no-untyped-def]
    from gate_daemon.hardware.turnstile_pins import GpioRelay

    relay = GpioRelay("GPIO24", pulse=0.2, pin_factory=factory)
    try:
        assert relay.device.value == 0
        relay.pulse()
        await asyncio.sleep(0.05)
        assert relay.device.value == 1
        await asyncio.sleep(0.3)
        assert relay.device.value == 0
    finally:
        await relay.aclose()
