"""Latency and jitter on a link, in user space: these kernels have no ``netem``.

A TCP relay on the host's bridge address: each connection is forwarded to its target,
every chunk held back for the delay plus a jitter drawn uniformly from ``±jitter``, in
order (a later chunk never overtakes an earlier one: TCP would not reorder bytes either).
A machine's connections are steered through it by an nftables DNAT rule in its namespace
(``network.through_relay``), so the gate's own config does not change.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time


class Relay:
    """Forwards ``listen`` to ``target`` with a delay per chunk."""

    def __init__(
        self, listen: tuple[str, int], target: tuple[str, int], delay_ms: int, jitter_ms: int
    ) -> None:
        self.listen = listen
        self.target = target
        self.delay = delay_ms / 1000
        self.jitter = jitter_ms / 1000
        self.bytes = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._rng = random.Random(delay_ms * 7919 + jitter_ms)

    async def start(self) -> Relay:
        """Listen."""
        self._server = await asyncio.start_server(self._accept, *self.listen, reuse_address=True)
        return self

    async def aclose(self) -> None:
        """Stop listening and cut what it carries."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._tasks.update(pipes)
        try:
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._tasks.difference_update(pipes)
            for w in (writer, up_writer):
                w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction, each chunk delayed, in order."""
        release = 0.0
        while chunk := await reader.read(1 << 16):
            due = time.monotonic() + max(0.0, self.delay + self._rng.uniform(-self.jitter, self.jitter))
            release = max(release, due)
            await asyncio.sleep(max(0.0, release - time.monotonic()))
            self.bytes += len(chunk)
            writer.write(chunk)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()
