"""A barcode scanner on a serial line (RS-232 adapter, USB CDC-ACM, or the Pi's UART).

The scanner sends each code followed by CR, LF or CRLF. pyserial opens the port raw
(8N1, no echo, no newline translation, no flow control) and locks it against other
programs; bytes are then read as the event loop finds the port readable
(``loop.add_reader`` on its file descriptor) rather than on a thread as ``stdin_input``
does: a port's descriptor can be watched like a socket, so ``aclose`` releases it at
once with no blocked thread to wake, and a read never waits (it takes what has arrived).

Blank lines are skipped; bytes that are not UTF-8 are kept as escapes and a line
longer than ``MAX_LINE`` is cut and marked ``UNREADABLE``, so such lines are decided as
``invalid_payload``. An unplugged or missing port never stops the gate: the problem is
logged once and the port is opened again as soon as it is back. Payload text is never
logged (ticket codes are bearer secrets).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from gate_daemon.hardware.keymap import UNREADABLE
from gate_daemon.hardware.stdin_input import MAX_LINE

log = logging.getLogger(__name__)

#: Seconds between attempts to open a port that is not there.
RETRY = 1.0
#: The most read from the port at once.
CHUNK = 4096

_ABSENT = frozenset({errno.ENOENT, errno.ENODEV, errno.ENXIO})
_DENIED = frozenset({errno.EACCES, errno.EPERM})
_BUSY = frozenset({errno.EAGAIN, errno.EBUSY})  # pyserial's exclusive lock is taken
_NOT_CONNECTED = "not connected"
_LINE_END = re.compile(rb"[\r\n]")


class LineCutter:
    """Cuts a byte stream into payloads at CR, LF or CRLF."""

    def __init__(self) -> None:
        self._line = bytearray()
        self._overlong = False

    def feed(self, data: bytes) -> list[str]:
        """The payloads that ``data`` completes (blank lines left out)."""
        *ended, rest = _LINE_END.split(data)
        found = []
        for part in ended:
            self._add(part)
            text = self._line.decode("utf-8", "surrogateescape")
            if self._overlong:
                text += UNREADABLE
            self._line.clear()
            self._overlong = False
            if text.strip():
                found.append(text)
        self._add(rest)
        return found

    def _add(self, part: bytes) -> None:
        room = MAX_LINE - len(self._line)
        if len(part) > room:
            self._overlong = True
        self._line += part[:room]


def open_serial(path: Path, baud: int) -> Any:
    """The serial port at ``path``, raw 8N1, non-blocking, locked for this process alone."""
    # Imported here: a gate without a serial scanner never loads pyserial.
    import serial

    return serial.Serial(
        str(path),
        baudrate=baud,
        bytesize=serial.EIGHTBITS,
        parity=serial.PARITY_NONE,
        stopbits=serial.STOPBITS_ONE,
        timeout=0,
        exclusive=True,
    )


class SerialScannerInput:
    """Payloads sent by a serial scanner, one per line.

    Wiring (``hw/README.md``): set the scanner to send a CR or CRLF suffix with no prefix
    and no framing (STX/ETX), at ``input.baud`` 8N1. Point ``input.device`` at a name that
    survives re-plugging: the link ``/dev/gate-scanner-serial`` made by
    ``hw/99-gate-scanner.rules`` (a udev rule on the scanner's USB ids), the port's
    ``/dev/serial/by-id/...`` link, or ``/dev/ttyAMA0`` for the Pi's UART (its login
    console turned off). The gate's user must be in the ``dialout`` group (the unit file
    adds it).
    """

    name = "serial"
    last_alive: float | None = None  # a scanner waits in silence for the next ticket

    @property
    def problem(self) -> str | None:
        """Why the scanner cannot be read now (unplugged, no permission), or None."""
        return self._problem

    def __init__(self, path: Path, baud: int = 9600, *, retry: float = RETRY) -> None:
        self.path = path
        self.baud = baud
        self.retry = retry
        self._port: Any = None
        #: The descriptor the loop watches for this input, if any.
        self._watched: int | None = None
        self._closing = asyncio.Event()
        #: What was last logged about the port being unusable; None while it works.
        self._problem: str | None = None

    async def payloads(self) -> AsyncIterator[str]:
        """Payloads as they are scanned, until ``aclose``; outlives unplugging."""
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            while not self._closing.is_set():
                port = self._connect()
                if port is not None:
                    lines = LineCutter()
                    try:
                        while await self._readable(port, closing):
                            for payload in lines.feed(port.read(CHUNK)):
                                yield payload
                        return
                    except OSError as exc:  # pyserial's SerialException is one
                        # A code cut off mid-line is lost with its cutter: the person scans again.
                        log.error(
                            "serial scanner %s was lost (%s); waiting for it to return",
                            self.path,
                            _reason(exc),
                        )
                        self._problem = _NOT_CONNECTED
                        self._release()
                await asyncio.wait((closing,), timeout=self.retry)
        finally:
            closing.cancel()
            self._release()

    async def aclose(self) -> None:
        """Stop reading and close the port."""
        self._closing.set()
        self._release()

    async def _readable(self, port: Any, closing: asyncio.Future[Any]) -> bool:
        """Wait until the port has bytes (or news of its loss): True, or False on closing."""
        loop = asyncio.get_running_loop()
        ready = loop.create_future()

        def wake() -> None:
            if not ready.done():  # the loop calls again until the reader is removed
                ready.set_result(None)

        fd = port.fileno()
        loop.add_reader(fd, wake)
        self._watched = fd
        try:
            await asyncio.wait((ready, closing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._unwatch()
        return not self._closing.is_set()

    def _connect(self) -> Any:
        """The opened port, or None after noting why it cannot be had."""
        try:
            # On the loop: opening is a few syscalls (a USB adapter's line settings cost one
            # short control transfer), once per plug-in; a missing port fails at once.
            port = open_serial(self.path, self.baud)
        except OSError as exc:
            self._unusable(self._explain(exc))
            return None
        self._port = port
        if self._problem is not None:
            log.warning("serial scanner %s is back", self.path)
        else:
            log.info("reading serial scanner %s at %d baud", self.path, self.baud)
        self._problem = None
        return port

    def _explain(self, exc: OSError) -> str:
        if exc.errno in _DENIED:
            return "permission denied: the gate's user must be in the 'dialout' group"
        if exc.errno in _ABSENT:
            return _NOT_CONNECTED
        if exc.errno in _BUSY:
            return "another program has the port open"
        return _reason(exc)

    def _unusable(self, problem: str) -> None:
        if problem != self._problem:  # once per change, not once a second
            log.error("serial scanner %s: %s; trying again every %g s", self.path, problem, self.retry)
        self._problem = problem

    def _unwatch(self) -> None:
        # Only the descriptor this input registered: once the port is closed its number
        # may be reused by anything else the loop watches.
        if self._watched is not None:
            asyncio.get_running_loop().remove_reader(self._watched)
            self._watched = None

    def _release(self) -> None:
        self._unwatch()
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(OSError):
                port.close()


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__
