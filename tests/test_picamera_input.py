"""The Pi camera input on a fake picamera2 serving real QR images, decoded and scanned for real."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image, ImageFilter

from gate_daemon.config.sections import CameraSettings
from gate_daemon.core.reasons import Reason
from gate_daemon.errors import GateError
from gate_daemon.gate.scan import Gate
from gate_daemon.hardware.decoders import ZbarDecoder, ZxingDecoder
from gate_daemon.hardware.frame_quality import brightness, sharpness
from gate_daemon.hardware.picamera_input import (
    HANDOFF,
    INSTALL_HINT,
    PicameraInput,
    camera_controls,
    capture_frame,
    lores_frame,
)
from gate_daemon.hardware.ports import Frame
from tests.fake_picamera2 import (
    MODULE_3,
    MODULE_3_LIBCAMERA_05,
    MODULE_V2,
    WALL,
    Empty,
    Fail,
    FakeCameras,
    Show,
    Stall,
    luma,
    yuv420,
)
from tests.gate_fixtures import Clock, gate_rig
from tests.support import World
from tests.waiting import eventually

SETTINGS = CameraSettings()
REF = "REF-SAT-FLOOR-0001"
ORDER = "O-105-C2"
JUNK = "Grüße ☕"  # a code, not a ticket: not even printable ASCII
LOG = "gate_daemon.hardware.picamera_input"


class ThreadNotingDecoder:
    """The real zxing-cpp decoder, noting the threads it is called on."""

    name = "zxing"

    def __init__(self) -> None:
        self._zxing = ZxingDecoder()
        self.threads: set[int] = set()

    def decode(self, frame: Frame) -> list[str]:
        self.threads.add(threading.get_ident())
        return self._zxing.decode(frame)


def camera(cameras: FakeCameras, **options: float) -> PicameraInput:
    """The input on fake cameras, with short pauses so that failures replay quickly."""
    options.setdefault("first_retry", 0.01)
    return PicameraInput(SETTINGS, ZxingDecoder(), cameras, **options)


@contextlib.asynccontextmanager
async def running(
    source: PicameraInput, gate: Gate | None = None, mono: Clock | None = None
) -> AsyncIterator[list[str]]:
    """Take the input's payloads (into the list yielded, and through ``gate`` if given) until the block ends.

    ``mono`` (the gate's monotonic clock) is set to the real time as each payload is
    taken, so that the gate's repeat window runs in real time as the camera's frames do.
    On leaving, the input is closed and everything it handed over is taken.
    """
    taken: list[str] = []

    async def take() -> None:
        async for payload in source.payloads():
            taken.append(payload)
            if mono is not None:
                mono.now = time.monotonic()
            if gate is not None:
                await gate.sighted(payload, device=source.name)

    task = asyncio.create_task(take())
    try:
        yield taken
    finally:
        await source.aclose()
        await asyncio.wait_for(task, 10)


def distinct(payloads: list[str]) -> list[str]:
    """Each payload once, in the order first taken (the gate's repeat window does this for scans)."""
    return list(dict.fromkeys(payloads))


async def played_out(cameras: FakeCameras) -> None:
    """Wait until the cameras have played their whole script (and decoded it)."""
    await eventually(cameras.exhausted.is_set)


# ------------------------------------------------------------------ through a real gate


async def test_a_code_held_up_for_30_frames_is_one_scan(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOG)
    signed = world.sign("T-4000", session="sat")
    cameras = FakeCameras([Show(REF, 30), Show(None, 5), Show(signed, 30), Show(ORDER, 10)])
    source = camera(cameras)
    async with gate_rig(world, tmp_path / "gate") as rig:
        async with running(source, rig.gate) as taken:
            await played_out(cameras)
        assert rig.rows("SELECT device, reason FROM scans ORDER BY hlc") == [
            ("picamera", "ok"),
            ("picamera", "ok"),
            ("picamera", "ok"),
        ]
        assert len(rig.signals.shown) == 3
        assert rig.gate.volatile["repeats"] == len(taken) - 3
    assert taken[0] == REF and taken[-1] == ORDER
    assert source.stats.frames >= 75
    assert source.stats.frames_with_code == 70
    for secret in (REF, signed, ORDER):  # ticket codes are bearer secrets
        assert secret not in caplog.text


async def test_a_junk_code_is_one_invalid_payload_per_appearance_not_a_flood(
    world: World, tmp_path: Path
) -> None:
    cameras = FakeCameras([Show(JUNK, 20), Empty(0.8), Show(JUNK, 20)])
    source = camera(cameras)
    async with gate_rig(world, tmp_path / "gate", repeat_window=0.4) as rig:
        async with running(source, rig.gate, rig.mono) as taken:
            await played_out(cameras)
        assert rig.rows("SELECT reason FROM scans") == [("invalid_payload",), ("invalid_payload",)]
        assert [d.reason for d in rig.signals.shown] == [Reason.INVALID_PAYLOAD] * 2
        assert rig.gate.volatile["repeats"] == len(taken) - 2


async def test_capture_runs_and_decodes_off_the_event_loop(world: World, tmp_path: Path) -> None:
    cameras = FakeCameras([Show(REF, 5)])
    decoder = ThreadNotingDecoder()
    source = PicameraInput(SETTINGS, decoder, cameras)
    async with gate_rig(world, tmp_path / "gate") as rig, running(source, rig.gate):
        await played_out(cameras)
    loop_thread = threading.get_ident()
    capture_threads = set().union(*(c.capture_threads for c in cameras.opened))
    assert len(capture_threads) == 1 and loop_thread not in capture_threads
    assert decoder.threads == capture_threads  # decoded where it was captured, on its own thread


# ------------------------------------------------------------------ the hand-off


async def test_a_sighting_still_waiting_is_not_queued_again() -> None:
    cameras = FakeCameras([Show(REF, 30), Show(ORDER, 30), Show(REF, 30)])
    source = camera(cameras)
    payloads = source.payloads()
    assert await asyncio.wait_for(anext(payloads), 10) == REF
    await played_out(cameras)  # meanwhile nobody takes anything
    await source.aclose()
    rest = [payload async for payload in payloads]
    assert ORDER in rest
    assert sorted(rest) == sorted(set(rest)) and set(rest) <= {REF, ORDER}


async def test_the_hand_off_is_bounded_and_keeps_the_newest() -> None:
    codes = [f"CODE-{n:02d}" for n in range(3 * HANDOFF)]
    cameras = FakeCameras([Show(code, 2) for code in codes])
    source = camera(cameras)
    payloads = source.payloads()
    await asyncio.wait_for(anext(payloads), 10)
    await played_out(cameras)
    await source.aclose()
    assert [payload async for payload in payloads] == codes[-HANDOFF:]


# ------------------------------------------------------------------ configuration and controls


def test_default_configuration_small_yuv_lores_and_continuous_focus() -> None:
    cameras = FakeCameras([Show(REF)])
    frame = capture_frame(SETTINGS, cameras, settle=0)
    (cam,) = cameras.opened
    assert cam.video_config is not None
    lores, main = cam.video_config["lores"], cam.video_config["main"]
    assert (lores["size"], lores["format"]) == ((640, 480), "YUV420")
    assert (main["size"], main["format"]) == (
        (640, 480),
        "YUV420",
    )  # the smallest main a 640x480 lores allows
    assert (cam.video_config["display"], cam.video_config["encode"]) == (None, None)
    assert cam.controls == {"FrameDurationLimits": (66667, 66667), "AfMode": 2}  # 15 fps, continuous
    assert cam.calls[:4] == ["create_video_configuration", "configure", "set_controls", "start"]
    assert cam.calls[-2:] == ["stop", "close"]
    assert (frame.width, frame.height, frame.stride) == (640, 480, 680)


def test_fixed_focus_sets_the_lens_position_in_dioptres() -> None:
    cameras = FakeCameras([Show(REF)])
    capture_frame(replace(SETTINGS, focus="fixed", focus_cm=40, fps=30), cameras, settle=0)
    assert cameras.opened[0].controls == {
        "FrameDurationLimits": (33333, 33333),
        "AfMode": 0,
        "LensPosition": 2.5,  # 1 / 0.4 m
    }


def test_zoom_crops_the_centre_of_the_field_of_view() -> None:
    cameras = FakeCameras([Show(REF)])
    capture_frame(replace(SETTINGS, zoom=2.0), cameras, settle=0)
    (cam,) = cameras.opened
    # The mode's crop (768, 0, 3072, 2592): its centre half each way fills the frame.
    assert cam.controls["ScalerCrop"] == (768 + 768, 648, 1536, 1296)
    assert cam.calls.index("capture_metadata") > cam.calls.index("start")
    unzoomed = FakeCameras([Show(REF)])
    capture_frame(SETTINGS, unzoomed, settle=0)
    assert "ScalerCrop" not in unzoomed.opened[0].controls
    fixed_lens = FakeCameras([Show(REF)], offered={})  # no ScalerCrop control: zoom is left out
    capture_frame(replace(SETTINGS, zoom=2.0), fixed_lens, settle=0)
    assert "ScalerCrop" not in fixed_lens.opened[0].controls


def test_fixed_exposure_and_gain() -> None:
    cameras = FakeCameras([Show(REF)])
    settings = replace(SETTINGS, exposure_us=8000, gain=4.0)
    capture_frame(settings, cameras, settle=0)
    controls = cameras.opened[0].controls
    assert controls["AeEnable"] is False
    assert (controls["ExposureTime"], controls["AnalogueGain"]) == (8000, 4.0)
    # libcamera 0.5 and later: a manual mode per quantity instead of AeEnable.
    newer = FakeCameras([Show(REF)], offered=MODULE_3_LIBCAMERA_05)
    capture_frame(settings, newer, settle=0)
    controls = newer.opened[0].controls
    assert "AeEnable" not in controls
    assert (controls["ExposureTimeMode"], controls["AnalogueGainMode"]) == (1, 1)
    assert (controls["ExposureTime"], controls["AnalogueGain"]) == (8000, 4.0)


@pytest.mark.parametrize("focus", ["continuous", "fixed"])
def test_a_camera_without_autofocus_gets_no_focus_controls(focus: str) -> None:
    cameras = FakeCameras([Show(REF)], offered=MODULE_V2)  # the v2 module: fixed focus
    frame = capture_frame(replace(SETTINGS, focus=focus), cameras, settle=0)
    assert cameras.opened[0].controls == {"FrameDurationLimits": (66667, 66667)}
    assert ZxingDecoder().decode(frame) == [REF]


def test_controls_a_camera_does_not_offer_are_left_out_and_named(caplog: pytest.LogCaptureFixture) -> None:
    usb_like = {"AfMode": (0, 2, 0)}
    controls = camera_controls(replace(SETTINGS, exposure_us=5000, gain=2.0), usb_like)
    assert controls == {"AfMode": 2}
    assert "does not offer AeEnable, AnalogueGain, ExposureTime, FrameDurationLimits" in caplog.text
    assert camera_controls(SETTINGS, MODULE_3) == {"FrameDurationLimits": (66667, 66667), "AfMode": 2}


# ------------------------------------------------------------------ frames as the camera delivers them


@pytest.mark.parametrize("decoder", [ZxingDecoder, ZbarDecoder])
@pytest.mark.parametrize("padding", [0, 40, 192])
def test_padded_rows_decode(decoder: type[ZxingDecoder] | type[ZbarDecoder], padding: int) -> None:
    cameras = FakeCameras([Show(REF)], padding=padding)
    frame = capture_frame(SETTINGS, cameras, settle=0)
    assert frame.stride == 640 + padding
    if padding:
        assert bytes(memoryview(frame.pixels)[640:650]) != bytes(10)  # junk, there to be skipped
    assert frame.rows() == luma(REF, 640, 480)
    assert decoder().decode(frame) == [REF]


def test_the_stream_size_libcamera_settled_on_is_the_one_used() -> None:
    cameras = FakeCameras([Show(REF)])
    frame = capture_frame(replace(SETTINGS, width=321, height=241), cameras, settle=0)
    assert (frame.width, frame.height) == (320, 240)  # picamera2 trims odd sizes
    assert ZxingDecoder().decode(frame) == [REF]


def test_lores_frame_is_the_y_plane_without_a_copy() -> None:
    array = yuv420(luma(REF, 320, 240), 320, 240, 384)
    assert array.shape == (360, 384)
    frame = lores_frame(array, 320, 240)
    assert (frame.width, frame.height, frame.stride) == (320, 240, 384)
    assert isinstance(frame.pixels, memoryview) and frame.pixels.obj is array.obj


def test_capture_frame_lets_the_camera_settle_first() -> None:
    cameras = FakeCameras([Show(None, 1000)], period=0.005)
    started = time.monotonic()
    capture_frame(SETTINGS, cameras, settle=0.1)
    assert time.monotonic() - started >= 0.1
    assert cameras.opened[0].calls.count("capture_array") > 5


# ------------------------------------------------------------------ failures


async def test_a_capture_error_is_logged_once_and_the_camera_reopened(
    caplog: pytest.LogCaptureFixture,
) -> None:
    error = RuntimeError("Camera frontend has timed out!")
    cameras = FakeCameras([Show(REF, 3), Fail(error), Fail(error), Fail(error), Show(ORDER, 3)])
    source = camera(cameras)
    async with running(source) as taken:
        await played_out(cameras)
    assert distinct(taken) == [REF, ORDER]
    assert len(cameras.opened) == 4 == source.stats.opens
    assert source.stats.camera_errors == 3
    for cam in cameras.opened:
        assert cam.calls[-2:] == ["stop", "close"] and "cancel_all_and_flush" not in cam.calls
    errors = [r for r in caplog.records if r.name == LOG and r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "camera 0 failed (RuntimeError: Camera frontend has timed out!); opening it again"
    ]
    assert "camera 0 is delivering frames again" in caplog.text
    assert source.problem is None
    assert REF not in caplog.text and ORDER not in caplog.text


async def test_a_camera_that_will_not_open_is_retried_with_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failure = RuntimeError("Camera __init__ sequence did not complete.")
    cameras = FakeCameras([Show(REF, 2)], open_errors=[failure, failure, failure])
    source = camera(cameras)
    async with running(source) as taken:
        await played_out(cameras)
    assert distinct(taken) == [REF]
    assert (source.stats.opens, source.stats.camera_errors) == (1, 3)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].startswith(
        "cannot open camera 0 (RuntimeError: Camera __init__ sequence did not complete.)"
    )
    assert "video group" in errors[0] and "camera_auto_detect" in errors[0]


async def test_a_camera_that_never_opens_is_the_inputs_problem_while_its_thread_lives() -> None:
    failure = RuntimeError("Camera __init__ sequence did not complete.")
    cameras = FakeCameras([], open_errors=[failure] * 1000)
    source = camera(cameras, first_retry=0.05)
    created = source.last_alive
    async with running(source) as taken:
        await eventually(lambda: source.problem is not None)
        assert source.problem == f"cannot open camera 0 (RuntimeError: {failure})"
        await eventually(lambda: source.stats.camera_errors >= 3)
        # The thread is alive and retrying: the watchdog is not asked to restart the gate
        # (the problem puts it out of service instead).
        assert source.last_alive is not None and created is not None and source.last_alive > created
        started = time.monotonic()
    assert time.monotonic() - started < 0.5  # closed in the middle of a pause
    assert taken == [] and cameras.opened == []


async def test_a_stalled_camera_stops_last_alive_then_is_flushed_and_reopened() -> None:
    cameras = FakeCameras([Show(None, 10), Stall(), Show(REF, 3)])
    source = camera(cameras, capture_timeout=0.4)
    created = source.last_alive
    assert created is not None
    async with running(source) as taken:
        await eventually(lambda: source.stats.frames >= 10)
        assert source.last_alive is not None and source.last_alive > created
        await eventually(cameras.stalling.is_set)
        stalled_at = source.last_alive
        await asyncio.sleep(0.2)
        assert source.last_alive == stalled_at  # no frames, no sign of life
        await eventually(lambda: source.problem == "camera 0 failed (TimeoutError)")
        await played_out(cameras)
        assert source.last_alive > stalled_at
        assert source.problem is None
    assert distinct(taken) == [REF]
    first = cameras.opened[0]
    assert first.calls[-3:] == ["cancel_all_and_flush", "stop", "close"]
    assert source.stats.camera_errors == 1 and source.stats.opens == 2


async def test_a_decoder_that_raises_loses_the_frame_not_the_camera(caplog: pytest.LogCaptureFixture) -> None:
    class Flaky:
        name = "flaky"
        calls = 0

        def decode(self, frame: Frame) -> list[str]:
            self.calls += 1
            if self.calls <= 3:
                raise ValueError(f"cannot decode {REF}")
            return ZxingDecoder().decode(frame)

    cameras = FakeCameras([Show(REF, 5)])
    source = PicameraInput(SETTINGS, Flaky(), cameras)
    async with running(source) as taken:
        await played_out(cameras)
    assert distinct(taken) == [REF]
    assert (source.stats.decode_errors, source.stats.opens) == (3, 1)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["the flaky decoder failed on a frame (ValueError)"]
    assert REF not in caplog.text


def test_capture_frame_names_what_to_check_when_there_is_no_camera() -> None:
    cameras = FakeCameras([], open_errors=[IndexError("list index out of range")])
    with pytest.raises(
        GateError, match=r"cannot open camera 0 \(IndexError: list index out of range\)"
    ) as caught:
        capture_frame(SETTINGS, cameras)
    assert "ribbon cable" in str(caught.value) and "video group" in str(caught.value)
    stalled = FakeCameras([Stall()])
    with pytest.raises(GateError, match=r"camera 0 delivered no frame \(TimeoutError\)"):
        capture_frame(SETTINGS, stalled, settle=0, capture_timeout=0.05)
    assert stalled.opened[0].calls[-3:] == ["cancel_all_and_flush", "stop", "close"]


def test_without_picamera2_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 now raises ImportError
    with pytest.raises(GateError, match="sudo apt install python3-picamera2") as caught:
        PicameraInput(SETTINGS, ZxingDecoder())
    assert "--system-site-packages" in str(caught.value)
    with pytest.raises(GateError, match="sudo apt install python3-picamera2"):
        capture_frame(SETTINGS)
    assert INSTALL_HINT in str(caught.value)


def test_importing_the_package_never_imports_picamera2(tmp_path: Path) -> None:
    for name in ("picamera2", "libcamera"):
        (tmp_path / f"{name}.py").write_text(f"raise SystemExit('{name} was imported')\n")
    code = (
        "import gate_daemon.hardware.picamera_input, sys; "
        "assert 'picamera2' not in sys.modules and 'libcamera' not in sys.modules"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env={"PYTHONPATH": f"{tmp_path}:{root}"}, capture_output=True
    )
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------ lifecycle


async def test_aclose_stops_the_thread_within_a_frame_and_closes_the_camera() -> None:
    cameras = FakeCameras([Show(None, 100_000)], period=0.01)
    source = camera(cameras)
    async with running(source):
        await eventually(lambda: source.stats.frames >= 3)
        started = time.monotonic()
        await source.aclose()
        took = time.monotonic() - started
    assert took < 0.5
    assert source._thread is not None and not source._thread.is_alive()
    (cam,) = cameras.opened
    assert cam.calls[-2:] == ["stop", "close"] and cam.closed


async def test_aclose_during_a_stall_waits_out_the_capture_timeout_only() -> None:
    cameras = FakeCameras([Stall()])
    source = camera(cameras, capture_timeout=0.3)
    async with running(source):
        await eventually(cameras.stalling.is_set)
        started = time.monotonic()
        await source.aclose()
        assert time.monotonic() - started < 1.0
    assert cameras.opened[0].closed


async def test_aclose_before_any_payload_was_asked_for() -> None:
    cameras = FakeCameras([Show(REF)])
    source = camera(cameras)
    await source.aclose()
    assert cameras.opened == []


async def test_stats_describe_the_last_frame() -> None:
    cameras = FakeCameras([Show(None, 5), Show(REF, 5)])
    source = camera(cameras)
    async with running(source):
        await played_out(cameras)
    stats = source.stats.as_dict()
    assert stats["frames"] >= 10 and stats["frames_with_code"] == 5
    assert stats["brightness"] == pytest.approx(WALL, abs=0.5)  # the empty scene, after the code
    assert 0 < stats["last_decode_ms"] < 1000
    assert (stats["opens"], stats["camera_errors"], stats["decode_errors"]) == (1, 0, 0)


# ------------------------------------------------------------------ frame quality


def test_brightness_is_the_mean_luma_and_skips_row_padding() -> None:
    assert brightness(Frame.tight(bytes([100]) * 640 * 480, 640, 480)) == 100.0
    padded = Frame((bytes([10]) * 64 + bytes([255]) * 16) * 48, 64, 48, 80)
    assert brightness(padded) == 10.0
    half = Frame.tight((bytes([0]) * 32 + bytes([200]) * 32) * 48, 64, 48)
    assert brightness(half, step=1) == 100.0


def test_sharpness_falls_as_the_image_blurs() -> None:
    image = Image.frombytes("L", (640, 480), luma(REF, 640, 480))
    scores = [
        sharpness(Frame.tight(image.filter(ImageFilter.GaussianBlur(radius)).tobytes(), 640, 480))
        for radius in (0, 1, 2, 4)
    ]
    assert scores == sorted(scores, reverse=True) and scores[-1] < scores[0] / 3
    assert sharpness(Frame.tight(bytes([90]) * 640 * 480, 640, 480)) == 0.0
    assert sharpness(Frame.tight(b"\x01", 1, 1)) == 0.0
    padded = lores_frame(yuv420(luma(REF, 640, 480), 640, 480, 700), 640, 480)
    assert sharpness(padded) == scores[0]  # the junk after each row is not looked at
