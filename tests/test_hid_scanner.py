"""The USB (HID) scanner input, on scanners that follow python-evdev's ``InputDevice`` API.

The test machine has no /dev/input nor /dev/uinput, so a scanner here is a stand-in
for the kernel side: each open gives an ``InputDevice``-shaped client with ``path``,
``name``, ``fd``/``fileno()``, ``grab()``, ``ungrab()``, ``close()`` and ``async_read()``
(a future of a generator of real ``evdev.InputEvent`` objects, raising ``OSError`` when
the device is gone, as evdev's does), with the kernel's rules for grabs: a grabbed
device's events reach the grabbing client alone, a second grab is ``EBUSY``, ungrabbing
what is not grabbed is ``EINVAL``, and closing a client lets its grab go.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from evdev import InputEvent, ecodes

from gate_daemon.core.reasons import Reason
from gate_daemon.hardware.hid_scanner import HidScannerInput, open_evdev
from tests.gate_fixtures import gate_rig
from tests.support import World
from tests.test_keymap import enter, tap, typed
from tests.waiting import eventually, next_payload, reading

PATH = Path("/dev/gate-scanner")
LOGGER = "gate_daemon.hardware.hid_scanner"
_fds = itertools.count(100)


class FakeInputDevice:
    """One open of a scanner's event node, shaped like ``evdev.InputDevice``."""

    def __init__(self, path: Path, scanner: Scanner) -> None:
        self.path = str(path)
        self.name = scanner.name
        self.fd = next(_fds)
        self.scanner = scanner
        self.calls: list[str] = []
        self._queue: list[InputEvent] = []
        self._waiter: asyncio.Future[Iterator[InputEvent]] | None = None

    def fileno(self) -> int:
        return self.fd

    def _ioctl(self, call: str) -> None:
        self.calls.append(call)
        if self.fd < 0:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        if not self.scanner.plugged:
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))

    def grab(self) -> None:
        self._ioctl("grab")
        if self.scanner.grabbed_by is not None:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        self.scanner.grabbed_by = self

    def ungrab(self) -> None:
        self._ioctl("ungrab")
        if self.scanner.grabbed_by is not self:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        self.scanner.grabbed_by = None

    def close(self) -> None:
        self.calls.append("close")
        if self.fd >= 0:
            self.fd = -1
            self.scanner.clients.remove(self)
            if self.scanner.grabbed_by is self:  # the kernel lets a grab go with its file
                self.scanner.grabbed_by = None

    def async_read(self) -> asyncio.Future[Iterator[InputEvent]]:
        """Like evdev's: a future, done once the device is readable, of a generator of events."""
        assert self.fd >= 0, "read from a closed device"
        assert self._waiter is None or self._waiter.done(), "two reads at once"
        self._waiter = asyncio.get_running_loop().create_future()
        self._wake()
        return self._waiter

    def _wake(self) -> None:
        waiting = self._waiter is not None and not self._waiter.done()
        if waiting and (self._queue or not self.scanner.plugged):
            assert self._waiter is not None
            self._waiter.set_result(self._read())

    def _read(self) -> Iterator[InputEvent]:
        if not self.scanner.plugged:
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        batch, self._queue = self._queue[:8], self._queue[8:]  # a few reports per read
        yield from batch

    def deliver(self, events: list[InputEvent]) -> None:
        self._queue += events
        self._wake()


class Scanner:
    """A scanner as the kernel sees it: its open clients, its grab, whether it is plugged in."""

    name = "Fake 2D Barcode Scanner"

    def __init__(self) -> None:
        self.plugged = True
        self.clients: list[FakeInputDevice] = []
        self.grabbed_by: FakeInputDevice | None = None

    def press(self, keys: list[tuple[int, int]]) -> None:
        """Key events as a USB keyboard reports them: scan code, key, sync."""
        now = time.time()
        sec, usec = int(now), int(now % 1 * 1e6)
        events = []
        for code, value in keys:
            events += [
                InputEvent(sec, usec, ecodes.EV_MSC, ecodes.MSC_SCAN, 0x70000 + code),
                InputEvent(sec, usec, ecodes.EV_KEY, code, value),
                InputEvent(sec, usec, ecodes.EV_SYN, ecodes.SYN_REPORT, 0),
            ]
        for client in self.clients:
            if self.grabbed_by in (None, client):
                client.deliver(events)

    def scan(self, text: str) -> None:
        self.press(typed(text) + enter())

    def unplug(self) -> None:
        self.plugged = False
        for client in self.clients:
            client._wake()


class Bus:
    """The device nodes: what opening a path finds. ``open`` stands in for ``evdev.InputDevice``."""

    def __init__(self) -> None:
        self.nodes: dict[Path, Scanner] = {}
        self.denied: set[Path] = set()
        self.opened: list[FakeInputDevice] = []

    def plug(self, path: Path = PATH) -> Scanner:
        scanner = self.nodes[path] = Scanner()
        return scanner

    def unplug(self, path: Path = PATH) -> None:
        self.nodes.pop(path).unplug()

    def open(self, path: Path) -> FakeInputDevice:
        if path in self.denied:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        scanner = self.nodes.get(path)
        if scanner is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
        device = FakeInputDevice(path, scanner)
        scanner.clients.append(device)
        self.opened.append(device)
        return device


def messages(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


@pytest.fixture
def bus() -> Bus:
    return Bus()


@pytest.fixture(autouse=True)
def _logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)


async def test_scans_become_payloads_and_the_grab_is_taken_and_let_go(bus: Bus) -> None:
    scanner = bus.plug()
    other = bus.open(PATH)  # a console or desktop reading the same keyboard
    source = HidScannerInput(PATH, open_device=bus.open)
    async with reading(source) as found:
        await eventually(lambda: scanner.grabbed_by is not None)
        for code in ("REF-SAT-FLOOR-0001", "O-105-C2", "SIGNED:abc/XYZ?=+ 7"):
            scanner.scan(code)
            assert await next_payload(found) == code
        assert other._queue == []  # grabbed: nothing typed reached anyone else
    [device] = [d for d in bus.opened if d is not other]
    assert device.calls == ["grab", "ungrab", "close"]
    assert scanner.grabbed_by is None
    assert scanner.clients == [other]
    other.close()


async def test_without_grab_the_keys_also_reach_others(bus: Bus) -> None:
    scanner = bus.plug()
    other = bus.open(PATH)
    source = HidScannerInput(PATH, grab=False, open_device=bus.open)
    async with reading(source) as found:
        await eventually(lambda: len(scanner.clients) == 2)
        scanner.scan("O-100-A2")
        assert await next_payload(found) == "O-100-A2"
        assert other._queue  # the console saw the typing too
    assert "grab" not in bus.opened[-1].calls
    assert bus.opened[-1].calls == ["close"]
    other.close()


async def test_an_unplugged_scanner_is_waited_for_and_works_again(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    scanner = bus.plug()
    source = HidScannerInput(PATH, open_device=bus.open, retry=0.01)
    async with reading(source) as found:
        await eventually(lambda: scanner.grabbed_by is not None)
        scanner.scan("REF-SAT-FLOOR-0001")
        assert await next_payload(found) == "REF-SAT-FLOOR-0001"
        scanner.press(typed("HALF-A-CO"))  # cut off by the unplug
        bus.unplug()
        await eventually(lambda: not scanner.clients)
        await asyncio.sleep(0.1)  # several retries, every 10 ms
        again = bus.plug()
        await eventually(lambda: again.grabbed_by is not None)
        again.scan("O-105-C2")
        assert await next_payload(found) == "O-105-C2"  # nothing left of the cut-off code
        assert found.empty()
    logged = messages(caplog)
    assert logged[0] == (logging.INFO, f"reading HID scanner {PATH} (Fake 2D Barcode Scanner), grabbed")
    assert logged[1:] == [
        (logging.ERROR, f"HID scanner {PATH} was lost (No such device); waiting for it to return"),
        (logging.WARNING, f"HID scanner {PATH} is back (Fake 2D Barcode Scanner)"),
    ]
    assert "REF-SAT" not in caplog.text and "O-105" not in caplog.text and "HALF" not in caplog.text


async def test_a_scanner_missing_at_start_is_logged_once_and_picked_up(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    source = HidScannerInput(PATH, open_device=bus.open, retry=0.01)
    async with reading(source) as found:
        await asyncio.sleep(0.1)
        scanner = bus.plug()
        await eventually(lambda: scanner.grabbed_by is not None)
        scanner.scan("O-100-A2")
        assert await next_payload(found) == "O-100-A2"
    assert messages(caplog) == [
        (logging.ERROR, f"HID scanner {PATH}: not connected; trying again every 0.01 s"),
        (logging.WARNING, f"HID scanner {PATH} is back (Fake 2D Barcode Scanner)"),
    ]


async def test_permission_denied_names_the_input_group(bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    scanner = bus.plug()
    bus.denied.add(PATH)
    source = HidScannerInput(PATH, open_device=bus.open, retry=0.01)
    async with reading(source) as found:
        await asyncio.sleep(0.1)
        assert messages(caplog) == [
            (
                logging.ERROR,
                f"HID scanner {PATH}: permission denied: the gate's user must be in the 'input' group;"
                " trying again every 0.01 s",
            )
        ]
        bus.denied.clear()  # the tech fixed the group (or the udev rule)
        await eventually(lambda: scanner.grabbed_by is not None)
        scanner.scan("O-100-A2")
        assert await next_payload(found) == "O-100-A2"


async def test_a_scanner_grabbed_by_another_program_is_named_and_waited_for(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    scanner = bus.plug()
    thief = bus.open(PATH)
    thief.grab()
    source = HidScannerInput(PATH, open_device=bus.open, retry=0.01)
    async with reading(source) as found:
        await asyncio.sleep(0.05)
        assert len(scanner.clients) == 1  # each failed attempt closed what it opened
        thief.close()
        await eventually(lambda: scanner.grabbed_by is not None)
        scanner.scan("O-105-C2")
        assert await next_payload(found) == "O-105-C2"
    assert messages(caplog)[0] == (
        logging.ERROR,
        f"HID scanner {PATH}: another program has grabbed it; trying again every 0.01 s",
    )


async def test_aclose_ends_the_payloads_promptly_in_every_state(bus: Bus) -> None:
    # Waiting for a scan.
    scanner = bus.plug()
    source = HidScannerInput(PATH, open_device=bus.open)
    payloads = source.payloads()
    pending = asyncio.ensure_future(anext(payloads))
    await eventually(lambda: scanner.grabbed_by is not None)
    started = time.monotonic()
    await source.aclose()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, 1)
    assert time.monotonic() - started < 0.5
    assert scanner.grabbed_by is None and not scanner.clients
    # Waiting for a missing scanner, with a long retry.
    missing = HidScannerInput(Path("/dev/nothing"), open_device=bus.open, retry=60)
    payloads = missing.payloads()
    pending = asyncio.ensure_future(anext(payloads))
    await asyncio.sleep(0.02)
    await missing.aclose()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, 1)


async def test_cancelling_the_reader_releases_the_device(bus: Bus) -> None:
    scanner = bus.plug()
    source = HidScannerInput(PATH, open_device=bus.open)
    task = asyncio.create_task(anext(source.payloads()))
    await eventually(lambda: scanner.grabbed_by is not None)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert scanner.grabbed_by is None and not scanner.clients
    await source.aclose()


async def test_hid_payloads_through_a_gate(bus: Bus, world: World, tmp_path: Path) -> None:
    scanner = bus.plug()
    source = HidScannerInput(PATH, open_device=bus.open)
    async with gate_rig(world, tmp_path / "gate") as rig, reading(source) as found:
        await eventually(lambda: scanner.grabbed_by is not None)
        scanner.scan("REF-SAT-FLOOR-0001")
        scanner.press(typed("O-105") + tap(ecodes.KEY_F5) + typed("-C2") + enter())
        scanner.scan("O-100-A2")
        results = [await rig.gate.sighted(await next_payload(found), device=source.name) for _ in range(3)]
        reasons = [r.decision.reason for r in results if r is not None]
        assert reasons == [Reason.OK, Reason.INVALID_PAYLOAD, Reason.WRONG_ZONE]
        assert rig.rows("SELECT DISTINCT device FROM scans") == [("hid",)]


def test_the_real_opener_uses_evdev(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_evdev(tmp_path / "no-such-event-node")
    with pytest.raises(OSError, match="Inappropriate ioctl"):
        open_evdev(Path(os.devnull))  # a device, but no input device


async def test_the_real_opener_on_a_node_that_is_no_scanner_is_logged_and_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = HidScannerInput(Path(os.devnull), retry=0.01)
    async with reading(source):
        await asyncio.sleep(0.05)
    assert messages(caplog) == [
        (
            logging.ERROR,
            f"HID scanner {os.devnull}: Inappropriate ioctl for device; trying again every 0.01 s",
        )
    ]
