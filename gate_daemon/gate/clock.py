"""The gate's idea of the time: the system clock, never earlier than a floor it has earned.

A Pi has no battery-backed clock. One that boots without network starts near 1970 (or at
the last time fake-hwclock saved), and a gate that believed it would take expired
tickets for valid ones. So the time a gate decides with is never earlier than the
*floor*: the latest moment the gate knows has passed, from the active manifest's issue
time and from the central server's ``Date`` headers. The floor is kept in the ledger's
file, so it survives the reboot that matters.

A ``Date`` header is not signed, so the floor it raises is capped at the active
manifest's (signed) expiry: a forged one can at most make the gate refuse tickets as
too late (until the ``time_floor`` row is reset), never admit one; the floor taken from
the manifest needs no such cap.

The offset of the system clock from the central's is estimated from each ``Date``
header (one-second resolution: the estimate is good to about half a second plus half
the round trip). Status, metrics and the console warn when it is larger than the
threshold, when the system clock is below the floor, and when systemd says the clock is
not synchronised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gate_daemon.core.snapshot import ClockStatus
from gate_daemon.store.ledger import Ledger

log = logging.getLogger(__name__)

#: systemd-timesyncd creates this file once the clock is synchronised.
SYNCED_FLAG = Path("/run/systemd/timesync/synchronized")
#: Only a clock this far off is worth a warning (``Date`` has one-second resolution).
DEFAULT_WARN_OFFSET = 5.0


class GateClock:
    """``now()`` for decisions: max(system clock, floor); and what is known of the clock's error."""

    def __init__(
        self,
        floor: float = 0.0,
        *,
        system: Callable[[], float] = time.time,
        warn_offset: float = DEFAULT_WARN_OFFSET,
        synced_flag: Path = SYNCED_FLAG,
        ceiling: Callable[[], float | None] | None = None,
    ) -> None:
        self.floor = floor
        #: The highest a server's ``Date`` may raise the floor: the active manifest's expiry
        #: (signed). None from it (no manifest): a server's time raises nothing.
        self.ceiling = ceiling
        self.floor_source = "ledger" if floor else None
        self.warn_offset = warn_offset
        self._system = system
        self._synced_flag = synced_flag
        self._saved = floor
        #: The system clock minus the central's, from the answer with the shortest round trip lately.
        self.offset: float | None = None
        self.rtt: float | None = None
        #: When the kept estimate was made (system clock): it gives way once older than a minute.
        self._estimated_at: float | None = None
        self._warned: str | None = None

    @classmethod
    async def load(cls, ledger: Ledger, **kwargs: Any) -> GateClock:
        """The clock with the floor kept in ``ledger``."""
        kept = await ledger.time_floor()
        floor = 0.0
        if kept is not None:
            try:
                floor = float(kept)
            except ValueError:
                log.error("the ledger's time floor %r is not a number; starting without one", kept)
        return cls(floor, **kwargs)

    def now(self) -> float:
        """The time to decide with."""
        return max(self._system(), self.floor)

    def raise_floor(self, instant: float, source: str) -> None:
        """``instant`` is known to have passed (a manifest's issue time, a server's answer)."""
        if instant > self.floor:
            self.floor, self.floor_source = instant, source
            self._check()

    def saw_server(self, server: float, sent: float, received: float) -> None:
        """A ``Date`` header read ``server`` for a request sent at ``sent`` and answered at ``received``.

        ``sent`` and ``received`` are system-clock readings. The header is truncated to the
        second, so the server's clock was at least ``server`` when it answered.
        """
        rtt = max(0.0, received - sent)
        offset = (sent + received) / 2 - (server + 0.5)
        # The quicker the exchange, the better the estimate; an old estimate gives way.
        if self.rtt is None or rtt <= self.rtt * 2 or abs(received - (self._estimated_at or 0)) > 60:
            self.offset, self.rtt, self._estimated_at = offset, rtt, received
        # A Date header is not signed: it may raise the floor only as far as the signed
        # manifest's expiry, past which nothing is admitted anyway.
        ceiling = self.ceiling() if self.ceiling is not None else None
        if ceiling is not None:
            self.raise_floor(min(server, ceiling), "server")
        self._check()

    def synchronised(self) -> bool | None:
        """Whether systemd says the clock is synchronised; None where it cannot say."""
        if self._synced_flag.exists():
            return True
        return False if self._synced_flag.parent.is_dir() else None

    def warning(self) -> str | None:
        """What is wrong with the clock, in words; None when nothing is known to be."""
        problem = self._problem()
        return None if problem is None else problem[1]

    def _problem(self) -> tuple[str, str] | None:
        """(kind, words) of what is wrong: the kind stays while the seconds in the words change."""
        system = self._system()
        if system < self.floor - self.warn_offset:
            return "behind_floor", (
                f"the system clock is {self.floor - system:.0f} s behind the latest time this gate knows "
                f"has passed ({self.floor_source}); deciding with that time instead"
            )
        if self.offset is not None and abs(self.offset) > self.warn_offset:
            side = "ahead of" if self.offset > 0 else "behind"
            return side, f"the system clock is {abs(self.offset):.0f} s {side} the central server's"
        if self.synchronised() is False:
            return "unsynchronised", "the system clock is not synchronised (systemd-timesyncd says so)"
        return None

    def status(self) -> ClockStatus:
        """For status and metrics."""
        return {
            "now": self.now(),
            "floor": self.floor or None,
            "floor_source": self.floor_source,
            "offset_s": self.offset,
            "rtt_s": self.rtt,
            "synchronised": self.synchronised(),
            "warning": self.warning(),
        }

    def _check(self) -> None:
        # Logged when the kind of problem changes, not at every answer whose seconds differ.
        problem = self._problem()
        kind = None if problem is None else problem[0]
        if kind != self._warned:
            if problem is not None:
                log.warning("clock: %s", problem[1])
            elif self._warned is not None:
                log.info("clock: fine again")
            self._warned = kind

    async def save(self, ledger: Ledger) -> None:
        """Keep the floor in the ledger's file, if it rose since last kept."""
        if self.floor <= self._saved:
            return
        floor = self.floor
        await ledger.keep_time_floor(floor)
        self._saved = floor
