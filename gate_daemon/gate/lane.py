"""The lane: what supervisors set at a gate, and the allows a supervised lane holds.

A lane is ``open`` (the gate works as it always did), ``supervised`` (every allow is
committed and then held: the relay releases only once a steward confirms it, with the
button, ``gatectl confirm`` or the screen; one not confirmed within
``[gate] confirm_timeout_ms`` is voided, as a turnstile's admission nobody passed) or
``closed`` (every scan is refused with ``lane_closed``; the relay stays locked).

Supervisors also force an online-first gate ``offline`` or ``online`` (``auto`` gives it
back to its breaker: ``on_mode``) and set a one-line message for screens. Every command
arrives as a signed envelope, from the LAN (``POST /v1/command``) or in the central's
heartbeat answer, and goes through ``Lane.command``: parsed and verified against the
active manifest's supervisors (``gate_daemon.core.commands``), then applied, or refused,
with its evidence row (``gate_daemon.store.lane``). Nothing else changes the lane.
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
from typing import Protocol

from gate_daemon.core.commands import (
    NONCE,
    UNVERIFIED,
    Command,
    CommandRefused,
    LaneState,
    parse_envelope,
    verify,
)
from gate_daemon.core.counters import Family, labelled
from gate_daemon.core.decision import Decision
from gate_daemon.core.manifest import Manifest
from gate_daemon.core.snapshot import LaneStatus
from gate_daemon.store.lane import (
    apply_command,
    forget,
    intend,
    load_lane,
    record_refusal,
    settle,
    unsettled,
)
from gate_daemon.store.ledger import Ledger

log = logging.getLogger(__name__)

#: Counted for a supervised lane's allow confirmed, and for one voided unconfirmed.
CONFIRMED = labelled(Family.LANE, "confirmed")
NOT_CONFIRMED = labelled(Family.LANE, "not_confirmed")
#: Allows held at once; more are voided at once (nobody can confirm a queue that long).
MAX_HELD = 64
#: Commands taken from one heartbeat answer, at most.
MAX_DELIVERED = 64
#: Seconds between two log lines of commands refused before their signature verified.
UNVERIFIED_LOG_EVERY = 60.0


class _Manifests(Protocol):
    @property
    def current(self) -> Manifest | None:
        """The active manifest, or None."""


@dataclass(frozen=True, slots=True)
class Held:
    """An allow committed at a supervised lane, waiting for a steward."""

    scan_id: str
    decision: Decision
    until_ms: int
    deadline: float


class Lane:
    """One gate's lane: its state, the commands that change it and the allows it holds."""

    def __init__(
        self,
        ledger: Ledger,
        manifests: _Manifests,
        *,
        gate_id: str,
        event_id: str,
        state: LaneState | None = None,
        confirm_timeout: float = 15.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger = ledger
        self.manifests = manifests
        self.gate_id = gate_id
        self.event_id = event_id
        self.state = state or LaneState()
        self.confirm_timeout = confirm_timeout
        self._clock = clock
        self._monotonic = monotonic
        self._lock = asyncio.Lock()
        self._held: collections.deque[Held] = collections.deque()
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        #: Commands refused before their signature verified, by refusal (never written to the ledger).
        self.unverified: collections.Counter[str] = collections.Counter()
        self._logged_at = -UNVERIFIED_LOG_EVERY
        #: Told the forced decision mode ("online", "offline" or None) whenever a mode command applies.
        self.on_mode: Callable[[str | None], None] | None = None

    async def load(self) -> None:
        """Read the state the ledger's file keeps, and void the allows held when the gate died.

        An allow held and never confirmed before a crash (``kill -9``, power) left the
        turnstile locked: nobody passed, so its entry is voided (``not_confirmed``) here.
        """
        self.state = await load_lane(self.ledger)
        for scan_id in await unsettled(self.ledger):
            log.warning("lane: scan %s was held when the gate stopped, unconfirmed; voiding it", scan_id)
            await self._void_scan(scan_id)

    @property
    def closed(self) -> bool:
        """Whether every scan is refused (``lane_closed``)."""
        return self.state.state == "closed"

    @property
    def supervised(self) -> bool:
        """Whether every allow waits for a steward's confirmation."""
        return self.state.state == "supervised"

    # ---------------------------------------------------------------- commands

    async def command(self, envelope: object, *, via: str) -> bool:
        """Verify and apply a signed command; whether it changed anything.

        False for the very command applied before (the other delivery path's copy);
        ``CommandRefused`` naming why for anything else not applied. A command whose
        signature verified is in the evidence log either way; one refused before that
        (``UNVERIFIED``: anyone can send those) is only counted in memory (``unverified``)
        and logged at most once a minute, so a flood costs no write.
        """
        now_ms = int(self._clock() * 1000)
        command: Command | None = None
        manifest = self.manifests.current
        roster = () if manifest is None else manifest.supervisors
        try:
            signed = parse_envelope(envelope)
            command = signed.command
            verify(signed, roster, event=self.event_id, gate=self.gate_id, now_ms=now_ms)
        except CommandRefused as exc:
            if exc.name in UNVERIFIED:
                self._unverified(exc, via)
                raise
            await record_refusal(self.ledger, command, via=via, now_ms=now_ms, refused=exc)
            log.warning("command refused (%s, via %s): %s", exc.name, via, exc.detail)
            raise
        ids = frozenset(s.id for s in roster)
        async with self._lock:  # one command at a time: each is ordered against the last applied
            try:
                self.state = await apply_command(
                    self.ledger, self.state, command, via=via, now_ms=now_ms, roster=ids
                )
            except CommandRefused as exc:
                if exc.name == "replayed" and exc.duplicate:
                    return False
                log.warning("command refused (%s, via %s): %s", exc.name, via, exc.detail)
                raise
        log.warning("command applied (via %s): %s", via, command.describe())
        if command.kind == "mode" and self.on_mode is not None:
            self.on_mode(self.state.mode_forced)
        if self.closed:
            await self._void_all()  # nobody passes a closed lane, not even an allow held before
        return True

    def _unverified(self, exc: CommandRefused, via: str) -> None:
        self.unverified[exc.name] += 1
        now = self._monotonic()
        if now - self._logged_at >= UNVERIFIED_LOG_EVERY:
            self._logged_at = now
            total = sum(self.unverified.values())
            log.warning(
                "command refused (%s, via %s): %s (%d unverified refusals so far; logged once a minute)",
                exc.name, via, exc.detail, total,
            )  # fmt: skip

    async def deliver(self, envelopes: object) -> list[str]:
        """Commands from the central's heartbeat answer, each through ``command``; the nonces taken.

        A refused one is taken too (the central need not send it again), except a refusal
        that clears up by itself: ``unknown_supervisor`` (this gate's manifest is older than
        the central's) and ``expired`` for a command dated ahead of this clock. Those come
        again with the next heartbeat. One the ledger could not record is not taken either.
        """
        if not isinstance(envelopes, list):
            if envelopes is not None:
                log.warning("the central's heartbeat answer carries commands that are not a list")
            return []
        taken = []
        for envelope in envelopes[:MAX_DELIVERED]:
            try:
                await self.command(envelope, via="central")
            except CommandRefused as exc:
                if exc.name == "unknown_supervisor" or exc.ahead:
                    continue
            nonce = _nonce(envelope)
            if nonce is not None:
                taken.append(nonce)
        return taken

    # ---------------------------------------------------------------- held allows

    async def intend(self, scan_id: str) -> None:
        """Before a scan at a supervised lane commits: note, durably, that it may be held."""
        await intend(self.ledger, scan_id, int(self._clock() * 1000))

    async def forget(self, scan_id: str) -> None:
        """The scan ``intend`` noted was not held (refused, or the lane changed meanwhile)."""
        try:
            await forget(self.ledger, scan_id)
        except (sqlite3.Error, ValueError) as exc:
            # Left open, it is voided at the next start: a scan that made no entry voids nothing.
            log.error("lane: cannot forget scan %s: %s", scan_id, exc)

    def hold(self, scan_id: str, decision: Decision) -> None:
        """Hold a committed allow until a steward confirms it or its time runs out."""
        until_ms = int((self._clock() + self.confirm_timeout) * 1000)
        self._held.append(Held(scan_id, decision, until_ms, self._monotonic() + self.confirm_timeout))
        self._changed.set()

    def take(self, device: str, then: Callable[[Held], None]) -> Held | None:
        """The oldest allow held, now confirmed at ``device`` (None when none waits, or the lane is closed).

        The confirmation is written to the ledger (``held``, with the device) and only
        then is ``then`` called (which shows it and releases the relay): a gate that dies
        in between voids it at start, and nobody passed. Called from the loop's callbacks
        (the button), which cannot wait: a task, awaited at ``aclose``.
        """
        if not self._held or self.closed:
            return None
        held = self._held.popleft()
        self._changed.set()
        task = asyncio.get_running_loop().create_task(self._confirm(held, device, then))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return held

    async def _confirm(self, held: Held, device: str, then: Callable[[Held], None]) -> None:
        now_ms = int(self._clock() * 1000)
        try:
            await settle(
                self.ledger, held.scan_id, "confirmed", device=device, now_ms=now_ms, counters=[CONFIRMED]
            )
        except (sqlite3.Error, ValueError) as exc:
            # The steward saw the person: released all the same; the entry stands as committed.
            log.error("lane: cannot record the confirmation of scan %s: %s", held.scan_id, exc)
        then(held)

    async def _void_all(self) -> None:
        while self._held:
            await self._void(self._held.popleft())
        self._changed.set()

    async def aclose(self) -> None:
        """Void the allows still held (nobody was let through) and let the counts reach the ledger."""
        await self._void_all()
        for task in list(self._tasks):
            await task

    @property
    def held(self) -> int:
        """Allows waiting for confirmation."""
        return len(self._held)

    async def run(self) -> None:
        """Void the allows whose time ran out unconfirmed; runs until cancelled."""
        while True:
            if not self._held:
                self._changed.clear()
                await self._changed.wait()
                continue
            wait = self._held[0].deadline - self._monotonic()
            if wait > 0 and len(self._held) <= MAX_HELD:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):  # asyncio.timeout: see the turnstile's run
                    async with asyncio.timeout(wait):
                        await self._changed.wait()
                continue
            await self._void(self._held.popleft())

    async def _void(self, held: Held) -> None:
        await self._void_scan(held.scan_id)

    async def _void_scan(self, scan_id: str) -> None:
        try:
            voided = await self.ledger.void(
                scan_id,
                wall=self._clock(),
                operator=None,
                counters=[NOT_CONFIRMED],
                resolution="not_confirmed",
            )
            await settle(
                self.ledger,
                scan_id,
                "not_confirmed",
                device=None,
                now_ms=int(self._clock() * 1000),
                counters=[],
            )
        except (sqlite3.Error, ValueError) as exc:
            log.error("lane: cannot void scan %s that nobody confirmed: %s", scan_id, exc)
            return
        if voided is not None:
            log.info("lane: scan %s was not confirmed in time; its ticket can be used again", scan_id)

    # ---------------------------------------------------------------- status

    def status(self) -> LaneStatus:
        """The snapshot's ``lane`` block."""
        state, first = self.state, (self._held[0] if self._held else None)
        return {
            "state": state.state,
            "since_ms": None if state.lane is None else state.lane.applied_ms,
            "by": None if state.lane is None else state.lane.supervisor,
            "message": state.text,
            "mode_forced": state.mode_forced,
            "unverified": dict(self.unverified),
            "pending": None
            if first is None
            else {
                "ticket": first.decision.ticket_id or "",
                "reason": first.decision.reason.value,
                "until_ms": first.until_ms,
            },
        }


def _nonce(envelope: object) -> str | None:
    """The nonce an envelope's command names, when it names one."""
    body = envelope.get("command") if isinstance(envelope, dict) else None
    nonce = body.get("nonce") if isinstance(body, dict) else None
    return nonce if isinstance(nonce, str) and NONCE.fullmatch(nonce) else None
