"""The gate's background loops end when the task group cancels them, whatever they were awaiting.

Python 3.11 (Raspberry Pi OS bookworm's) ``asyncio.wait_for`` drops a cancellation that
arrives once the awaited thing has finished but before the waiting task has resumed; a
loop built on it then runs on, and the task group waits for it until systemd kills the
gate. Each test cancels its loop at exactly that moment.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from gate_daemon.daemon import app
from gate_daemon.hardware.factory import NullSignals


def _gate(loop_task: list[asyncio.Task[Any]]) -> Any:
    async def ping() -> None:
        # The gate is told to stop just as the probe answers.
        asyncio.get_running_loop().call_soon(loop_task[0].cancel)

    return SimpleNamespace(
        ledger=SimpleNamespace(ping=ping),
        manifests=SimpleNamespace(current=None),
        source=None,
        status=SimpleNamespace(problem=None, line=lambda: "test"),
        signals=NullSignals(),
    )


async def _ends(make: Any) -> None:
    holder: list[asyncio.Task[Any]] = []
    task = asyncio.create_task(make(_gate(holder)))
    holder.append(task)
    try:
        done, _ = await asyncio.wait({task}, timeout=3)
        assert task in done and task.cancelled()
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=3)


async def test_the_service_loop_ends_when_cancelled_as_its_probe_answers() -> None:
    await _ends(app._service_loop)


async def test_the_watchdog_ends_when_cancelled_as_its_probe_answers() -> None:
    notifier = SimpleNamespace(watchdog_interval=3.0, watchdog=lambda: None)
    await _ends(lambda running: app._watchdog(running, notifier))
