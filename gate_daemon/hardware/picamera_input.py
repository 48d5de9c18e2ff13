"""The Raspberry Pi camera as a scan input: picamera2 frames, decoded on a thread of their own.

The camera runs a small YUV420 ``lores`` stream (640x480 by default) and its Y plane
is decoded as it comes, padding and all, with no colour conversion and no copy. A
dedicated thread captures the newest frame, decodes it and hands each code's text to
the event loop; the gate's repeat window (``Gate.frame``) turns the many sightings of
one code into one scan. picamera2 is imported only when the adapter is built, so no
laptop or CI run ever needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from gate_daemon.config.sections import CameraSettings
from gate_daemon.errors import GateError
from gate_daemon.hardware.frame_quality import brightness
from gate_daemon.hardware.ports import Decoder, Frame

log = logging.getLogger(__name__)

#: Payloads decoded but not yet taken by the gate. A camera sees one or two codes at a
#: time; a gate this far behind wants the newest sightings, so the oldest are dropped.
HANDOFF = 8
#: The first wait before a failed camera is opened again; it doubles up to ``MAX_RETRY``.
FIRST_RETRY = 0.5
MAX_RETRY = 30.0
#: How long ``capture_frame`` lets exposure and focus settle before the frame it returns.
SETTLE = 1.0

# libcamera's enumerated control values (its control_ids.yaml), written out so that
# libcamera itself is never imported here: picamera2 passes plain integers through.
AF_MODE_MANUAL = 0
AF_MODE_CONTINUOUS = 2
#: ``ExposureTimeMode`` / ``AnalogueGainMode`` manual, in libcamera 0.5 and later.
MODE_MANUAL = 1

INSTALL_HINT = (
    "picamera2 cannot be imported. On Raspberry Pi OS install it with "
    "`sudo apt install python3-picamera2` and make the gate's venv with "
    "`python3 -m venv --system-site-packages` so that it sees the system package"
)
#: What to check when the camera does not open or stops delivering frames.
WIRING_HINT = (
    "check the ribbon cable (contacts facing the right way, both ends latched), "
    "camera_auto_detect=1 or the sensor's dtoverlay in /boot/firmware/config.txt, "
    "that the gate's user is in the video group, and `rpicam-hello --list-cameras`"
)

OpenCamera = Callable[[int], Any]


def picamera2_opener() -> OpenCamera:
    """The default ``open_camera``: picamera2's ``Picamera2`` class, imported now.

    Raises ``GateError`` saying how to install picamera2 when it cannot be imported.
    """
    try:
        from picamera2 import Picamera2
    except ImportError as exc:
        raise GateError(f"{INSTALL_HINT} ({exc})") from None
    opener: OpenCamera = Picamera2
    return opener


def camera_controls(settings: CameraSettings, offered: Mapping[str, object]) -> dict[str, Any]:
    """The libcamera controls for ``settings``, limited to those the camera offers.

    ``offered`` is ``Picamera2.camera_controls``. picamera2 refuses a control the camera
    does not advertise, and autofocus exists only on a camera with a focus motor
    (Camera Module 3 has one, v2 does not): a fixed-focus camera simply gets no focus
    controls. libcamera clamps every value to the range of the sensor mode.
    """
    wanted: dict[str, Any] = {}
    period = round(1_000_000 / settings.fps)
    wanted["FrameDurationLimits"] = (period, period)
    if "AfMode" in offered:
        if settings.focus == "fixed":
            wanted["AfMode"] = AF_MODE_MANUAL
            wanted["LensPosition"] = settings.lens_position
        else:
            wanted["AfMode"] = AF_MODE_CONTINUOUS
    if settings.exposure_us > 0:
        # libcamera 0.5 replaced AeEnable with a mode per quantity; older ones have AeEnable.
        if "ExposureTimeMode" in offered:
            wanted["ExposureTimeMode"] = MODE_MANUAL
        else:
            wanted["AeEnable"] = False
        wanted["ExposureTime"] = settings.exposure_us
    if settings.gain > 0:
        if "AnalogueGainMode" in offered:
            wanted["AnalogueGainMode"] = MODE_MANUAL
        wanted["AnalogueGain"] = settings.gain
    missing = sorted(name for name in wanted if name not in offered)
    if missing:
        log.warning("camera %d does not offer %s; left at its defaults", settings.index, ", ".join(missing))
    return {name: value for name, value in wanted.items() if name in offered}


def start_camera(camera: Any, settings: CameraSettings) -> tuple[int, int]:
    """Configure and start an open camera for decoding; the lores stream's width and height.

    The main stream is the smallest allowed (the lores stream may not be larger) and in
    YUV420 too; nothing reads it. libcamera may adjust the sizes asked for, so the
    stream's own configuration is the one that counts.
    """
    size = (settings.width, settings.height)
    config = camera.create_video_configuration(
        main={"size": size, "format": "YUV420"},
        lores={"size": size, "format": "YUV420"},
        display=None,
        encode=None,
    )
    camera.configure(config)
    # After configure: the controls' ranges are then those of the chosen sensor mode.
    camera.set_controls(camera_controls(settings, camera.camera_controls))
    camera.start()
    if settings.zoom > 1 and "ScalerCrop" in camera.camera_controls:
        # The crop the mode starts with is its whole field of view; zoom into its centre.
        x, y, w, h = camera.capture_metadata(wait=stall_timeout(settings))["ScalerCrop"]
        zw, zh = int(w / settings.zoom), int(h / settings.zoom)
        camera.set_controls({"ScalerCrop": (x + (w - zw) // 2, y + (h - zh) // 2, zw, zh)})
    width, height = camera.stream_configuration("lores")["size"]
    return int(width), int(height)


def lores_frame(array: Any, width: int, height: int) -> Frame:
    """The Y plane of a YUV420 array from ``capture_array("lores")``, without a copy.

    picamera2 returns such a frame as one array of ``height * 3 / 2`` rows of ``stride``
    bytes: the Y plane's rows, then the U and V planes. Its second dimension is the stride.
    """
    return Frame(memoryview(array).cast("B"), width, height, int(array.shape[1]))


def stall_timeout(settings: CameraSettings) -> float:
    """How long a capture may take before the camera counts as stalled, in seconds."""
    # A few frame periods, and never less than two seconds: the first frames after a
    # start come late while the sensor starts and exposure converges.
    return max(2.0, 5 / settings.fps)


def close_camera(camera: Any, *, stalled: bool = False) -> None:
    """Stop and close a camera, whatever state it is in; never raises."""
    steps = [camera.stop, camera.close]
    if stalled:
        # picamera2's advice after a capture timed out: drop the captures still waiting
        # on the camera first, or stopping it waits for them too.
        steps.insert(0, camera.cancel_all_and_flush)
    for step in steps:
        try:
            step()
        except Exception as exc:  # a camera that failed may fail again on the way out: carry on
            log.debug("camera %s: %s", step.__name__, _describe(exc))


def capture_frame(
    settings: CameraSettings,
    open_camera: OpenCamera | None = None,
    *,
    settle: float = SETTLE,
    capture_timeout: float | None = None,
) -> Frame:
    """One lores frame for the hardware self-test, after ``settle`` seconds of exposure and focus settling.

    Opens the camera, captures and drops frames while it settles, keeps the next one and
    closes the camera. Raises ``GateError`` naming what to check when there is no frame,
    or none within ``capture_timeout`` (default ``stall_timeout(settings)``).
    """
    opener = open_camera if open_camera is not None else picamera2_opener()
    try:
        camera = opener(settings.index)
    except Exception as exc:  # picamera2 raises RuntimeError, IndexError (no camera at all), OSError...
        raise GateError(f"cannot open camera {settings.index} ({_describe(exc)}): {WIRING_HINT}") from None
    stalled = False
    try:
        width, height = start_camera(camera, settings)
        timeout = capture_timeout if capture_timeout is not None else stall_timeout(settings)
        deadline = time.monotonic() + settle
        array = camera.capture_array("lores", wait=timeout)
        while time.monotonic() < deadline:
            array = camera.capture_array("lores", wait=timeout)
        return lores_frame(array, width, height)
    except Exception as exc:
        stalled = isinstance(exc, TimeoutError)
        raise GateError(
            f"camera {settings.index} delivered no frame ({_describe(exc)}): {WIRING_HINT}"
        ) from None
    finally:
        close_camera(camera, stalled=stalled)


@dataclass
class CameraStats:
    """What the camera thread has seen since the input started, for the self-test and the status.

    Written by the camera thread, one field at a time; a reader may see two frames'
    values mixed, never a torn number.
    """

    #: Frames captured.
    frames: int = 0
    #: Frames in which at least one QR code was read.
    frames_with_code: int = 0
    #: How long the last frame took to decode, in milliseconds.
    last_decode_ms: float | None = None
    #: Mean luma of the last frame, 0 to 255 (sampled; see ``frame_quality.brightness``).
    brightness: float | None = None
    #: Times the camera was opened (more than one: it failed and was opened again).
    opens: int = 0
    #: Camera failures: an open that failed, a capture that raised or timed out.
    camera_errors: int = 0
    #: Frames the decoder failed on (it raised instead of answering).
    decode_errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The stats as a JSON-ready object."""
        return asdict(self)


class PicameraInput:
    """Scans read by a Raspberry Pi camera (Camera Module 3 or v2, or any libcamera camera).

    Wiring: with the Pi powered off, the camera's ribbon cable goes into the camera
    connector (CAMERA on a Pi 4; CAM/DISP 0 or 1 on a Pi 5, with the narrower 22-pin
    cable), its contacts facing the connector's contacts and the latch closed.
    Raspberry Pi OS detects official cameras with ``camera_auto_detect=1`` in
    ``/boot/firmware/config.txt``; others need ``camera_auto_detect=0`` and their
    ``dtoverlay=`` line (e.g. ``imx708``, ``imx219``).
    The gate's user must be in the ``video`` group. ``rpicam-hello --list-cameras``
    shows what libcamera sees, and ``gatectl hwtest`` captures a frame through this
    module. Only one process can hold a camera: stop the gate before other tools.

    A camera that fails (a capture raises or times out, the camera disappears, it will
    not open) is logged once, closed and opened again with a growing pause, while the
    gate keeps serving its other inputs; ``problem`` says why until the next frame.
    ``last_alive`` is the time of the last frame, so a stalled camera stops the systemd
    watchdog's pings and systemd restarts the gate.
    """

    name = "picamera"

    def __init__(
        self,
        settings: CameraSettings,
        decoder: Decoder,
        open_camera: OpenCamera | None = None,
        *,
        capture_timeout: float | None = None,
        first_retry: float = FIRST_RETRY,
    ) -> None:
        self.settings = settings
        self.decoder = decoder
        self._open = open_camera if open_camera is not None else picamera2_opener()
        self.capture_timeout = capture_timeout if capture_timeout is not None else stall_timeout(settings)
        self.first_retry = first_retry
        self.stats = CameraStats()
        #: Time of the last frame captured, or of the last second spent waiting to reopen
        #: a failed camera; the adapter's creation until then.
        self.last_alive: float | None = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._waiting: deque[str] = deque(maxlen=HANDOFF)
        self._wake = asyncio.Event()
        #: Resolved on the event loop once the camera thread has ended.
        self._ended: asyncio.Future[None] | None = None
        #: Why the camera cannot be read now (it will not open, it failed), or None. Set by
        #: the camera thread when the camera fails, cleared by its next frame.
        self.problem: str | None = None
        # The camera thread's own state: the decoder failure last logged, the next pause.
        self._decode_problem: str | None = None
        self._retry = first_retry

    async def payloads(self) -> AsyncIterator[str]:
        """The text of each code the camera reads, as it reads it, until ``aclose``."""
        if self._thread is None:
            loop = asyncio.get_running_loop()
            self._ended = loop.create_future()
            self._thread = threading.Thread(
                target=self._run, args=(loop,), name="picamera-input", daemon=True
            )
            self._thread.start()
        assert self._ended is not None
        while True:
            while self._waiting:
                yield self._waiting.popleft()
            if self._ended.done():
                return
            self._wake.clear()
            await self._wake.wait()

    def _offer(self, text: str) -> None:
        """On the event loop: queue one sighting, unless the same text still waits to be taken."""
        if text not in self._waiting:
            self._waiting.append(text)
        self._wake.set()

    def _end(self) -> None:
        """On the event loop: the camera thread has ended (every sighting it offered is queued)."""
        assert self._ended is not None
        if not self._ended.done():
            self._ended.set_result(None)
        self._wake.set()

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        """The camera thread: open, capture and decode until stopped; reopen after a failure."""
        try:
            while not (self._stop.is_set() or loop.is_closed()):
                try:
                    camera = self._open(self.settings.index)
                except Exception as exc:  # picamera2 raises RuntimeError, IndexError (no camera), OSError...
                    self._fault(f"cannot open camera {self.settings.index} ({_describe(exc)})", WIRING_HINT)
                    self._pause()
                    continue
                self.stats.opens += 1
                stalled = False
                try:
                    self._capture(camera, loop)
                except Exception as exc:  # whatever the camera raises, the gate goes on and reopens it
                    stalled = isinstance(exc, TimeoutError)
                    self._fault(f"camera {self.settings.index} failed ({_describe(exc)})", "opening it again")
                finally:
                    close_camera(camera, stalled=stalled)
                self._pause()
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                loop.call_soon_threadsafe(self._end)

    def _capture(self, camera: Any, loop: asyncio.AbstractEventLoop) -> None:
        """Capture and decode until stopped; raises whatever the camera raises."""
        width, height = start_camera(camera, self.settings)
        first: float | None = None
        while not (self._stop.is_set() or loop.is_closed()):
            array = camera.capture_array("lores", wait=self.capture_timeout)
            self.last_alive = now = time.monotonic()
            if first is None:
                first = now
                if self.problem is not None:
                    log.warning("camera %d is delivering frames again", self.settings.index)
                    self.problem = None
            elif now - first >= MAX_RETRY:
                # Only a camera that has run steadily gets quick retries again: one that
                # fails every few frames keeps its long pauses (and its log stays short).
                self._retry = self.first_retry
            frame = lores_frame(array, width, height)
            texts = self._decode(frame)
            self.stats.frames += 1
            self.stats.brightness = brightness(frame)
            if texts:
                self.stats.frames_with_code += 1
            for text in texts:
                loop.call_soon_threadsafe(self._offer, text)

    def _decode(self, frame: Frame) -> list[str]:
        started = time.perf_counter()
        try:
            texts = self.decoder.decode(frame)
        except Exception as exc:  # a decoder bug loses this frame, not the camera
            self.stats.decode_errors += 1
            problem = type(exc).__name__  # not its message: that might quote the code, a bearer secret
            if problem != self._decode_problem:  # once, not for every frame a troublesome code is in view
                log.error("the %s decoder failed on a frame (%s)", self.decoder.name, problem)
            self._decode_problem = problem
            return []
        self._decode_problem = None
        self.stats.last_decode_ms = (time.perf_counter() - started) * 1000
        return texts

    def _fault(self, problem: str, advice: str) -> None:
        """Count a camera failure and make it the input's problem; log it unless it already is."""
        self.stats.camera_errors += 1
        if problem != self.problem:
            log.error("%s; %s", problem, advice)
        self.problem = problem

    def _pause(self) -> None:
        """Wait before the next open, longer after each failure in a row; ends early on stop.

        A thread that waits to retry is alive: ``last_alive`` moves on in steps of a
        second, so the watchdog restarts the gate only for a camera thread that hangs
        (inside libcamera), not for a camera that is unplugged and says so (``problem``).
        """
        deadline = time.monotonic() + self._retry
        while (left := deadline - time.monotonic()) > 0 and not self._stop.is_set():
            self.last_alive = time.monotonic()
            self._stop.wait(min(left, 1.0))
        self.last_alive = time.monotonic()
        self._retry = min(self._retry * 2, MAX_RETRY)

    async def aclose(self) -> None:
        """Stop the camera thread and close the camera: within a frame, or a capture timeout when stalled."""
        self._stop.set()
        if self._ended is None or self._thread is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._ended), self.capture_timeout + 1.0)
        except TimeoutError:
            # A camera can hang inside libcamera (stop() once its cable came loose); the
            # thread is a daemon, so it does not keep the process from exiting.
            log.error("the camera thread did not stop; leaving it behind")
            return
        self._thread.join()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
