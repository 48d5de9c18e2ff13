"""Waiting in a test for what a thread, a device, an input or a background task does."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from gate_daemon.hardware.ports import ScanInput


async def eventually(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Return once ``condition()`` is true; fail the test after ``timeout`` seconds.

    The timeout only bounds a failure: a loaded machine makes a passing test slower,
    never a failing one.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def settle(rounds: int = 20) -> None:
    """Let the loop go round ``rounds`` times, so that work already scheduled gets done.

    Nothing here waits on I/O or time: what it lets finish is what is queued now (an
    accepted connection on its way to its handler, a handler's first step, a closed
    transport closing its socket), each a chain of a few callbacks.
    """
    for _ in range(rounds):
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def reading(source: ScanInput) -> AsyncIterator[asyncio.Queue[str]]:
    """Run an input in a task that puts each payload on a queue; close it at the end."""
    found: asyncio.Queue[str] = asyncio.Queue()

    async def run() -> None:
        async for payload in source.payloads():
            found.put_nowait(payload)

    task = asyncio.create_task(run())
    try:
        yield found
    finally:
        await source.aclose()
        await asyncio.wait_for(task, 5)  # closing ends the iteration by itself


async def next_payload(found: asyncio.Queue[str]) -> str:
    """The next payload an input read, within ten seconds."""
    return await asyncio.wait_for(found.get(), 10)
