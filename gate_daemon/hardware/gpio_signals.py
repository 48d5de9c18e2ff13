"""Lights and buzzer on GPIO pins, through gpiozero.

Wiring (defaults in ``config/gate.example.toml``): a green, a red and a yellow LED, each
from its GPIO pin through a resistor (330 ohm for a 5 mm LED) to ground, and an active
buzzer on its own pin (through a transistor if it draws more than a few mA). Patterns:

=============  ===========  =================================
outcome        light        buzzer
=============  ===========  =================================
allow          green        one short beep (0.1 s)
deny           red          one long tone (0.6 s)
already_used   yellow       two beeps (0.1 s, 0.1 s apart)
too_early      yellow       one beep (0.25 s)
=============  ===========  =================================

Each light stays on for ``hold`` seconds. gpiozero runs blink patterns on its own
threads, so ``show`` returns at once. The pin factory is gpiozero's default (on a Pi,
lgpio; off it, set ``GPIOZERO_PIN_FACTORY=mock``) unless one is injected (tests pass
``MockFactory()``).
"""

from __future__ import annotations

from typing import Any

from gate_daemon.config import GpioPins
from gate_daemon.core.decision import Decision, Outcome

#: (on, off, count) per outcome, in seconds.
BEEPS = {
    Outcome.ALLOW: (0.1, 0.1, 1),
    Outcome.DENY: (0.6, 0.1, 1),
    Outcome.ALREADY_USED: (0.1, 0.1, 2),
    Outcome.TOO_EARLY: (0.25, 0.1, 1),
}


class GpioSignals:
    """LEDs and a buzzer driven by gpiozero devices made on the given pins."""

    def __init__(self, pins: GpioPins, hold: float = 1.5, pin_factory: Any = None) -> None:
        from gpiozero import LED, Buzzer  # only a gate with GPIO signals imports gpiozero

        self.hold = hold
        self.green = LED(pins.green, pin_factory=pin_factory)
        self.red = LED(pins.red, pin_factory=pin_factory)
        self.yellow = LED(pins.yellow, pin_factory=pin_factory)
        self.buzzer = Buzzer(pins.buzzer, pin_factory=pin_factory) if pins.buzzer else None
        self._lights = {
            Outcome.ALLOW: self.green,
            Outcome.DENY: self.red,
            Outcome.ALREADY_USED: self.yellow,
            Outcome.TOO_EARLY: self.yellow,
        }

    def show(self, decision: Decision) -> None:
        """Light the outcome's LED for ``hold`` seconds and sound its beeps."""
        light = self._lights[decision.outcome]
        for other in {self.green, self.red, self.yellow} - {light}:
            other.off()
        light.blink(on_time=self.hold, off_time=0, n=1, background=True)
        if self.buzzer is not None:
            on, off, count = BEEPS[decision.outcome]
            self.buzzer.beep(on_time=on, off_time=off, n=count, background=True)

    async def aclose(self) -> None:
        """Everything off, and the pins released."""
        devices = [self.green, self.red, self.yellow]
        if self.buzzer is not None:
            devices.append(self.buzzer)
        for device in devices:
            device.off()
            device.close()
