"""A USB barcode scanner in keyboard (HID) mode, read through Linux evdev.

The scanner types each code and presses Enter; ``KeyboardWedge`` turns its key events
back into the payload. The device is grabbed (``EVIOCGRAB``) so the typing reaches the
gate alone, never a login prompt on the console or a desktop's focused window.

An unplugged or missing scanner never stops the gate: the problem is logged once, the
device is looked for again every ``retry`` seconds, and a scanner plugged back in
works at once. Payload text is never logged (ticket codes are bearer secrets).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from gate_daemon.hardware.keymap import KeyboardWedge

log = logging.getLogger(__name__)

#: Seconds between looks for a scanner that is not there.
RETRY = 1.0
#: linux/input-event-codes.h
EV_KEY = 1

_ABSENT = frozenset({errno.ENOENT, errno.ENODEV, errno.ENXIO})
_DENIED = frozenset({errno.EACCES, errno.EPERM})
_NOT_CONNECTED = "not connected"


def open_evdev(path: Path) -> Any:
    """The evdev input device at ``path`` (python-evdev's ``InputDevice``)."""
    # Imported here: a gate without a HID scanner never loads evdev.
    import evdev

    return evdev.InputDevice(path)


class HidScannerInput:
    """Payloads typed by a keyboard-wedge scanner, one per Enter.

    Wiring (``hw/README.md``): set the scanner to a US keyboard layout with an Enter
    suffix. Point ``input.device`` at a name that survives re-plugging: the link
    ``/dev/gate-scanner`` made by ``hw/99-gate-scanner.rules`` (a udev rule on the
    scanner's USB ids), or its ``/dev/input/by-id/usb-...-event-kbd`` link. The gate's
    user must be in the ``input`` group (the unit file adds it, and allows ``/dev/input``
    read-only: evdev then opens the node read-only, which is all reading and grabbing
    need). ``grab = false`` lets the keystrokes reach the console too, for bench tests only.
    """

    name = "hid"
    last_alive: float | None = None  # a scanner waits in silence for the next ticket

    @property
    def problem(self) -> str | None:
        """Why the scanner cannot be read now (unplugged, no permission), or None."""
        return self._problem

    def __init__(
        self,
        path: Path,
        grab: bool = True,
        open_device: Callable[[Path], Any] | None = None,
        *,
        retry: float = RETRY,
    ) -> None:
        self.path = path
        self.grab = grab
        self.retry = retry
        self._open_device = open_device if open_device is not None else open_evdev
        self._device: Any = None
        self._grabbed = False
        self._closing = asyncio.Event()
        #: What was last logged about the scanner being unusable; None while it works.
        self._problem: str | None = None

    async def payloads(self) -> AsyncIterator[str]:
        """Payloads as they are scanned, until ``aclose``; outlives unplugging."""
        closing = asyncio.ensure_future(self._closing.wait())
        read: asyncio.Future[Any] | None = None
        try:
            while not self._closing.is_set():
                device = self._connect()
                if device is not None:
                    wedge = KeyboardWedge()  # a new device starts with no keys held
                    try:
                        while True:
                            read = asyncio.ensure_future(device.async_read())
                            await asyncio.wait((read, closing), return_when=asyncio.FIRST_COMPLETED)
                            if self._closing.is_set():
                                return
                            for event in read.result():
                                if event.type == EV_KEY:
                                    payload = wedge.feed(event.code, event.value, event.timestamp())
                                    if payload is not None:
                                        yield payload
                    except OSError as exc:
                        # A code cut off mid-scan is lost with its wedge: the person scans again.
                        log.error(
                            "HID scanner %s was lost (%s); waiting for it to return", self.path, _reason(exc)
                        )
                        self._problem = _NOT_CONNECTED
                        self._release()
                await asyncio.wait((closing,), timeout=self.retry)
        finally:
            closing.cancel()
            if read is not None:
                _forget(read)
            self._release()

    async def aclose(self) -> None:
        """Stop reading, release the grab and close the device."""
        self._closing.set()
        self._release()

    def _connect(self) -> Any:
        """The opened (and grabbed) device, or None after noting why it cannot be had."""
        try:
            device = self._open_device(self.path)
        except OSError as exc:
            self._unusable(self._explain(exc))
            return None
        if self.grab:
            try:
                device.grab()
            except OSError as exc:
                device.close()
                busy = exc.errno == errno.EBUSY
                self._unusable("another program has grabbed it" if busy else self._explain(exc))
                return None
        self._device, self._grabbed = device, self.grab
        if self._problem is not None:
            log.warning("HID scanner %s is back (%s)", self.path, device.name)
        else:
            log.info(
                "reading HID scanner %s (%s)%s", self.path, device.name, ", grabbed" if self.grab else ""
            )
        self._problem = None
        return device

    def _explain(self, exc: OSError) -> str:
        if exc.errno in _DENIED:
            return "permission denied: the gate's user must be in the 'input' group"
        if exc.errno in _ABSENT:
            return _NOT_CONNECTED
        return _reason(exc)

    def _unusable(self, problem: str) -> None:
        if problem != self._problem:  # once per change, not once a second
            log.error("HID scanner %s: %s; trying again every %g s", self.path, problem, self.retry)
        self._problem = problem

    def _release(self) -> None:
        device, self._device = self._device, None
        if device is None:
            return
        if self._grabbed:
            with contextlib.suppress(OSError):  # an unplugged device cannot be ungrabbed, nor needs it
                device.ungrab()
        with contextlib.suppress(OSError):
            device.close()


def _forget(read: asyncio.Future[Any]) -> None:
    """Cancel a pending read; a finished one's failure (the device lost as the input closed) is moot."""
    if not read.cancel() and not read.cancelled():
        read.exception()


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__
