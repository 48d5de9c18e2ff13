"""The serial scanner input, on real pseudo-terminals: the test writes the scanner's side.

A pty's slave is a real tty (pyserial opens and configures it as it would a USB
serial port); unplugging is closing the master, which hangs the slave up and removes
its node, as pulling a USB serial adapter does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gate_daemon.core.reasons import Reason
from gate_daemon.hardware.keymap import UNREADABLE
from gate_daemon.hardware.serial_scanner import LineCutter, SerialScannerInput
from gate_daemon.hardware.stdin_input import MAX_LINE
from tests.gate_fixtures import gate_rig
from tests.support import World
from tests.waiting import eventually, next_payload, reading

LOGGER = "gate_daemon.hardware.serial_scanner"


class Pty:
    """A pseudo-terminal: ``path`` is the slave the gate opens, ``send`` writes as the scanner."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        self.path = os.ttyname(self._slave)

    async def send(self, data: bytes) -> None:
        # On a thread: a long write waits for the gate to drain the line, on the loop.
        await asyncio.to_thread(_write_all, self.master, data)

    def unplug(self) -> None:
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


@contextlib.contextmanager
def pty() -> Iterator[Pty]:
    line = Pty()
    try:
        yield line
    finally:
        line.unplug()


def holders(path: str) -> int:
    """How many of this process's descriptors are open on ``path`` (the test's own included)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}") == path
    return count


async def opened(line: Pty) -> None:
    """Wait until the gate has the port open (pyserial flushes what came before)."""
    await eventually(lambda: holders(line.path) == 2)


def messages(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


@pytest.fixture(autouse=True)
def _logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)


async def test_lines_in_every_ending_become_payloads(caplog: pytest.LogCaptureFixture) -> None:
    with pty() as line:
        source = SerialScannerInput(Path(line.path), 9600)
        async with reading(source) as found:
            await opened(line)
            await line.send(b"REF-SAT-FLOOR-0001\r")
            assert await next_payload(found) == "REF-SAT-FLOOR-0001"
            await line.send(b"O-105-C2\n\r\n\r\r  \t \r\nO-100-A2\r\n")
            assert [await next_payload(found) for _ in range(2)] == ["O-105-C2", "O-100-A2"]
            # Split across reads, the CRLF too.
            for piece in (b"T-", b"0001-", b"SPLIT\r", b"\nNEXT", b"-ONE\r\n"):
                await line.send(piece)
                await asyncio.sleep(0.01)
            assert [await next_payload(found) for _ in range(2)] == ["T-0001-SPLIT", "NEXT-ONE"]
            # Bytes that are not UTF-8 are kept as escapes; bytes a tty might eat pass through.
            await line.send(b"\xff\xfe-NOT-UTF-8\r\n\x03\x11\x13\x1a\x7f\r\n ends with space \r\n")
            assert [await next_payload(found) for _ in range(3)] == [
                "\udcff\udcfe-NOT-UTF-8",
                "\x03\x11\x13\x1a\x7f",
                " ends with space ",
            ]
            await asyncio.sleep(0.05)
            assert found.empty()
    assert messages(caplog) == [(logging.INFO, f"reading serial scanner {line.path} at 9600 baud")]
    assert "REF-SAT" not in caplog.text


async def test_an_overlong_line_is_cut_and_marked() -> None:
    with pty() as line:
        source = SerialScannerInput(Path(line.path), 115200)
        async with reading(source) as found:
            await opened(line)
            await line.send(b"A" * (MAX_LINE + 5000) + b"\r\n" + b"B" * MAX_LINE + b"\r\nNEXT\r\n")
            assert await next_payload(found) == "A" * MAX_LINE + UNREADABLE
            assert await next_payload(found) == "B" * MAX_LINE  # exactly the cap still fits
            assert await next_payload(found) == "NEXT"


async def test_aclose_while_reading_returns_promptly_and_lets_the_port_go() -> None:
    with pty() as line:
        source = SerialScannerInput(Path(line.path))
        payloads = source.payloads()
        pending = asyncio.ensure_future(anext(payloads))
        await opened(line)
        started = time.monotonic()
        await source.aclose()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(pending, 1)
        assert time.monotonic() - started < 0.5
        assert holders(line.path) == 1  # only the test's own end is left


async def test_cancelling_the_reader_closes_the_port() -> None:
    with pty() as line:
        source = SerialScannerInput(Path(line.path))
        task = asyncio.create_task(anext(source.payloads()))
        await opened(line)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert holders(line.path) == 1
        await source.aclose()


async def test_an_unplugged_port_is_waited_for_and_works_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    link = tmp_path / "gate-scanner"  # as a udev rule's SYMLINK+= would name it
    first = Pty()
    link.symlink_to(first.path)
    source = SerialScannerInput(link, retry=0.01)
    try:
        async with reading(source) as found:
            await opened(first)
            await first.send(b"REF-SAT-FLOOR-0001\r\nHALF-A-CO")
            assert await next_payload(found) == "REF-SAT-FLOOR-0001"
            first.unplug()
            await eventually(lambda: not Path(first.path).exists())  # the node is gone
            await asyncio.sleep(0.1)  # several retries, every 10 ms
            second = Pty()
            try:
                (tmp_path / "new-link").symlink_to(second.path)
                (tmp_path / "new-link").replace(link)
                await opened(second)
                await second.send(b"O-105-C2\r\n")
                assert await next_payload(found) == "O-105-C2"  # nothing left of the cut-off code
            finally:
                second.unplug()
    finally:
        first.unplug()
    logged = messages(caplog)
    assert logged[0] == (logging.INFO, f"reading serial scanner {link} at 9600 baud")
    assert logged[1][0] == logging.ERROR
    assert logged[1][1].startswith(f"serial scanner {link} was lost (")
    assert logged[1][1].endswith("); waiting for it to return")
    assert logged[2:] == [(logging.WARNING, f"serial scanner {link} is back")]
    assert "REF-SAT" not in caplog.text and "HALF" not in caplog.text


async def test_a_port_missing_at_start_is_logged_once_and_picked_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    link = tmp_path / "gate-scanner"
    source = SerialScannerInput(link, retry=0.01)
    async with reading(source) as found:
        await asyncio.sleep(0.1)
        with pty() as line:
            link.symlink_to(line.path)
            await opened(line)
            await line.send(b"O-100-A2\n")
            assert await next_payload(found) == "O-100-A2"
            await source.aclose()
    assert messages(caplog) == [
        (logging.ERROR, f"serial scanner {link}: not connected; trying again every 0.01 s"),
        (logging.WARNING, f"serial scanner {link} is back"),
    ]


async def test_a_port_another_program_holds_is_named_and_waited_for(caplog: pytest.LogCaptureFixture) -> None:
    with pty() as line:
        first = SerialScannerInput(Path(line.path))
        second = SerialScannerInput(Path(line.path), retry=0.01)
        async with reading(first):
            await opened(line)
            async with reading(second) as found:
                await asyncio.sleep(0.05)
                assert holders(line.path) == 2  # each failed attempt closed what it opened
                await first.aclose()
                await eventually(lambda: holders(line.path) == 2)
                await line.send(b"O-105-C2\r")
                assert await next_payload(found) == "O-105-C2"
    assert (
        logging.ERROR,
        f"serial scanner {line.path}: another program has the port open; trying again every 0.01 s",
    ) in messages(caplog)


def _permissions_are_checked() -> bool:
    with pty() as line:
        os.chmod(line.path, 0)
        try:
            os.close(os.open(line.path, os.O_RDWR | os.O_NOCTTY))
        except PermissionError:
            return True
    return False


async def test_permission_denied_names_the_dialout_group(caplog: pytest.LogCaptureFixture) -> None:
    if not _permissions_are_checked():
        pytest.skip("this process may open any device node (root with CAP_DAC_OVERRIDE)")
    with pty() as line:
        os.chmod(line.path, 0)
        source = SerialScannerInput(Path(line.path), retry=0.01)
        async with reading(source):
            await asyncio.sleep(0.05)
    assert messages(caplog) == [
        (
            logging.ERROR,
            f"serial scanner {line.path}: permission denied: the gate's user must be in the 'dialout'"
            " group; trying again every 0.01 s",
        )
    ]


async def test_a_node_that_is_no_serial_port_is_logged_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    source = SerialScannerInput(Path(os.devnull), retry=0.01)
    async with reading(source):
        await asyncio.sleep(0.05)
    [(level, message)] = messages(caplog)
    assert level == logging.ERROR
    assert message.startswith(f"serial scanner {os.devnull}: Could not configure port")


async def test_serial_payloads_through_a_gate(world: World, tmp_path: Path) -> None:
    with pty() as line:
        source = SerialScannerInput(Path(line.path))
        async with gate_rig(world, tmp_path / "gate") as rig, reading(source) as found:
            await opened(line)
            await line.send(b"REF-SAT-FLOOR-0001\r\n\x02O-105-C2\x03\r\nO-100-A2\r\n")
            results = [
                await rig.gate.sighted(await next_payload(found), device=source.name) for _ in range(3)
            ]
            reasons = [r.decision.reason for r in results if r is not None]
            assert reasons == [Reason.OK, Reason.INVALID_PAYLOAD, Reason.WRONG_ZONE]
            assert rig.rows("SELECT DISTINCT device FROM scans") == [("serial",)]


@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=10))
def test_how_the_bytes_are_split_into_reads_never_matters(data: bytes, cuts: list[int]) -> None:
    whole = LineCutter().feed(data + b"\n")
    cutter = LineCutter()
    pieces = []
    start = 0
    for cut in sorted(cuts):
        pieces += cutter.feed(data[start:cut])
        start = max(start, cut)
    pieces += cutter.feed(data[start:] + b"\n")
    assert pieces == whole
    assert all(text.strip() and "\r" not in text and "\n" not in text for text in whole)
