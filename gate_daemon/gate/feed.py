"""Every scan's result, told to whoever listens: the gate screen, and anything after it.

``Gate`` publishes each ``ScanResult`` it shows (``ResultFeed.publish``, called on the
event loop after the decision is committed and shown). A reader calls
``Gate.subscribe()`` and iterates the ``Subscription`` it gets: each has a bounded queue
of its own, and a reader too slow to keep up loses its oldest results, never the newest
and never the gate's time (publishing does not wait). The feed also remembers when the
last hour's scans were shown, for "scans this hour" (since the gate started).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")

#: Results a subscriber may have waiting before its oldest is dropped.
QUEUE = 32
#: The span "scans this hour" looks back over.
HOUR = 3600.0


class Subscription(Generic[T]):
    """One reader's queue: iterate it for each published item; ``close`` (or ``with``) to leave."""

    def __init__(self, feed: ResultFeed[T], size: int) -> None:
        self._feed = feed
        self.queue: asyncio.Queue[T] = asyncio.Queue(size)
        #: Items dropped because this reader was behind.
        self.dropped = 0

    def put(self, item: T) -> None:
        """Queue ``item``, dropping the oldest waiting one when the queue is full."""
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(item)

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        return await self.queue.get()

    def close(self) -> None:
        """Stop receiving."""
        self._feed.leave(self)

    def __enter__(self) -> Subscription[T]:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class ResultFeed(Generic[T]):
    """An in-process fan-out: each subscriber gets every item published after it subscribed."""

    def __init__(self, *, size: int = QUEUE, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self._monotonic = monotonic
        self._subscribers: set[Subscription[T]] = set()
        self._shown: deque[float] = deque()

    def subscribe(self) -> Subscription[T]:
        """A new subscription, receiving from now on (registered at once, before any await)."""
        subscription = Subscription(self, self.size)
        self._subscribers.add(subscription)
        return subscription

    def leave(self, subscription: Subscription[T]) -> None:
        """Forget ``subscription``."""
        self._subscribers.discard(subscription)

    @property
    def subscribers(self) -> int:
        """How many are listening."""
        return len(self._subscribers)

    def publish(self, item: T) -> None:
        """Give ``item`` to every subscriber; never waits."""
        now = self._monotonic()
        self._shown.append(now)
        self._expire(now)
        for subscription in self._subscribers:
            subscription.put(item)

    def last_hour(self) -> int:
        """Items published in the last hour (since the gate started, if that is later)."""
        self._expire(self._monotonic())
        return len(self._shown)

    def _expire(self, now: float) -> None:
        while self._shown and now - self._shown[0] >= HOUR:
            self._shown.popleft()
