"""A stand-in for picamera2's ``Picamera2``, as the camera input uses it, serving real QR images.

``FakeCameras(script)`` is the ``open_camera`` callable: each call opens a new
``FakePicamera2`` and all of them play one shared script, so a camera opened again
after a failure carries on where the last one stopped. Once the script is played out
the cameras show an empty scene, and ``FakeCameras.exhausted`` is set.

Frames are what picamera2 returns for a YUV420 ``lores`` stream: one array of
``height * 3 / 2`` rows of ``stride`` bytes (a 2-D memoryview here, with the same
``shape`` as picamera2's numpy array), the Y plane first. The Y plane is a grey image
of a real QR code made by segno and Pillow; every row is padded with junk bytes up to
the stride, and the U and V planes follow. The API mirrors picamera2's where the
adapter touches it, including its refusals: a control the camera does not advertise,
a lores stream larger than main, a start before configure, a capture once closed.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import segno
from PIL import Image

#: ``Picamera2.camera_controls`` of a Camera Module 3 (imx708, with a focus motor): (min, max, default).
MODULE_3: Mapping[str, tuple[Any, Any, Any]] = {
    "AeEnable": (False, True, None),
    "ExposureTime": (26, 220_417_486, None),
    "AnalogueGain": (1.112, 16.0, None),
    "FrameDurationLimits": (16_971, 220_528_930, None),
    "NoiseReductionMode": (0, 4, 0),
    "AfMode": (0, 2, 0),
    "AfTrigger": (0, 1, 0),
    "LensPosition": (0.0, 15.0, 1.0),
    "ScalerCrop": ((0, 0, 64, 64), (0, 0, 4608, 2592), (768, 0, 3072, 2592)),
}
#: The crop a 4:3 mode of the imx708 starts with (its ``ScalerCrop`` metadata).
FULL_CROP = (768, 0, 3072, 2592)
#: A camera module v2 (imx219): fixed focus, so no autofocus controls.
MODULE_V2: Mapping[str, tuple[Any, Any, Any]] = {
    name: value for name, value in MODULE_3.items() if not name.startswith(("Af", "Lens"))
}
#: A Camera Module 3 under libcamera 0.5, where per-quantity modes replaced ``AeEnable``.
MODULE_3_LIBCAMERA_05: Mapping[str, tuple[Any, Any, Any]] = {
    **{name: value for name, value in MODULE_3.items() if name != "AeEnable"},
    "ExposureTimeMode": (0, 1, 0),
    "AnalogueGainMode": (0, 1, 0),
}

#: Grey levels of the scene: a mid-grey wall, and a printed code's paper and ink.
WALL, PAPER, INK = 110, 205, 35
#: The byte pattern that pads each row: stripes a decoder would trip over if it read them.
JUNK = bytes([0, 255, 17, 238])


@dataclass(frozen=True)
class Show:
    """``frames`` frames showing a QR code of ``text``, or the empty scene when ``text`` is None."""

    text: str | None
    frames: int = 1


@dataclass(frozen=True)
class Empty:
    """The empty scene for ``seconds`` of wall time, at the cameras' frame pace."""

    seconds: float


@dataclass(frozen=True)
class Fail:
    """One capture that raises ``error`` (a camera frontend timing out, a camera gone)."""

    error: Exception


@dataclass(frozen=True)
class Stall:
    """One capture that never completes: picamera2 then raises ``TimeoutError`` when ``wait`` runs out."""


Step = Show | Empty | Fail | Stall


@functools.lru_cache(maxsize=64)
def luma(text: str | None, width: int, height: int) -> bytes:
    """The Y plane (``width * height`` bytes) of the scene, with a QR code of ``text`` in the middle."""
    scene = Image.new("L", (width, height), WALL)
    if text is not None:
        qr = segno.make(text, error="m", micro=False)
        rows = [bytes(INK if dark else PAPER for dark in row) for row in qr.matrix_iter(scale=1, border=4)]
        code = Image.frombytes("L", (len(rows[0]), len(rows)), b"".join(rows))
        scale = max(1, min(width, height) * 3 // 4 // code.width)
        code = code.resize((code.width * scale, code.height * scale), Image.Resampling.NEAREST)
        scene.paste(code, ((width - code.width) // 2, (height - code.height) // 2))
    return scene.tobytes()


def yuv420(y_plane: bytes, width: int, height: int, stride: int) -> memoryview:
    """A YUV420 frame as picamera2 returns it: ``(height * 3 // 2, stride)``, every row padded."""

    def padding(count: int) -> bytes:
        return (JUNK * (count // len(JUNK) + 1))[:count]

    pad = padding(stride - width)
    rows = [y_plane[r * width : (r + 1) * width] + pad for r in range(height)]
    # U then V: height/2 rows each of stride/2 bytes, neutral grey, padded the same way.
    chroma = (bytes([128]) * (width // 2) + padding(stride // 2 - width // 2)) * height
    data = bytearray(b"".join(rows) + chroma)
    return memoryview(data).cast("B", (height * 3 // 2, stride))


@dataclass
class FakeCameras:
    """The ``open_camera`` callable of a test: opens fake cameras that play ``script``."""

    script: list[Step]
    #: What each camera advertises (``Picamera2.camera_controls``).
    offered: Mapping[str, tuple[Any, Any, Any]] = field(default_factory=lambda: dict(MODULE_3))
    #: Bytes of junk after each Y row.
    padding: int = 40
    #: Seconds between frames (a real camera's frame period, shortened).
    period: float = 0.002
    #: Errors the next opens raise, one per open, before cameras open again.
    open_errors: list[Exception] = field(default_factory=list)
    opened: list[FakePicamera2] = field(default_factory=list)
    #: Set once the script is played out (the first empty frame after it is served).
    exhausted: threading.Event = field(default_factory=threading.Event)
    #: Set while a capture is stalled.
    stalling: threading.Event = field(default_factory=threading.Event)
    served: int = 0

    def __post_init__(self) -> None:
        self._steps: Iterator[Step] = iter(self.script)
        self._current: Step | None = None
        self._left = 0
        self._until = 0.0
        self._lock = threading.Lock()

    def __call__(self, index: int) -> FakePicamera2:
        if self.open_errors:
            raise self.open_errors.pop(0)
        camera = FakePicamera2(self, index)
        self.opened.append(camera)
        return camera

    def next_step(self) -> Step | None:
        """The step the next capture plays; None once the script is out."""
        with self._lock:
            while self._left <= 0:
                self._current = next(self._steps, None)
                if self._current is None:
                    return None
                if isinstance(self._current, Show):
                    self._left = self._current.frames
                elif isinstance(self._current, Empty):
                    self._left = 1
                    self._until = time.monotonic() + self._current.seconds
                else:
                    self._left = 1
            step = self._current
            if isinstance(step, Empty):
                if time.monotonic() >= self._until:
                    self._left = 0
            else:
                self._left -= 1
            return step


class FakePicamera2:
    """One opened camera; records what it was asked, in ``calls``, ``video_config`` and ``controls``."""

    def __init__(self, rig: FakeCameras, index: int) -> None:
        self.rig = rig
        self.index = index
        self.calls: list[str] = []
        self.video_config: dict[str, Any] | None = None
        self.controls: dict[str, Any] = {}
        self.capture_threads: set[int] = set()
        self.configured: dict[str, Any] | None = None
        self.started = False
        self.closed = False

    @property
    def camera_controls(self) -> dict[str, tuple[Any, Any, Any]]:
        """The controls the camera advertises: name -> (min, max, default)."""
        return dict(self.rig.offered)

    def create_video_configuration(
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        raw: dict[str, Any] | None = None,
        transform: object = None,
        colour_space: object = None,
        buffer_count: int = 6,
        controls: dict[str, Any] | None = None,
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
        sensor: dict[str, Any] | None = None,
        use_case: str = "video",
    ) -> dict[str, Any]:
        """A configuration dict as picamera2 makes it (sizes trimmed to even, like its align_stream)."""
        self.calls.append("create_video_configuration")
        self._check_open()

        def stream(
            given: dict[str, Any] | None, default_format: str, default_size: tuple[int, int]
        ) -> dict[str, Any]:
            out = {"format": default_format, "size": default_size, "preserve_ar": True} | (given or {})
            width, height = out["size"]
            out["size"] = (width - width % 2, height - height % 2)
            return out

        main_stream = stream(main, "XBGR8888", (1280, 720))
        config = {
            "use_case": use_case,
            "transform": transform,
            "colour_space": colour_space,
            "buffer_count": buffer_count,
            "queue": queue,
            "main": main_stream,
            "lores": None if lores is None else stream(lores, "YUV420", main_stream["size"]),
            "raw": raw,
            "controls": dict(controls or {}),
            "sensor": sensor,
            "display": display,
            "encode": encode,
        }
        self.video_config = config
        return config

    def configure(self, config: dict[str, Any]) -> None:
        """Check and take a configuration; fills in each stream's stride."""
        self.calls.append("configure")
        self._check_open()
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        lores = config["lores"]
        if lores is not None:
            if lores["format"] != "YUV420":
                raise RuntimeError("lores stream must be YUV")
            main_w, main_h = config["main"]["size"]
            if lores["size"][0] > main_w or lores["size"][1] > main_h:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            lores["stride"] = lores["size"][0] + self.rig.padding
        for name, value in config["controls"].items():
            self._set(name, value)
        self.configured = config

    def stream_configuration(self, name: str = "main") -> dict[str, Any]:
        """The configured stream ``name``."""
        assert self.configured is not None, "stream_configuration before configure"
        stream: dict[str, Any] = self.configured[name]
        return stream

    def set_controls(self, controls: dict[str, Any]) -> None:
        """Record controls; refuses one the camera does not advertise, as picamera2 does."""
        self.calls.append("set_controls")
        self._check_open()
        for name, value in controls.items():
            self._set(name, value)

    def _set(self, name: str, value: Any) -> None:
        if name not in self.rig.offered:
            raise RuntimeError(f"Control {name} is not advertised by libcamera")
        self.controls[name] = value

    def start(self) -> None:
        """Start the camera."""
        self.calls.append("start")
        self._check_open()
        if self.configured is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def capture_array(self, name: str = "main", wait: float | None = None) -> memoryview:
        """The next frame of the script, at the rig's pace; raises what the script says."""
        self.calls.append("capture_array")
        self.capture_threads.add(threading.get_ident())
        if not self.started or self.closed:
            raise RuntimeError("Camera is not running")
        assert name == "lores", f"the camera input decodes the lores stream, not {name!r}"
        assert wait is not None, "a capture without a timeout waits forever on a stalled camera"
        time.sleep(self.rig.period)
        step = self.rig.next_step()
        if isinstance(step, Fail):
            raise step.error
        if isinstance(step, Stall):
            self.rig.stalling.set()
            time.sleep(wait)
            self.rig.stalling.clear()
            raise TimeoutError
        text = step.text if isinstance(step, Show) else None
        if step is None:
            self.rig.exhausted.set()
        self.rig.served += 1
        lores = self.stream_configuration("lores")
        width, height = lores["size"]
        return yuv420(luma(text, width, height), width, height, lores["stride"])

    def capture_metadata(self, wait: float | None = None) -> dict[str, Any]:
        """The metadata of the next frame: the crop in effect."""
        self.calls.append("capture_metadata")
        if not self.started or self.closed:
            raise RuntimeError("Camera is not running")
        return {"ScalerCrop": self.controls.get("ScalerCrop", FULL_CROP)}

    def cancel_all_and_flush(self) -> None:
        """Cancel captures waiting on the camera (picamera2's remedy after a timeout)."""
        self.calls.append("cancel_all_and_flush")

    def stop(self) -> None:
        """Stop the camera (nothing if it is not running)."""
        self.calls.append("stop")
        self.started = False

    def close(self) -> None:
        """Close the camera."""
        self.calls.append("close")
        self.started = False
        self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("Camera is closed")
