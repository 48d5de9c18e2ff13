"""The turnstile: released on an admission, watched until the person has passed.

After an ``allow`` the relay pulses and, when a passage sensor is wired, the admission
waits up to ``pass_timeout`` for the sensor to see someone pass. One that times out
did not happen: its redemption is voided in the ledger (a ``void`` record, the scan's
evidence row marked ``not_passed``), so the ticket can be used again: the holder who
turned back, or whose turnstile jammed, is not locked out. Passages are matched to
admissions in order (one sensor cannot tell people apart): with two admissions
pending, the first passage is the first admission's.

A passage with no admission pending is someone pushing through a locked turnstile, or
a sensor mis-wired: counted (``passage:unreleased``) and logged for the stewards.

A sensor that has died (unplugged, stuck, mis-wired) would void every admission and
make every ticket reusable: a screenshot handed back over the fence would get in
again. So after ``SUSPECT_AFTER`` admissions in a row that no passage followed, the
sensor is suspect: admissions are kept as recorded (counted ``passage:unverified``),
the turnstile's ``problem`` says so (``gatectl status``) and the log says it once; the
next passage the sensor reports clears it.

The steward's button (``turnstile.button``) either releases the turnstile by hand
(``release``: recorded in the evidence log with the configured operator, reason
``manual_release``) or makes the next scan an exit scan (``exit``; for a gate whose one
camera serves both directions).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from gate_daemon.core.counters import Family, labelled
from gate_daemon.gate.counts import count_softly
from gate_daemon.hardware.ports import Contact, Relay
from gate_daemon.store.ledger import Ledger

log = logging.getLogger(__name__)

#: Admissions in a row that no passage followed, after which the sensor is not believed.
SUSPECT_AFTER = 3
#: Counted for an admission no passage followed (voided, or a manual release).
NOT_PASSED = labelled(Family.PASSAGE, "not_passed")


@dataclass(slots=True)
class _Pending:
    scan_id: str | None  # None: a manual release, nothing to take back
    deadline: float


class Turnstile:
    """Pulses the relay on admissions and voids those the sensor never saw pass."""

    def __init__(
        self,
        ledger: Ledger,
        relay: Relay | None,
        passage: Contact | None = None,
        *,
        pass_timeout: float = 8.0,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ledger = ledger
        self.relay = relay
        self.passage = passage
        self.pass_timeout = pass_timeout
        self._monotonic = monotonic
        self._clock = clock
        self._pending: collections.deque[_Pending] = collections.deque()
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._missed = 0  # admissions in a row with no passage after them
        #: Why the passage sensor is not believed now, or None.
        self.problem: str | None = None

    def start(self) -> None:
        """Listen to the passage sensor (on the running loop)."""
        if self.passage is not None:
            self.passage.listen(self.passed)

    def release(self, scan_id: str | None) -> None:
        """Pulse the relay for an admission (``scan_id``) or a manual release (None)."""
        if self.relay is None:
            return
        try:
            self.relay.pulse()
        except Exception:  # the scan is committed and shown: a failed relay must not lose its answer
            # Still watched: nobody passes a turnstile that did not open, so the sensor's
            # timeout takes the admission back.
            log.exception("the turnstile's relay failed to release (scan %s)", scan_id)
        if self.passage is not None:
            self._pending.append(_Pending(scan_id, self._monotonic() + self.pass_timeout))
            self._changed.set()

    @property
    def pending(self) -> int:
        """Admissions released and not yet seen passing."""
        return len(self._pending)

    def passed(self) -> None:
        """The sensor saw someone pass: the oldest pending admission is done."""
        if self.problem is not None:
            log.warning("turnstile: the passage sensor reports passages again")
        self._missed, self.problem = 0, None
        if self._pending:
            self._pending.popleft()
            self._count(labelled(Family.PASSAGE, "passed"))
        else:
            log.warning("turnstile: a passage with no admission released (pushed through, or the sensor)")
            self._count(labelled(Family.PASSAGE, "unreleased"))

    def _count(self, name: str) -> None:
        # The sensor's callback runs on the loop but cannot wait: the count runs as a task,
        # awaited at ``aclose`` while the ledger is still open.
        task = asyncio.get_running_loop().create_task(count_softly(self.ledger, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        """Void the admissions whose deadline passed without a passage; runs until cancelled."""
        while True:
            if not self._pending:
                self._changed.clear()
                await self._changed.wait()
                continue
            wait = self._pending[0].deadline - self._monotonic()
            if wait > 0:
                self._changed.clear()
                # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation
                # that arrives as the wait ends (a release woke it), and the gate never stops.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._changed.wait()
                continue
            expired = self._pending.popleft()
            await self._not_passed(expired)

    async def _not_passed(self, expired: _Pending) -> None:
        self._missed += 1
        if self._missed >= SUSPECT_AFTER:
            if self.problem is None:
                self.problem = (
                    f"the passage sensor saw no one pass after {self._missed} releases in a row; "
                    "entries are kept as recorded until it reports a passage (check it: gatectl hwtest)"
                )
                log.error("turnstile: %s", self.problem)
            self._count(labelled(Family.PASSAGE, "unverified"))
            return
        if expired.scan_id is None:
            self._count(NOT_PASSED)
            return
        try:
            voided = await self.ledger.void(
                expired.scan_id, wall=self._clock(), operator=None, counters=[NOT_PASSED]
            )
        except (sqlite3.Error, ValueError) as exc:
            log.error("turnstile: cannot void scan %s that never passed: %s", expired.scan_id, exc)
            return
        if voided:
            log.info(
                "turnstile: scan %s did not pass within %.0f s; its ticket can be used again",
                expired.scan_id,
                self.pass_timeout,
            )

    async def aclose(self) -> None:
        """Lock the relay and release the pins (pending admissions stay as recorded)."""
        try:
            if self.relay is not None:
                await self.relay.aclose()
            if self.passage is not None:
                await self.passage.aclose()
        finally:
            for task in list(self._tasks):
                await task
