"""An asyncio loop on a thread of its own, for tests that block while servers must keep serving.

A test that talks to real daemons blocks (control socket requests, subprocesses, sleeps
in polls) while link proxies and fake peers must go on answering; a hypothesis state
machine is synchronous while the gates it drives are asyncio. Both hand coroutines to
this loop with ``run`` and wait for their result. ``close`` cancels whatever is left
and closes the loop, so nothing outlives the test.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from tests.waiting import settle

T = TypeVar("T")


class LoopThread:
    """An event loop running on a daemon thread until ``close``."""

    def __init__(self, name: str = "test-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the loop and return its result; fail (and cancel it) after ``timeout``."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise AssertionError(f"{getattr(coro, '__name__', coro)} did not finish in {timeout} s") from None

    def close(self) -> None:
        """Cancel every task still on the loop, stop it and close it."""
        if self.loop.is_closed():
            return
        if self._thread.is_alive():
            self.run(_cancel_all(), timeout=30)
            self.run(self.loop.shutdown_asyncgens(), timeout=10)
            self.run(self.loop.shutdown_default_executor(), timeout=30)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
        self.loop.close()

    def __enter__(self) -> LoopThread:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


async def _cancel_all() -> None:
    # A task cancelled before its first step never runs its ``finally``: a server's handler
    # for a connection accepted a moment ago would leak the connection (a ResourceWarning,
    # an error under ``filterwarnings = error``, in whichever test the collector runs).
    # Let what is scheduled start first, and let closed transports close their sockets after.
    await settle()
    me = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not me]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await settle()
