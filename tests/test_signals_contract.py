"""One contract for every signals adapter, then what only the GPIO lights do.

Every adapter (console, none, GPIO with a plain buzzer, GPIO with a tonal buzzer on
gpiozero's mock PWM pins) shows every outcome and the manual release, goes out of and
back into service, and closes. Then the GPIO specifics: the out-of-service blinking,
a decision taking over from it, and the tonal buzzer's notes.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Iterator

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from gate_daemon.config.sections import BuzzerKind, GpioPins
from gate_daemon.core.decision import Decision
from gate_daemon.core.reasons import Reason
from gate_daemon.hardware.console_signals import ConsoleSignals
from gate_daemon.hardware.factory import NullSignals
from gate_daemon.hardware.gpio_signals import TONES, GpioSignals
from gate_daemon.hardware.ports import Signals
from tests.waiting import eventually

PINS = GpioPins(green="GPIO17", red="GPIO27", yellow="GPIO22", buzzer="GPIO23")
DECISIONS = [
    Decision(Reason.OK, "Welcome", ticket_id="T-0001"),
    Decision(Reason.UNKNOWN_TICKET, "Unknown ticket"),
    Decision(Reason.ALREADY_USED, "Already used", ticket_id="T-0001"),
    Decision(Reason.TOO_EARLY, "Too early", ticket_id="T-0002"),
    Decision(Reason.MANUAL_RELEASE, "Released by staff"),
]


class RecordingPWMPin(MockPWMPin):
    """gpiozero's mock PWM pin, remembering every frequency it was set to (a tonal buzzer's notes)."""

    def __init__(self, factory: MockFactory, info: object) -> None:
        super().__init__(factory, info)
        self.frequencies: list[float | None] = []

    def _set_frequency(self, value: float | None) -> None:
        self.frequencies.append(value)
        super()._set_frequency(value)


@pytest.fixture
def pwm_pins() -> Iterator[MockFactory]:
    made = MockFactory(pin_class=RecordingPWMPin)
    yield made
    made.close()


def lights(factory: MockFactory) -> tuple[bool, bool, bool]:
    return (bool(factory.pin(17).state), bool(factory.pin(27).state), bool(factory.pin(22).state))


ADAPTERS: dict[str, Callable[[MockFactory, io.StringIO], Signals]] = {
    "console": lambda _pins, out: ConsoleSignals(out, color="never"),
    "none": lambda _pins, _out: NullSignals(),
    "gpio-plain": lambda pins, _out: GpioSignals(PINS, hold=0.2, pin_factory=pins),
    "gpio-tonal": lambda pins, _out: GpioSignals(PINS, hold=0.2, buzzer=BuzzerKind.TONAL, pin_factory=pins),
}


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
async def test_every_adapter_shows_everything_and_closes(adapter: str, pwm_pins: MockFactory) -> None:
    out = io.StringIO()
    signals = ADAPTERS[adapter](pwm_pins, out)
    for decision in DECISIONS:
        signals.show(decision)  # returns at once: patterns run in the background
        signals.service(None)
    signals.service("no valid manifest")
    signals.service("no valid manifest")  # called every second: no change, no noise
    signals.service(None)
    await signals.aclose()
    if adapter == "console":
        lines = out.getvalue().splitlines()
        assert [line.split()[1] for line in lines[:5]] == ["ALLOW", "DENY", "USED", "EARLY", "ALLOW"]
        assert lines[5].endswith("OUT OF SERVICE: no valid manifest")
        assert lines[6].endswith("IN SERVICE")
        assert len(lines) == 7
    if adapter.startswith("gpio"):
        assert lights(pwm_pins) == (False, False, False)
        assert not pwm_pins.pin(23).state


async def test_gpio_out_of_service_blinks_red_and_yellow_together(pwm_pins: MockFactory) -> None:
    signals = GpioSignals(PINS, hold=0.2, pin_factory=pwm_pins)
    try:
        signals.service("no valid manifest")
        await eventually(lambda: lights(pwm_pins) == (False, True, True))
        await eventually(lambda: lights(pwm_pins) == (False, False, False))  # blinking, not steady
        await eventually(lambda: lights(pwm_pins) == (False, True, True))
        signals.service(None)
        assert lights(pwm_pins) == (False, False, False)
    finally:
        await signals.aclose()


async def test_gpio_a_decision_takes_over_then_out_of_service_returns(pwm_pins: MockFactory) -> None:
    now = [100.0]
    signals = GpioSignals(PINS, hold=30, pin_factory=pwm_pins, monotonic=lambda: now[0])
    try:
        signals.service("the manifest has expired")
        signals.show(Decision(Reason.MANIFEST_EXPIRED, "Out of service"))
        await eventually(lambda: lights(pwm_pins) == (False, True, False))  # the deny: red only
        now[0] += 29  # within the hold: the decision keeps the lights
        signals.service("the manifest has expired")
        assert lights(pwm_pins) == (False, True, False)
        now[0] += 2  # past it
        signals.service("the manifest has expired")
        await eventually(lambda: lights(pwm_pins) == (False, True, True))
    finally:
        await signals.aclose()


@pytest.mark.parametrize("reason", [Reason.OK, Reason.UNKNOWN_TICKET, Reason.ALREADY_USED, Reason.TOO_EARLY])
async def test_gpio_tonal_buzzer_plays_the_outcomes_notes(pwm_pins: MockFactory, reason: Reason) -> None:
    from gpiozero.tones import Tone

    signals = GpioSignals(PINS, hold=0.2, buzzer=BuzzerKind.TONAL, pin_factory=pwm_pins)
    buzzer = pwm_pins.pin(23)
    try:
        buzzer.frequencies.clear()
        decision = Decision(reason, "x")
        signals.show(decision)
        melody = TONES[decision.outcome]
        expected = [None if note is None else Tone(note).frequency for note, _ in melody] + [None]
        await eventually(lambda: len(buzzer.frequencies) >= len(expected))
        await asyncio.sleep(0.05)
        assert [None if f is None else pytest.approx(f) for f in buzzer.frequencies] == expected
    finally:
        await signals.aclose()
