"""One contract for every scan input: the camera, the USB and serial scanners, and the twins.

Each adapter is driven through what it really reads: a fake camera that follows
picamera2's API, a fake evdev device producing real ``InputEvent``s, a real
pseudo-terminal, a real pipe, real image files. The contract: a code shown comes out as
its text, garbage comes out as text (for the gate to name) or not at all and never
stops the input, the attributes the gate reads are there, and ``aclose`` ends
``payloads()`` promptly.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gate_daemon.config.sections import CameraSettings
from gate_daemon.hardware.decoders import ZxingDecoder
from gate_daemon.hardware.hid_scanner import HidScannerInput
from gate_daemon.hardware.image_folder import ImageFolderInput
from gate_daemon.hardware.picamera_input import PicameraInput
from gate_daemon.hardware.ports import ScanInput
from gate_daemon.hardware.serial_scanner import SerialScannerInput
from gate_daemon.hardware.stdin_input import StdinInput
from gate_daemon.provision.qrimage import write_qr
from tests.fake_picamera2 import Empty, FakeCameras, Show
from tests.test_hid_scanner import PATH as HID_PATH
from tests.test_hid_scanner import Bus
from tests.test_keymap import enter, tap
from tests.test_serial_scanner import Pty, opened
from tests.waiting import eventually
from tests.waiting import reading as read_input

CODE = "REF-SAT-FLOOR-0001"
AFTER = "O-105-C2"  # the code shown after the garbage
ADAPTERS = ("picamera", "hid", "serial", "stdin", "images")


@dataclass
class Harness:
    """An input, how to show it a code or garbage, and what to clean up."""

    source: ScanInput
    show: Callable[[str], Awaitable[None]]
    garbage: Callable[[], Awaitable[None]]
    cleanup: list[Callable[[], None]] = field(default_factory=list)


def camera(tmp_path: Path) -> Harness:
    # The fake camera plays a script: the code for a while, then garbage, then the code again.
    cameras = FakeCameras([Empty(0.05), Show(CODE, 5), Show("Grüße ☕", 5), Show(AFTER, 5)])
    source = PicameraInput(CameraSettings(), ZxingDecoder(), cameras, first_retry=0.01)

    async def nothing(*_: object) -> None:
        return None

    return Harness(source, nothing, nothing)


def hid(tmp_path: Path) -> Harness:
    bus = Bus()
    scanner = bus.plug()
    source = HidScannerInput(HID_PATH, open_device=bus.open)

    async def show(code: str) -> None:
        await eventually(lambda: scanner.grabbed_by is not None)
        scanner.scan(code)

    async def garbage() -> None:
        await eventually(lambda: scanner.grabbed_by is not None)
        scanner.press(tap(59) + enter())  # F1: no character a scanner types

    return Harness(source, show, garbage)


def serial(tmp_path: Path) -> Harness:
    line = Pty()
    source = SerialScannerInput(Path(line.path))

    async def show(code: str) -> None:
        await opened(line)  # opening the port flushes what came before
        await line.send(code.encode() + b"\r\n")

    async def garbage() -> None:
        await line.send(b"\xff\xfe\x00\x1b[A\r\n")

    return Harness(source, show, garbage, [line.unplug])


def stdin(tmp_path: Path) -> Harness:
    read, write = os.pipe()
    stream = io.FileIO(read, "rb")
    source = StdinInput(stream)

    def end() -> None:
        os.close(write)  # the reading thread sees the end of input and stops
        if source._thread is not None:
            source._thread.join(timeout=5)
        stream.close()

    async def show(code: str) -> None:
        os.write(write, code.encode() + b"\n")

    async def garbage() -> None:
        os.write(write, b"\xff\xfe\x00\n")

    return Harness(source, show, garbage, [end])


def images(tmp_path: Path) -> Harness:
    folder = tmp_path / "frames"
    folder.mkdir()
    source = ImageFolderInput(folder, 0.02, decoder=ZxingDecoder())
    count = iter(range(1000))

    async def show(code: str) -> None:
        staged = tmp_path / "staged.png"
        write_qr(code, staged)
        staged.replace(folder / f"{next(count):04d}.png")

    async def garbage() -> None:
        staged = tmp_path / "staged.png"
        staged.write_bytes(b"not an image at all")
        staged.replace(folder / f"{next(count):04d}.png")

    return Harness(source, show, garbage)


#: What each input makes of its garbage: text for the gate to name, or nothing.
GARBAGE_TEXT = {
    "picamera": ["Grüße ☕"],
    "hid": ["\ufffd"],
    "serial": ["\udcff\udcfe\x00\x1b[A"],
    "stdin": ["\udcff\udcfe\x00"],
    "images": [],
}

MAKERS = {"picamera": camera, "hid": hid, "serial": serial, "stdin": stdin, "images": images}


@contextlib.asynccontextmanager
async def reading(harness: Harness) -> AsyncIterator[asyncio.Queue[str]]:
    """Read the harness's input; leaving checks the contract that ``aclose`` ends ``payloads()``."""
    try:
        async with read_input(harness.source) as found:
            yield found
    finally:
        for step in harness.cleanup:
            step()


@pytest.mark.parametrize("kind", ADAPTERS)
async def test_a_code_shown_comes_out_as_its_text(kind: str, tmp_path: Path) -> None:
    harness = MAKERS[kind](tmp_path)
    assert isinstance(harness.source.name, str) and harness.source.name
    async with reading(harness) as found:
        await harness.show(CODE)
        assert await asyncio.wait_for(found.get(), 10) == CODE
        assert harness.source.problem is None
        alive = harness.source.last_alive
        assert alive is None or isinstance(alive, float)


@pytest.mark.parametrize("kind", ADAPTERS)
async def test_garbage_never_stops_the_input(kind: str, tmp_path: Path) -> None:
    harness = MAKERS[kind](tmp_path)
    async with reading(harness) as found:
        await harness.show(CODE)
        assert await asyncio.wait_for(found.get(), 10) == CODE
        await harness.garbage()
        await harness.show(AFTER)
        seen = [await asyncio.wait_for(found.get(), 10)]
        while seen[-1] != AFTER:
            seen.append(await asyncio.wait_for(found.get(), 10))
        # Garbage is text the gate will name (invalid_payload), or nothing at all; a camera
        # reads what stays in view in several frames (the gate's repeat window makes one scan).
        assert all(isinstance(text, str) and text != AFTER for text in seen[:-1])
        distinct = list(dict.fromkeys(text for text in seen[:-1] if text != CODE))
        assert distinct == GARBAGE_TEXT[harness.source.name]


@pytest.mark.parametrize("kind", ADAPTERS)
async def test_aclose_before_anything_is_read_ends_payloads(kind: str, tmp_path: Path) -> None:
    harness = MAKERS[kind](tmp_path)
    async with reading(harness):
        await asyncio.sleep(0.05)
