"""The shapes every hardware adapter has.

Each port is one verb and a lifecycle. Every port has a real adapter and a twin that
runs anywhere (see ``docs/HARDWARE.md`` for the table):

========================  ====================================  ==============================
port                      real adapter                          twin
========================  ====================================  ==============================
``ScanInput``             Pi camera, HID scanner, serial        stdin, image folder
``Decoder``               zxing-cpp, pyzbar                     (both run anywhere)
``Signals``               gpiozero LEDs and buzzer              console, none
``Relay``                 gpiozero output (turnstile release)   gpiozero mock pins
``Contact``               gpiozero input (sensor, button)       gpiozero mock pins
========================  ====================================  ==============================
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from gate_daemon.core.decision import Decision


class ScanInput(Protocol):
    """Something that produces scanned payloads (a camera, a scanner, a test's stdin)."""

    name: str
    #: ``time.monotonic()`` of the input's last sign of life (the watchdog withholds its ping
    #: when it goes stale), or None for an input that may rightly wait in silence.
    last_alive: float | None

    @property
    def problem(self) -> str | None:
        """Why the input cannot read now (a scanner unplugged, a camera failing), or None.

        The gate shows "out of service" while it is set.
        """

    def payloads(self) -> AsyncIterator[str]:
        """Payloads as they are read; ends when the input is exhausted or closed."""

    async def aclose(self) -> None:
        """Stop reading and release the device."""


@dataclass(frozen=True, slots=True)
class Frame:
    """A grey (luminance) image: ``height`` rows of ``width`` bytes, row ``r`` at ``r * stride``.

    A camera's YUV420 buffer is a frame as it comes: its Y plane is the first
    ``height * stride`` bytes, and ``stride`` may exceed ``width`` (rows are padded).
    """

    pixels: bytes | bytearray | memoryview
    width: int
    height: int
    stride: int

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1 or self.stride < self.width:
            raise ValueError(f"bad frame geometry {self.width}x{self.height} stride {self.stride}")
        size = memoryview(self.pixels).nbytes  # len() of a 2-D buffer counts rows
        if size < (self.height - 1) * self.stride + self.width:
            raise ValueError(f"frame buffer of {size} bytes is too short for its geometry")

    @classmethod
    def tight(cls, pixels: bytes | bytearray | memoryview, width: int, height: int) -> Frame:
        """A frame whose rows are not padded."""
        return cls(pixels, width, height, width)

    def rows(self) -> bytes:
        """The pixels with row padding removed: ``width * height`` bytes."""
        view = memoryview(self.pixels).cast("B")
        if self.stride == self.width:
            return bytes(view[: self.width * self.height])
        return b"".join(view[r * self.stride : r * self.stride + self.width] for r in range(self.height))


class Decoder(Protocol):
    """Finds the QR codes in a frame (QR only: other symbologies are not tickets)."""

    name: str

    def decode(self, frame: Frame) -> list[str]:
        """The text of every QR code found, in the decoder's order; [] when none is."""


class Signals(Protocol):
    """Where decisions are shown (lights, buzzer, console)."""

    def show(self, decision: Decision) -> None:
        """Show one decision; must return at once (patterns run in the background)."""

    def service(self, problem: str | None) -> None:
        """Show "out of service" while ``problem`` names why, normal idle when None.

        Called again every second or so with the current state; must be cheap when nothing
        changed. A decision shown meanwhile takes over the lights for its hold time.
        """

    async def aclose(self) -> None:
        """Turn every output off."""


class Relay(Protocol):
    """The turnstile's release: energised only for a pulse, locked otherwise."""

    def pulse(self) -> None:
        """Release the turnstile for the configured pulse length; returns at once."""

    async def aclose(self) -> None:
        """Lock (de-energise) and release the pin."""


class Contact(Protocol):
    """A switch that closes: a passage sensor or a push button."""

    def listen(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the event loop each time the contact closes."""

    async def aclose(self) -> None:
        """Stop listening and release the pin."""
