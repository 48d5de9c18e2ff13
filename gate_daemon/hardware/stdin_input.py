"""Simulated scanner: one payload per line of standard input (or any byte stream)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
import threading
from collections.abc import AsyncIterator
from typing import BinaryIO

#: A line longer than this is cut (no ticket payload is near it; the cut one is invalid).
MAX_LINE = 4096


class StdinInput:
    """Reads lines on a thread (stdin may be a pipe, a terminal or a regular file).

    Blank lines are skipped; bytes that are not UTF-8 are kept as escapes, so such a line
    is decided as ``invalid_payload`` like any other garbage.
    """

    name = "stdin"
    last_alive: float | None = None  # a read blocked on a person typing is idle, not stuck
    problem: str | None = None

    def __init__(self, stream: BinaryIO | None = None) -> None:
        # Not sys.stdin.buffer: the reading thread blocks inside it holding its lock, and at
        # exit (SIGTERM) the interpreter then aborts flushing stdin ("could not acquire lock").
        self._stream = stream if stream is not None else io.FileIO(sys.stdin.fileno(), "rb", closefd=False)
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._thread: threading.Thread | None = None

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while True:
                line = self._stream.readline(MAX_LINE)
                if not line:
                    break
                if not line.endswith(b"\n") and len(line) == MAX_LINE:
                    while (rest := self._stream.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                        pass
                text = line.rstrip(b"\r\n").decode("utf-8", "surrogateescape").strip()
                if text:
                    loop.call_soon_threadsafe(self._queue.put_nowait, text)
        except (OSError, ValueError):
            pass  # stdin closed under us: the input simply ends
        finally:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
                loop.call_soon_threadsafe(self._queue.put_nowait, None)

    async def payloads(self) -> AsyncIterator[str]:
        """Lines as they arrive, until end of input."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._read, args=(asyncio.get_running_loop(),), name="stdin-input", daemon=True
            )
            self._thread.start()
        while (text := await self._queue.get()) is not None:
            yield text

    async def aclose(self) -> None:
        """End ``payloads()``; the reading thread, blocked on stdin, ends with the process."""
        self._queue.put_nowait(None)
