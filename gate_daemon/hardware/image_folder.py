"""Simulated camera: every new image file in a folder is one frame, decoded for real.

Drop (or better, rename into place) a PNG or JPEG of a ticket's QR code into the folder
and the gate scans it. Files present when the gate starts are old frames and are
skipped. A file that changes (same name, new content) is a new frame. A file that is
not a readable image is logged and counted once, never fatal. Each image is turned
into a grey ``Frame`` and read by the same ``Decoder`` a camera's frames go through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from gate_daemon.config.sections import DecoderKind
from gate_daemon.hardware.decoders import frame_from_image, make_decoder
from gate_daemon.hardware.ports import Decoder, Frame

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".pgm", ".ppm", ".tif", ".tiff"}
)
#: An image file larger than this is not a camera frame.
MAX_IMAGE = 32 << 20


class UnreadableImage(Exception):
    """A file in the frame folder is not an image the decoder can read."""


def read_frame(path: Path) -> Frame:
    """The grey frame of the image file at ``path``; ``UnreadableImage`` when it is not one."""
    # Imported here: a gate without this input never loads the image library.
    from PIL import Image, UnidentifiedImageError

    try:
        if path.stat().st_size > MAX_IMAGE:
            raise UnreadableImage(f"larger than {MAX_IMAGE >> 20} MiB")
        with Image.open(path) as image:
            image.load()
            return frame_from_image(image)
    except UnreadableImage:
        raise
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(str(exc) or type(exc).__name__) from None
    except Exception as exc:  # Pillow decoders also raise SyntaxError, struct.error, EOFError
        raise UnreadableImage(f"{type(exc).__name__}: {exc}") from None


class ImageFolderInput:
    """Watches ``folder`` every ``interval`` seconds for new image files.

    Wiring: ``decoder`` reads the frames (default: ``make_decoder(DecoderKind.AUTO)``;
    the daemon passes the one ``input.decoder`` names). Files are read and decoded on
    a worker thread; ``on_unreadable`` is awaited once for each file that is no image.
    """

    name = "images"

    def __init__(
        self,
        folder: Path,
        interval: float = 0.1,
        decoder: Decoder | None = None,
        on_unreadable: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.folder = folder
        self.interval = interval
        self.decoder = make_decoder(DecoderKind.AUTO) if decoder is None else decoder
        self._on_unreadable = on_unreadable
        self._seen: dict[str, tuple[int, int]] = {}
        self._folder_error: str | None = None
        self.last_alive: float | None = time.monotonic()
        # What is there now is old: listed here, before the gate says it is ready, so a
        # frame that arrives once it is ready is never taken for an old one.
        self._seen = self._scan_folder()
        self._closed = asyncio.Event()

    def _scan_folder(self) -> dict[str, tuple[int, int]]:
        found = {}
        try:
            entries = list(os.scandir(self.folder))
        except OSError as exc:
            if exc.strerror != self._folder_error:  # once per change, not ten times a second
                log.error("cannot list frame folder %s: %s", self.folder, exc.strerror)
            self._folder_error = exc.strerror
            return dict(self._seen)
        if self._folder_error is not None:
            log.warning("frame folder %s is readable again", self.folder)
            self._folder_error = None
        for entry in entries:
            if Path(entry.name).suffix.lower() not in IMAGE_SUFFIXES or entry.name.startswith("."):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if entry.is_file(follow_symlinks=False):
                found[entry.name] = (st.st_size, st.st_mtime_ns)
        return found

    async def payloads(self) -> AsyncIterator[str]:
        """Codes from each new frame, in file-name order within one look at the folder; until ``aclose``."""
        while not self._closed.is_set():
            await self._idle(self.interval)
            if self._closed.is_set():
                return
            now = await asyncio.to_thread(self._scan_folder)
            fresh = sorted(name for name, ident in now.items() if self._seen.get(name) != ident)
            self._seen = now
            for name in fresh:
                path = self.folder / name
                try:
                    codes = await asyncio.to_thread(self._read_codes, path)
                except Exception as exc:  # no frame may stop the input
                    log.warning("frame %s is not a readable image (unreadable_image): %s", path, exc)
                    if self._on_unreadable is not None:
                        await self._on_unreadable()
                    continue
                self.last_alive = time.monotonic()
                if not codes:
                    log.info("frame %s: no QR code found", path)
                for code in codes:
                    yield code

    def _read_codes(self, path: Path) -> list[str]:
        return self.decoder.decode(read_frame(path))

    async def _idle(self, seconds: float) -> None:
        """Sleep between looks at the folder; waiting is a sign of life, in steps of a second."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not self._closed.is_set():
            self.last_alive = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), timeout=min(left, 1.0))
        self.last_alive = time.monotonic()

    @property
    def problem(self) -> str | None:
        """Why the folder cannot be read, or None."""
        if self._folder_error is None:
            return None
        return f"cannot list frame folder {self.folder}: {self._folder_error}"

    async def aclose(self) -> None:
        """End ``payloads()`` (nothing is held between looks at the folder)."""
        self._closed.set()
