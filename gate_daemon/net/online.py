"""Online-first decisions: ask the central first, within a hard deadline, else decide here.

With ``[gate] decision = "online-first"`` each scan is first put to the central's
validate call, carrying the scan's uuid, under a hard timeout. Whatever happens there,
the gate commits its own record under the same uuid, so the central counts the scan once
(its record from the validate call and the gate's signed record meet as ``duplicate``).
When the call fails or times out, the gate decides locally at once.

A breaker keeps a sick central off the scan path. It opens (the gate goes *offline*)
after ``failures`` calls in a row that failed or took longer than ``max_latency``; while
open, no scan waits on the network. A background probe asks the central for a challenge
every ``probe_interval``; after ``probes`` quick answers in a row the breaker closes and
the gate is *online* again, on trial: until a scan's call is answered quickly, one bad
call switches it back (a central whose challenges are quick but whose validation hangs
costs one timeout per probe cycle, not ``failures``). Every switch is counted, with how
long the switch took (from the first bad call of the streak to the switch) and the time
spent offline.

A supervisor can force the route (``force``, from a signed ``mode`` command): forced
``offline``, no scan asks the central and the probe does not close the breaker; forced
``online``, every scan asks (each still within its deadline, each still decided here when
the call fails) and bad calls do not open the breaker; ``None`` gives the route back to
the breaker, from where it stands.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from gate_daemon.core.decision import Checkpoint, Decision, ScanKind
from gate_daemon.core.reasons import Outcome
from gate_daemon.core.snapshot import OnlineStatus
from gate_daemon.net.upstream import UpstreamClient, UpstreamError
from gate_daemon.store.scans import Route

log = logging.getLogger(__name__)

#: Latencies kept for status (the last N online calls).
LATENCIES_KEPT = 256
#: Scans remembered as possibly marked at the central, and marks waiting to be taken back.
ASKED_KEPT = 1024
#: Tries to take back one mark (one a probe interval) before giving up on it.
RELEASE_TRIES = 100


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """When the central is too sick to ask, and when it is well again."""

    timeout: float = 0.5
    max_latency: float = 0.3
    failures: int = 3
    probe_interval: float = 5.0
    probes: int = 2


@dataclass(frozen=True, slots=True)
class Switch:
    """One change of route: the breaker opened (to ``offline``) or closed (to ``online``)."""

    to: Route
    at: float
    why: str
    took: float


class OnlineDecider:
    """The central's decision for a scan while the breaker is closed; None means decide locally."""

    def __init__(
        self,
        client: UpstreamClient,
        checkpoint: Checkpoint,
        settings: BreakerSettings,
        *,
        on_switch: Callable[[Switch], None] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.checkpoint = checkpoint
        self.settings = settings
        self.on_switch = on_switch
        self._clock = clock
        self._monotonic = monotonic
        #: The route scans take now: asked at the central first (breaker closed), or decided here.
        self.route: Route = "online"
        self._streak = 0
        self._streak_started: float | None = None
        self._offline_since: float | None = None
        self._good_probes = 0
        #: Closed by the probe and not yet confirmed by a scan's quick answer: one bad call reopens.
        self._trial = False
        self.offline_seconds = 0.0
        self.switches: dict[str, int] = {"online": 0, "offline": 0}
        self.last_switch: Switch | None = None
        self.last_error: str | None = None
        self.calls: dict[str, int] = {"answered": 0, "failed": 0, "slow": 0, "skipped": 0}
        self.latencies: deque[float] = deque(maxlen=LATENCIES_KEPT)
        #: Scans the central may have marked (it allowed, or did not answer): uuid -> True.
        self._asked: OrderedDict[str, bool] = OrderedDict()
        #: Marks to take back: scans the central may have marked that this gate did not admit.
        self._releases: OrderedDict[str, int] = OrderedDict()
        self.released = 0
        #: The route a supervisor forced, or None: the breaker's.
        self.forced: Route | None = None

    def force(self, route: str | None) -> None:
        """Force the route (``online``, ``offline``) or give it back to the breaker (None)."""
        if route not in ("online", "offline"):
            if self.forced is not None:
                log.warning("online-first: the route is the breaker's again (a supervisor's command)")
            self.forced = None
            return
        self.forced = "online" if route == "online" else "offline"
        if self.route != self.forced:
            self._switch(self.forced, f"forced {self.forced} by a supervisor", 0.0)
        self._trial = False

    async def decide(self, uuid: str, payload: str, kind: ScanKind) -> Decision | None:
        """Ask the central, within the hard timeout; None when the gate must decide alone."""
        if self.route != "online":
            self.calls["skipped"] += 1
            return None
        started = self._monotonic()
        self._remember(uuid)  # until the central says otherwise, it may have marked it
        try:
            decision = await self.client.validate(
                uuid,
                payload,
                kind=kind.value,
                zone=self.checkpoint.zone,
                session=self.checkpoint.session,
                timeout=self.settings.timeout,
            )
        except UpstreamError as exc:
            self.calls["failed"] += 1
            self._bad(started, f"{exc.name}: {exc.detail}")
            return None
        except Exception as exc:  # never let the online path cost a scan
            log.exception("online validation failed unexpectedly")
            self.calls["failed"] += 1
            self._bad(started, f"internal_error: {type(exc).__name__}")
            return None
        took = self._monotonic() - started
        self.latencies.append(took)
        self.calls["answered"] += 1
        if took > self.settings.max_latency:
            self.calls["slow"] += 1
            self._bad(started, f"slow: answered in {took * 1000:.0f} ms")
        else:
            self._streak, self._streak_started, self._trial = 0, None, False
        if decision.outcome is not Outcome.ALLOW:
            self._asked.pop(uuid, None)  # refused there: nothing was marked
        return decision

    def _remember(self, uuid: str) -> None:
        self._asked[uuid] = True
        while len(self._asked) > ASKED_KEPT:
            self._asked.popitem(last=False)

    def settled(self, uuid: str, admitted: bool) -> None:
        """The gate's own end of a scan: not admitted, a mark the central may hold is taken back.

        A scan the central allowed (or did not answer) and this gate then refused, or could
        not record, must not stay a check-in at the central. The release goes out in the
        background (``run``), never on the scan path; a gate that restarts before it
        leaves a mark behind (shown unsigned in the central's report).
        """
        if self._asked.pop(uuid, None) is None or admitted:
            return
        self._releases[uuid] = 0
        while len(self._releases) > ASKED_KEPT:
            dropped, _ = self._releases.popitem(last=False)
            log.warning("online-first: too many validations to take back; %s stays marked", dropped)

    def _bad(self, started: float, why: str) -> None:
        self.last_error = why
        if self._streak == 0:
            self._streak_started = started
        self._streak += 1
        opens = self._trial or self._streak >= self.settings.failures
        if opens and self.route == "online" and self.forced is None:
            self._switch("offline", why, self._monotonic() - (self._streak_started or started))

    def _switch(self, to: Route, why: str, took: float) -> None:
        now = self._monotonic()
        if to == "offline":
            self._offline_since = now
        elif self._offline_since is not None:
            self.offline_seconds += now - self._offline_since
            self._offline_since = None
        self.route = to
        self._streak, self._streak_started, self._good_probes = 0, None, 0
        # Back online on the probe's word (a challenge answered quickly), which says less than a
        # validate answer: until a scan's call confirms it, one bad call is enough to go back.
        self._trial = to == "online"
        self.switches[to] += 1
        self.last_switch = Switch(to, self._clock(), why, took)
        log.warning("online-first: switched to %s (%s) after %.0f ms", to, why, took * 1000)
        if self.on_switch is not None:
            self.on_switch(self.last_switch)

    async def run(self) -> None:
        """Take back marks, probe the central while offline, close the breaker when it answers quickly."""
        while True:
            await asyncio.sleep(self.settings.probe_interval)
            await self._release_marks()
            if self.route == "online" or self.forced is not None:
                continue
            started = self._monotonic()
            try:
                await self.client.ping(self.settings.timeout)
            except UpstreamError as exc:
                self._good_probes = 0
                self.last_error = f"probe: {exc.name}: {exc.detail}"
                continue
            except Exception:
                log.exception("the online-first probe failed unexpectedly")
                self._good_probes = 0
                continue
            if self._monotonic() - started > self.settings.max_latency:
                self._good_probes = 0
                continue
            self._good_probes += 1
            if self._good_probes >= self.settings.probes:
                since = self._offline_since or started
                self._switch("online", "the central answers quickly again", self._monotonic() - since)

    async def _release_marks(self) -> None:
        """Ask the central to take back the marks of scans this gate did not admit."""
        for uuid in list(self._releases):
            try:
                await self.client.release(uuid, timeout=self.settings.timeout)
            except UpstreamError as exc:
                tries = self._releases.get(uuid, 0) + 1
                if tries >= RELEASE_TRIES:
                    del self._releases[uuid]
                    log.warning("online-first: validation %s could not be taken back (%s)", uuid, exc.name)
                else:
                    self._releases[uuid] = tries
                return  # the central is not answering: the rest wait for the next round
            except Exception:
                log.exception("online-first: taking back a validation failed unexpectedly")
                return
            self._releases.pop(uuid, None)
            self.released += 1

    def status(self) -> OnlineStatus:
        """For status and metrics."""
        offline = self.offline_seconds
        if self._offline_since is not None:
            offline += self._monotonic() - self._offline_since
        ordered = sorted(self.latencies)
        last = self.last_switch
        return {
            "mode": self.route,  # the key status, metrics and gatectl read
            "timeout_ms": self.settings.timeout * 1000,
            "switches": dict(self.switches),
            "offline_seconds": offline,
            "last_switch": None
            if last is None
            else {"to": last.to, "at": last.at, "why": last.why, "took_s": last.took},
            "last_error": self.last_error,
            "calls": dict(self.calls),
            "to_release": len(self._releases),
            "released": self.released,
            "latency_p50_ms": _quantile(ordered, 0.5),
            "latency_p99_ms": _quantile(ordered, 0.99),
        }


def _quantile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000
