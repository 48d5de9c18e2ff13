"""The turnstile's relay and contacts (passage sensor, steward button) on GPIO pins.

Wiring (``hw/README.md``): the relay module's input on ``turnstile.relay``; its normally
open contact into the turnstile controller's release input, so that a de-energised
relay (daemon stopped, crashed, Pi without power) leaves the turnstile locked. Pick the
relay pin by the module's polarity, so that the pin's power-on pull keeps the relay off
before the daemon runs: GPIO24 (pulled down) for an active-high module, GPIO6 (pulled
up, ``relay_active_low = true``) for an active-low one. The passage sensor and the
button close a contact to ground (internal pull-up; ``passage_active_low = false`` for a
sensor that drives its output high instead).

gpiozero calls ``when_activated`` on its own thread; ``GpioContact`` hands the event to
the event loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

#: Contact bounce ignored after a change (a reed switch or a push button chatters).
BOUNCE = 0.05


class GpioRelay:
    """A relay output: energised for ``pulse`` seconds on ``pulse()``, off otherwise."""

    def __init__(self, pin: str, pulse: float, active_low: bool = False, pin_factory: Any = None) -> None:
        from gpiozero import DigitalOutputDevice

        self.pulse_length = pulse
        self._until = 0.0  # when the pulse under way ends (time.monotonic)
        self.device = DigitalOutputDevice(
            pin, active_high=not active_low, initial_value=False, pin_factory=pin_factory
        )

    def pulse(self) -> None:
        """Release the turnstile for the pulse length (gpiozero times it on its own thread)."""
        self._until = time.monotonic() + self.pulse_length
        self.device.blink(on_time=self.pulse_length, off_time=0, n=1, background=True)

    def lock(self) -> None:
        """De-energise now (a pulse in progress is cut short)."""
        self.device.off()

    async def aclose(self) -> None:
        """Let a pulse under way finish (someone admitted is walking through), lock, release the pin."""
        left = self._until - time.monotonic()
        if left > 0:
            await asyncio.sleep(left)
        self.device.off()
        self.device.close()


class GpioContact:
    """A contact input (sensor or button) whose closing is reported on the event loop."""

    def __init__(self, pin: str, active_low: bool = True, pin_factory: Any = None) -> None:
        from gpiozero import DigitalInputDevice

        self.device = DigitalInputDevice(pin, pull_up=active_low, bounce_time=BOUNCE, pin_factory=pin_factory)

    def listen(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the running loop each time the contact closes."""
        loop = asyncio.get_running_loop()

        def closed() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the gate is stopping
                loop.call_soon_threadsafe(callback)

        self.device.when_activated = closed

    @property
    def closed(self) -> bool:
        """Whether the contact is closed now."""
        return bool(self.device.is_active)

    async def aclose(self) -> None:
        """Stop reporting and release the pin."""
        if self.device.when_activated is not None:  # gpiozero warns of clearing a callback never set
            self.device.when_activated = None
        self.device.close()
