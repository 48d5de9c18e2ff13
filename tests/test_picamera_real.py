"""The Pi camera input on real hardware: runs only on a Raspberry Pi with a camera attached.

Stop the gate first (one process at a time can hold the camera) and point the camera
at something lit. Skipped wherever picamera2 does not import or sees no camera.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from gate_daemon.config.sections import CameraSettings
from gate_daemon.hardware.decoders import ZxingDecoder
from gate_daemon.hardware.frame_quality import brightness, sharpness
from gate_daemon.hardware.picamera_input import PicameraInput, capture_frame

picamera2 = pytest.importorskip(
    "picamera2",
    reason="picamera2 does not import: not a Raspberry Pi, or python3-picamera2 is missing "
    "(the venv needs --system-site-packages)",
)

if not picamera2.Picamera2.global_camera_info():
    pytest.skip("picamera2 sees no camera (rpicam-hello --list-cameras)", allow_module_level=True)


def test_capture_frame_gives_a_lit_lores_frame() -> None:
    settings = CameraSettings()
    frame = capture_frame(settings)
    assert (frame.width, frame.height) == (settings.width, settings.height)
    assert frame.stride >= frame.width
    assert len(frame.pixels) >= frame.height * frame.stride * 3 // 2  # the U and V planes follow
    assert 5 < brightness(frame) < 250, "a black or a white frame: lens cap, no light, or no exposure control"
    assert sharpness(frame) > 0


async def test_the_input_delivers_frames_and_lets_the_camera_go() -> None:
    source = PicameraInput(CameraSettings(), ZxingDecoder())
    payloads = source.payloads()
    first = asyncio.ensure_future(anext(payloads))  # starts the camera thread
    deadline = time.monotonic() + 10
    while source.stats.frames < 10 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await source.aclose()
    with contextlib.suppress(StopAsyncIteration):  # or a code that happened to be in view
        await first
    await payloads.aclose()
    assert source.stats.frames >= 10 and source.stats.camera_errors == 0
    assert source.stats.last_decode_ms is not None
    capture_frame(CameraSettings())  # the camera was closed: it opens again
