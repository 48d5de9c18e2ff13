"""The gate's idea of the time: a clock that keeps running from what it has earned.

A Pi has no battery-backed clock. One that boots without network starts near 1970 (or at
the last time fake-hwclock saved), and a gate that believed it would take expired
tickets for valid ones. So the time a gate decides with is never earlier than the
*floor*: an instant known to have passed, carried on by the monotonic clock from the
moment it was learned (``floor + (monotonic() - m)``), so that a gate whose system clock
is behind still sees time pass. Every source raises it, anchored where it was learned:

- ``ledger``: the floor kept in the ledger's file at the last save (the running value);
- ``manifest``: the active manifest's issue time (signed);
- ``history``: this gate's own latest scan or record, refusals included: a gate that
  refused a ticket as too late has seen that time pass, whatever its clock says after
  a reboot (``gate_daemon.store.time_evidence``);
- ``peers``: the records learned from other gates and the central, signed by their
  origin, counted only as far as ``VOUCHERS`` origins vouch for (the second-latest of
  the origins' latest records), so that one gate with a clock a day fast cannot push
  every gate a day ahead;
- ``server``: the central's ``Date`` header, which is not signed;
- ``central``: the central's signed time (``gate_daemon.net.central_time``).

Everything not signed by the manifest key (the history, the peers' records, ``Date``) is
capped at the active manifest's (signed) expiry: a forged or wrong one can at most make
the gate refuse tickets as too late, never admit one. The central's signed time needs no
cap, and it is the best the gate can know: a floor more than the round trip and the
threshold above it came from a wrong clock (this gate's own, earlier) and is taken down
to it.

The central's signed time also says how far off the system clock is. When that is more
than the threshold, the gate decides with the central's time, carried on by the
monotonic clock from the exchange's midpoint, for as long as the system clock is further
from it than the threshold plus what it may be wrong by (half the round trip plus the
crystal's drift since: ``corrected``); an exchange slower than the threshold is not
taken. The ``Date`` header only estimates the offset for a warning (one-second
resolution: good to about half a second plus half the round trip). Status, metrics and
the console say which time decisions use, how far off the system clock is, and when the
gate cannot know the time at all: no synchronised clock and no signed time from the
central (then it decides with the system
clock, never earlier than the floor).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gate_daemon.core.snapshot import ClockStatus
from gate_daemon.store.ledger import Ledger

log = logging.getLogger(__name__)

#: systemd-timesyncd creates this file once the clock is synchronised.
SYNCED_FLAG = Path("/run/systemd/timesync/synchronized")
#: Only a clock this far off is worth a warning (``Date`` has one-second resolution).
DEFAULT_WARN_OFFSET = 5.0
#: How long after it was read the central's signed time counts as knowing the time (status
#: ``known``, and a ``Date`` header saying nothing more). Decisions follow it for as long as
#: the system clock is further from it than the threshold plus ``DRIFT`` since.
TRUSTED_FOR = 6 * 3600.0
#: How fast the monotonic clock the central's time is carried on by may drift: a board's
#: crystal without NTP, about 100 ppm (under 2.2 s in 6 hours, 8.6 s a day).
DRIFT = 1e-4
#: An offset estimate older than this gives way to the next answer, however slow.
ESTIMATE_AGE = 60.0
#: How many origins' records must show a time before it counts for the floor.
VOUCHERS = 2


@dataclass(frozen=True, slots=True)
class Reference:
    """The central's signed time ``central``, as of the monotonic reading ``at`` (mid-exchange)."""

    central: float
    at: float
    rtt: float


def vouched_time(origins: Mapping[str, float], vouchers: int = VOUCHERS) -> float | None:
    """The latest time at least ``vouchers`` origins' latest records show has passed; None with fewer."""
    latest = sorted(origins.values(), reverse=True)
    return latest[vouchers - 1] if len(latest) >= vouchers else None


class GateClock:
    """``now()`` for decisions, and what is known of the system clock's error."""

    def __init__(
        self,
        floor: float = 0.0,
        *,
        system: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        warn_offset: float = DEFAULT_WARN_OFFSET,
        synced_flag: Path = SYNCED_FLAG,
        ceiling: Callable[[], float | None] | None = None,
    ) -> None:
        self._system = system
        self._monotonic = monotonic
        #: The instant known to have passed as of the monotonic reading ``_floor_at``.
        self.floor = floor
        self._floor_at = monotonic()
        self.floor_source = "ledger" if floor else None
        #: The highest what is not signed by the manifest key may raise the floor: the
        #: active manifest's expiry (signed). None from it (no manifest): such times raise nothing.
        self.ceiling = ceiling
        self.warn_offset = warn_offset
        self._synced_flag = synced_flag
        self._saved = floor
        #: What the ledger's records showed at load, for ``remember``: (instant, source), as of
        #: the monotonic reading ``_loaded_at``.
        self._history: list[tuple[float, str]] = []
        self._loaded_at = self._floor_at
        #: The system clock minus the central's, from the answer with the shortest round trip lately.
        self.offset: float | None = None
        self.rtt: float | None = None
        #: Whether ``offset`` comes from the central's signed time (else from its ``Date``).
        self.authenticated = False
        #: When the kept estimate was made (system clock): it gives way once older than a minute.
        self._estimated_at: float | None = None
        #: The central's last signed time that steers decisions.
        self.reference: Reference | None = None
        #: Answers from the central whose signed time was missing or did not verify.
        self.unsigned_answers = 0
        self._unsigned_said: set[str] = set()
        self._warned: str | None = None

    @classmethod
    async def load(cls, ledger: Ledger, **kwargs: Any) -> GateClock:
        """The clock with the floor kept in ``ledger``; what its records show is kept for ``remember``."""
        evidence = await ledger.time_evidence()
        floor = 0.0
        if evidence.kept is not None:
            try:
                floor = float(evidence.kept)
            except ValueError:
                log.error("the ledger's time floor %r is not a number; starting without one", evidence.kept)
            if not math.isfinite(floor) or floor < 0:
                log.error("the ledger's time floor %r is not a time; starting without one", evidence.kept)
                floor = 0.0
        clock = cls(floor, **kwargs)
        seen = ((evidence.own, "history"), (vouched_time(evidence.origins), "peers"))
        clock._history = [(instant, source) for instant, source in seen if instant is not None]
        return clock

    def remember(self) -> None:
        """Raise the floor to what the ledger's records showed at load, no further than the ceiling.

        Called once the manifest is active (it sets the ceiling): without one, nothing is
        admitted anyway, and the records raise nothing.
        """
        ceiling = self.ceiling() if self.ceiling is not None else None
        if ceiling is None:
            return
        for instant, source in self._history:
            self.raise_floor(min(instant, ceiling), source, at=self._loaded_at)

    # ------------------------------------------------------------------ the time

    def now(self) -> float:
        """The time to decide with."""
        return max(self._reading()[0], self.earliest())

    def earliest(self) -> float:
        """The latest instant known to have passed: the floor carried on since learned (0 without one)."""
        if not self.floor:
            return 0.0
        return self.floor + max(0.0, self._monotonic() - self._floor_at)

    def central_time(self) -> float | None:
        """The central's time now, from its signed time carried on; None without one still trusted."""
        reference = self.reference
        if reference is None:
            return None
        elapsed = self._monotonic() - reference.at
        return reference.central + elapsed if elapsed <= TRUSTED_FOR else None

    def corrected(self) -> float | None:
        """The central's time carried on, where it shows the system clock off; None where it does not.

        Off means further from it than the threshold plus what the carried-on time may be
        wrong by: half the round trip it was read in, and the crystal's drift since. So a
        clock a day off stays corrected for days after the central was last heard, and a
        small offset gives way to the system clock once the drift could explain it.
        """
        reference = self.reference
        if reference is None:
            return None
        elapsed = max(0.0, self._monotonic() - reference.at)
        central = reference.central + elapsed
        doubt = reference.rtt / 2 + DRIFT * elapsed
        return central if abs(self._system() - central) > self.warn_offset + doubt else None

    def _reading(self) -> tuple[float, str]:
        """The system clock, or the central's signed time where that shows the system clock is off."""
        corrected = self.corrected()
        if corrected is not None:
            return corrected, "central"
        return self._system(), "system"

    def source(self) -> str:
        """Where decisions take the time from now: ``system``, ``central`` or ``floor``."""
        reading, source = self._reading()
        return "floor" if self.earliest() > reading else source

    def raise_floor(self, instant: float, source: str, *, at: float | None = None) -> None:
        """``instant`` is known to have passed as of the monotonic reading ``at`` (now when not given)."""
        now = self._monotonic()
        learned = now if at is None else at
        if instant + max(0.0, now - learned) > self.earliest():
            self.floor, self._floor_at, self.floor_source = instant, learned, source
            self.check()

    # ------------------------------------------------------------------ the central's answers

    def saw_server(self, server: float, sent: float, received: float) -> None:
        """A ``Date`` header read ``server`` for a request sent at ``sent`` and answered at ``received``.

        ``sent`` and ``received`` are system-clock readings. The header is truncated to the
        second, so the server's clock was at least ``server`` when it answered. While the
        central's signed time is trusted, an unsigned header says nothing it does not.
        """
        if self.central_time() is not None:
            return
        rtt = max(0.0, received - sent)
        offset = (sent + received) / 2 - (server + 0.5)
        # The quicker the exchange, the better the estimate; an old estimate gives way.
        aged = abs(received - (self._estimated_at or 0)) > ESTIMATE_AGE
        if self.rtt is None or rtt <= self.rtt * 2 or aged:
            self.offset, self.rtt, self._estimated_at, self.authenticated = offset, rtt, received, False
        # A Date header is not signed: it may raise the floor only as far as the signed
        # manifest's expiry, past which nothing is admitted anyway.
        ceiling = self.ceiling() if self.ceiling is not None else None
        if ceiling is not None:
            self.raise_floor(min(server, ceiling), "server")
        self.check()

    def saw_signed_time(self, central: float, sent: float, received: float, rtt: float) -> None:
        """The central's signed time ``central`` (verified) answered a request, as the answer arrives.

        ``sent`` and ``received`` are system-clock readings around the exchange, ``rtt`` its
        round trip by the monotonic clock. The central read its clock in between, so at
        the exchange's midpoint its time was ``central`` within half the round trip.
        """
        now = self._monotonic()
        reference = Reference(central, now - rtt / 2, rtt)
        kept = self.reference
        # An exchange held back (on the path, or a long download) leaves the time it carries
        # uncertain by half its round trip: one slower than the threshold steers nothing.
        quick = rtt <= self.warn_offset
        if quick and (kept is None or rtt <= kept.rtt * 2 or reference.at - kept.at > ESTIMATE_AGE):
            self.reference = reference
            self.offset, self.rtt, self.authenticated = (sent + received) / 2 - central, rtt, True
            self._estimated_at = received
        self._meet(central, now, rtt)
        self.check()

    def _meet(self, central: float, at: float, rtt: float) -> None:
        """Set the floor by the central's signed time: raised to it, or taken down to it if shown wrong."""
        earliest = self.earliest()
        if earliest - central > rtt + self.warn_offset:
            # Passed at most ``rtt`` after the central's reading: a floor beyond that is ahead of
            # the true time (a wrong clock's records, an unsigned time), and refuses good tickets.
            log.warning(
                "clock: the floor (%s) was %.0f s ahead of the central's signed time; taken down to it",
                self.floor_source, earliest - central,
            )  # fmt: skip
        elif central <= earliest:
            return
        self.floor, self._floor_at, self.floor_source = central, at, "central"

    def unsigned_answer(self, why: str) -> None:
        """An answer of the central whose signed time was missing or did not verify: counted, said once."""
        self.unsigned_answers += 1
        if why not in self._unsigned_said:
            self._unsigned_said.add(why)
            log.warning("clock: the central's time is not taken from its answers: %s", why)

    # ------------------------------------------------------------------ what is known

    def synchronised(self) -> bool | None:
        """Whether systemd says the clock is synchronised; None where it cannot say."""
        if self._synced_flag.exists():
            return True
        return False if self._synced_flag.parent.is_dir() else None

    def known(self) -> bool | None:
        """Whether the gate knows the time (synchronised, or the central's signed time); None: cannot say."""
        if self.central_time() is not None:
            return True
        return self.synchronised()

    def warning(self) -> str | None:
        """What is wrong with the clock, in words; None when nothing is known to be."""
        problem = self._problem()
        return None if problem is None else problem[1]

    def _problem(self) -> tuple[str, str] | None:
        """(kind, words) of what is wrong: the kind stays while the seconds in the words change."""
        system = self._system()
        central = self.corrected()
        if central is not None:
            side = "ahead of" if system > central else "behind"
            return "corrected", (
                f"the system clock is {abs(system - central):.0f} s {side} the central's signed time; "
                "deciding with the central's time instead"
            )
        floor = self.earliest()
        if system < floor - self.warn_offset:
            return "behind_floor", (
                f"the system clock is {floor - system:.0f} s behind the latest time this gate knows "
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
        reference = self.reference
        age = None if reference is None else self._monotonic() - reference.at
        return {
            "now": self.now(),
            "floor": self.earliest() or None,
            "floor_source": self.floor_source,
            "offset_s": self.offset,
            "rtt_s": self.rtt,
            "synchronised": self.synchronised(),
            "warning": self.warning(),
            "source": self.source(),
            "authenticated": self.authenticated,
            "central_age_s": age if self.central_time() is not None else None,
            "known": self.known(),
            "unsigned_answers": self.unsigned_answers,
        }

    def check(self) -> None:
        """Log what is wrong with the clock when that changes, not at every answer whose seconds differ."""
        problem = self._problem()
        kind = None if problem is None else problem[0]
        if kind != self._warned:
            if problem is not None:
                log.warning("clock: %s%s", problem[1], self._unknowable())
            elif self._warned is not None:
                log.info("clock: fine again")
            self._warned = kind

    def _unknowable(self) -> str:
        """Words for a gate that cannot know the time, said with its problem; empty when it can."""
        if self.known() is not False:
            return ""
        floor = f"never earlier than the floor ({self.floor_source})" if self.floor else "with no floor"
        return (
            "; this gate cannot know the time (no synchronised clock, no signed time from the central):"
            f" it decides with the system clock, {floor}"
        )

    async def save(self, ledger: Ledger) -> None:
        """Keep the floor, carried on to now, in the ledger's file, if it moved since last kept."""
        floor = self.earliest()
        if not floor or floor == self._saved:
            return
        await ledger.keep_time_floor(floor)
        self._saved = floor
