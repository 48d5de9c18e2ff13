"""Lights and buzzer on GPIO pins, through gpiozero.

Wiring (defaults in ``config/gate.example.toml``, diagram and parts in ``hw/``): a green,
a red and a yellow LED, each from its GPIO pin through a resistor (330 ohm for a 5 mm
LED) to ground, and a buzzer on its own pin through a transistor. A plain (active)
buzzer beeps; a tonal (passive piezo) one plays notes with PWM (``signals.buzzer``).

=================  ==========================  ======================  =====================
shown              light                       plain buzzer            tonal buzzer
=================  ==========================  ======================  =====================
allow              green                       one short beep 0.1 s    rising chirp C5-G5
deny               red                         one long tone 0.6 s     low A3, 0.6 s
already_used       yellow                      two short beeps         two E5 notes
too_early          yellow                      one beep 0.25 s         one E5, 0.25 s
staff (a badge)    green and yellow blinking   three quick beeps       falling G5-E5-C5
                   together, three times
out of service     red and yellow blinking     silent                  silent
                   together, 1 s on, 1 s off
=================  ==========================  ======================  =====================

A decision's light stays on for ``hold`` seconds; during that time it replaces the out
of service blinking, which comes back at the next ``service`` call after the hold.
gpiozero runs blink and beep patterns on its own threads and the tonal melody plays on
a short-lived thread, so ``show`` returns at once. The pin factory is gpiozero's
default (on a Pi, lgpio; off it, set ``GPIOZERO_PIN_FACTORY=mock``) unless one is
injected (tests pass ``MockFactory()``; a tonal buzzer needs ``MockPWMPin`` pins).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from gate_daemon.config.sections import BuzzerKind, GpioPins
from gate_daemon.core.decision import Decision
from gate_daemon.core.reasons import Outcome

#: (on, off, count) per outcome, in seconds, for a plain buzzer.
BEEPS = {
    Outcome.ALLOW: (0.1, 0.1, 1),
    Outcome.DENY: (0.6, 0.1, 1),
    Outcome.ALREADY_USED: (0.1, 0.1, 2),
    Outcome.TOO_EARLY: (0.25, 0.1, 1),
    Outcome.STAFF: (0.05, 0.05, 3),
}
#: (note or None for a rest, seconds) per outcome, for a tonal buzzer (range A3 to A5).
TONES: dict[Outcome, tuple[tuple[str | None, float], ...]] = {
    Outcome.ALLOW: (("C5", 0.08), ("G5", 0.12)),
    Outcome.DENY: (("A3", 0.6),),
    Outcome.ALREADY_USED: (("E5", 0.1), (None, 0.1), ("E5", 0.1)),
    Outcome.TOO_EARLY: (("E5", 0.25),),
    Outcome.STAFF: (("G5", 0.06), ("E5", 0.06), ("C5", 0.06)),
}
#: Out of service: red and yellow blink together, this long on and off.
OUT_OF_SERVICE_BLINK = 1.0
#: A staff badge: green and yellow blink together this many times, this long on and off.
STAFF_BLINKS, STAFF_BLINK = 3, 0.15


class GpioSignals:
    """LEDs and a buzzer driven by gpiozero devices made on the given pins."""

    def __init__(
        self,
        pins: GpioPins,
        hold: float = 1.5,
        buzzer: BuzzerKind = BuzzerKind.PLAIN,
        pin_factory: Any = None,
        monotonic: Any = time.monotonic,
    ) -> None:
        # Only a gate with GPIO signals imports gpiozero.
        from gpiozero import LED, Buzzer, TonalBuzzer

        self.hold = hold
        self._monotonic = monotonic
        self._devices: list[Any] = []
        try:
            self.green = self._add(LED(pins.green, pin_factory=pin_factory))
            self.red = self._add(LED(pins.red, pin_factory=pin_factory))
            self.yellow = self._add(LED(pins.yellow, pin_factory=pin_factory))
            self.buzzer: Any = None
            if pins.buzzer and buzzer is BuzzerKind.TONAL:
                self.buzzer = self._add(TonalBuzzer(pins.buzzer, pin_factory=pin_factory))
            elif pins.buzzer:
                self.buzzer = self._add(Buzzer(pins.buzzer, pin_factory=pin_factory))
        except BaseException:
            self._close_all()
            raise
        self.tonal = buzzer is BuzzerKind.TONAL and self.buzzer is not None
        self._lights = {
            Outcome.ALLOW: self.green,
            Outcome.DENY: self.red,
            Outcome.ALREADY_USED: self.yellow,
            Outcome.TOO_EARLY: self.yellow,
            Outcome.STAFF: self.green,
        }
        self._showing_until = 0.0
        self._out_of_service = False
        self._melody = 0  # a newer melody stops an older one still playing
        self._melody_lock = threading.Lock()

    def _add(self, device: Any) -> Any:
        self._devices.append(device)
        return device

    def show(self, decision: Decision) -> None:
        """Light the outcome's LED for ``hold`` seconds and sound its pattern."""
        light = self._lights[decision.outcome]
        self._out_of_service = False  # its blinking is replaced; ``service`` brings it back
        for other in (self.green, self.red, self.yellow):
            if other is not light:
                other.off()
        if decision.outcome is Outcome.STAFF:  # no ticket's colour: a pattern of its own
            for lit in (self.green, self.yellow):
                lit.blink(on_time=STAFF_BLINK, off_time=STAFF_BLINK, n=STAFF_BLINKS, background=True)
        else:
            light.blink(on_time=self.hold, off_time=0, n=1, background=True)
        self._showing_until = self._monotonic() + self.hold
        if self.buzzer is None:
            return
        if self.tonal:
            self._play(TONES[decision.outcome])
        else:
            on, off, count = BEEPS[decision.outcome]
            self.buzzer.beep(on_time=on, off_time=off, n=count, background=True)

    def service(self, problem: str | None) -> None:
        """Blink red and yellow while out of service; dark when in service and idle."""
        if self._monotonic() < self._showing_until:
            return  # a decision holds the lights
        if problem is not None and not self._out_of_service:
            self.green.off()
            self.red.blink(on_time=OUT_OF_SERVICE_BLINK, off_time=OUT_OF_SERVICE_BLINK, background=True)
            self.yellow.blink(on_time=OUT_OF_SERVICE_BLINK, off_time=OUT_OF_SERVICE_BLINK, background=True)
            self._out_of_service = True
        elif problem is None and self._out_of_service:
            self.red.off()
            self.yellow.off()
            self._out_of_service = False

    def _play(self, melody: tuple[tuple[str | None, float], ...]) -> None:
        with self._melody_lock:
            self._melody += 1
            number = self._melody
        threading.Thread(target=self._melody_thread, args=(melody, number), daemon=True).start()

    def _melody_thread(self, melody: tuple[tuple[str | None, float], ...], number: int) -> None:
        try:
            for note, seconds in melody:
                if self._melody != number:
                    return
                if note is None:
                    self.buzzer.stop()
                else:
                    self.buzzer.play(note)
                time.sleep(seconds)
            if self._melody == number:
                self.buzzer.stop()
        except Exception:  # noqa: S110 (the buzzer was closed under a melody at shutdown)
            pass

    async def aclose(self) -> None:
        """Everything off, and the pins released."""
        with self._melody_lock:
            self._melody += 1
        self._close_all()

    def _close_all(self) -> None:
        for device in self._devices:
            # A tonal buzzer has no off(): stop() silences it.
            silence = getattr(device, "off", None) or device.stop
            silence()
            device.close()
