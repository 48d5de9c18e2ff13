"""Keeping a gate and the central server in step, whenever the central can be reached.

Four loops, each on its own so a failure in one holds up nothing else, and none on the
scan path (a scan commits to the ledger and is done; these read what was committed):

- **manifest**: at start and every ``manifest_interval``, ask for the latest manifest,
  as a delta from the active version when the central can make one. The download goes
  to a file (never held whole, progress in status); a delta is applied to the active
  manifest; the result is verified and activated by the manifest watch, like a file a
  tech drops. Nothing unverified is used.
- **drain**: the records the central has not answered for, in batches of up to 500,
  each log from where the central last answered (``UpstreamMarks``): this gate's own
  first, then what it learned from peers (so a gate whose link is down still reaches
  the central through another). Woken by each commit; after a failure, it waits with
  exponential backoff and full jitter. Every answer is final, so each batch moves the
  positions in one transaction: a gate killed mid-drain resends at most one batch,
  which the central answers ``duplicate``.
- **pull**: the check-ins the central holds after its cursor, verified against the
  origin gates' keys and learned through the ledger like a peer's, so a ticket used at a
  gate outside this LAN is ``already_used`` here. The cursor moves past a page only once
  it was judged under the newest roster the gate can know (none without a manifest).
- **heartbeat**: the gate's counters and a short status, every ``heartbeat_interval``.
  The answer carries supervisors' commands for this gate (``gate.lane.Lane.deliver``:
  verified and applied like those from the LAN); the next heartbeat acknowledges them.
- **evidence**: every ``heartbeat_interval``, this gate's evidence rows the central has not
  had (``store.evidence_upload``), in batches, without the payload (``core.evidence``).

Every answer's ``Date`` header feeds the gate's clock (offset estimate and time floor).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gate_daemon.core.counters import Family, labelled
from gate_daemon.core.evidence import EvidenceError, parse_scan
from gate_daemon.core.fleet import heartbeat_status
from gate_daemon.core.records import Redemption
from gate_daemon.core.snapshot import DownloadStatus, GateSnapshot, LoopStatus, UpstreamStatus
from gate_daemon.errors import ManifestRefused
from gate_daemon.gate.clock import GateClock
from gate_daemon.gate.lane import Lane
from gate_daemon.gate.manifest_watch import ManifestWatch
from gate_daemon.net.replication import Replication, Roster
from gate_daemon.net.upstream import MAX_BATCH, ManifestFetch, PushAnswer, UpstreamClient, UpstreamError
from gate_daemon.store.evidence_upload import EvidenceCursor
from gate_daemon.store.manifest_file import MAX_MANIFEST, write_delta_result
from gate_daemon.store.upstream_marks import Rejection, UpstreamMarks

log = logging.getLogger(__name__)

#: Pages pulled in one round at most (a round continues at the next interval).
MAX_PAGES = 200
#: The longest wait between tries after failures.
MAX_BACKOFF = 30.0
#: Push batches in flight at once while draining.
DRAIN_DEPTH = 2
#: The largest delta applied (in memory); past it, the full manifest is fetched instead.
MAX_DELTA_APPLIED = 64 << 20
#: Refusals of pulled records that the central's newer manifest (its roster) may undo.
ROSTER_REFUSALS = frozenset({"unknown_origin", "bad_signature"})


@dataclass(frozen=True, slots=True)
class SyncSettings:
    """How often each loop runs."""

    batch: int = MAX_BATCH
    push_interval: float = 1.0
    pull_interval: float = 5.0
    manifest_interval: float = 60.0
    #: The whole of one manifest download (a million tickets is tens of MB).
    manifest_timeout: float = 300.0
    heartbeat_interval: float = 15.0
    min_backoff: float = 0.5


@dataclass
class LoopState:
    """What one loop last did, for status."""

    ok_at: float | None = None
    error: str | None = None
    error_at: float | None = None
    failures: int = 0

    def as_dict(self) -> LoopStatus:
        """The loop's state as status shows it."""
        return {
            "ok_at": self.ok_at,
            "error": self.error,
            "error_at": self.error_at,
            "failures": self.failures,
        }


@dataclass
class SyncTotals:
    """Counts since start (the persisted ones are in the ledger's counters)."""

    pushed: int = 0
    results: dict[str, int] = field(default_factory=dict)
    pulled: int = 0
    learned: int = 0
    manifests: int = 0


class UpstreamSync:
    """The gate's side of the upstream contract, run as background loops."""

    def __init__(
        self,
        client: UpstreamClient,
        replication: Replication,
        marks: UpstreamMarks,
        manifests: ManifestWatch,
        clock: GateClock,
        settings: SyncSettings,
        *,
        download_dir: Path,
        status: Callable[[], Awaitable[GateSnapshot]] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.replication = replication
        self.ledger = replication.ledger
        self.marks = marks
        self.manifests = manifests
        self.clock = clock
        self.settings = settings
        self.download_dir = download_dir
        self._status = status
        self._monotonic = monotonic
        self.loops = {name: LoopState() for name in ("manifest", "drain", "pull", "heartbeat", "evidence")}
        self.evidence = EvidenceCursor(self.ledger)
        self.totals = SyncTotals()
        self.download: DownloadStatus | None = None
        self._wake = asyncio.Event()
        #: One manifest refresh at a time (the manifest loop's and the pull's share a download file).
        self._manifest_lock = asyncio.Lock()
        self.ledger.subscribe(lambda _record: self._wake.set())
        #: Where commands from the central go (the gate's lane), and the nonces to acknowledge.
        self.lane: Lane | None = None
        self._acked: list[str] = []

    # ------------------------------------------------------------------ loops

    async def run(self) -> None:
        """All four loops until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._every("manifest", self.refresh_manifest, self.settings.manifest_interval))
            group.create_task(self._drain_loop())
            group.create_task(self._every("pull", self.pull, self.settings.pull_interval))
            group.create_task(self._every("heartbeat", self.heartbeat, self.settings.heartbeat_interval))
            group.create_task(self._every("evidence", self.upload_evidence, self.settings.heartbeat_interval))

    async def _every(self, name: str, step: Callable[[], Awaitable[Any]], interval: float) -> None:
        while True:
            ok = await self._attempt(name, step)
            await asyncio.sleep(interval if ok else self._backoff(name, interval))

    async def _drain_loop(self) -> None:
        while True:
            self._wake.clear()
            ok = await self._attempt("drain", self.drain)
            if not ok:
                await asyncio.sleep(self._backoff("drain", self.settings.push_interval))
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.push_interval):
                    await self._wake.wait()

    def _backoff(self, name: str, interval: float) -> float:
        """Exponential in the failures in a row, capped, with full jitter: gates do not stampede."""
        failures = self.loops[name].failures
        ceiling = min(MAX_BACKOFF, max(interval, self.settings.min_backoff * 2 ** min(failures, 16)))
        return random.uniform(self.settings.min_backoff, max(self.settings.min_backoff, ceiling))

    async def _attempt(self, name: str, step: Callable[[], Awaitable[Any]]) -> bool:
        state = self.loops[name]
        try:
            await step()
        except UpstreamError as exc:
            self._failed(state, name, f"{exc.name}: {exc.detail}")
            return False
        except ManifestRefused as exc:
            self._failed(state, name, f"manifest_refused: {exc.reason}: {exc.detail}")
            return False
        except (sqlite3.Error, ValueError) as exc:
            self._failed(state, name, f"ledger_unavailable: {exc}")
            return False
        except Exception as exc:
            log.exception("upstream %s failed unexpectedly", name)
            self._failed(state, name, f"internal_error: {type(exc).__name__}")
            return False
        state.ok_at, state.error, state.failures = time.time(), None, 0
        return True

    def _failed(self, state: LoopState, name: str, error: str) -> None:
        # Logged when the kind of failure changes, not at every try: details (a deadline's
        # remaining seconds, a peer's text) differ from one try to the next.
        if state.error is None or state.error.split(":", 1)[0] != error.split(":", 1)[0]:
            log.warning("upstream %s: %s", name, error)
        state.error, state.error_at = error, time.time()
        state.failures += 1

    # ------------------------------------------------------------------ steps

    async def drain(self) -> int:
        """Send what the central has not answered for, until nothing is left; how many were sent.

        Up to ``DRAIN_DEPTH`` batches are in flight, so the next batch is read and signed
        here while the central verifies and stores the last one. Answers are stored in the
        order the batches were sent: a position never moves past a batch still unanswered.
        """
        sent = 0
        flying: collections.deque[tuple[list[tuple[Redemption, str | None]], asyncio.Task[PushAnswer]]]
        flying = collections.deque()
        ahead = dict(self.marks.acked)  # what has been sent, answered or not
        try:
            while True:
                while len(flying) < DRAIN_DEPTH:
                    found = await self._next_batch(ahead)
                    if not found:
                        break
                    for record, _signature in found:
                        ahead[(record.origin, record.epoch)] = record.seq
                    records = await self.replication.wire_many(found)
                    flying.append((found, asyncio.ensure_future(self.client.push(records))))
                if not flying:
                    return sent
                found, call = flying.popleft()
                await self._store_answer(found, await call)
                sent += len(found)
                self.totals.pushed += len(found)
        finally:
            for _found, call in flying:
                call.cancel()
            for _found, call in flying:
                with contextlib.suppress(BaseException):
                    await call

    async def _next_batch(self, ahead: dict[tuple[str, str], int]) -> list[tuple[Redemption, str | None]]:
        """The next records to send after ``ahead``: this gate's own first, then relayed ones.

        Relayed logs only to the end of their unbroken run: a position must never pass a
        gap that fills later.
        """
        own = {self.ledger.gate_id}
        found, _more = await self.ledger.records_after(ahead, self.settings.batch, origins=own, unbroken=True)
        if not found:
            relay = {gate for gate in self.replication.roster() or {} if gate not in own}
            found, _more = await self.ledger.records_after(
                ahead, self.settings.batch, origins=relay, unbroken=True
            )
        return found

    async def _store_answer(self, found: list[tuple[Redemption, str | None]], answer: PushAnswer) -> None:
        """Move the logs' positions past a batch the central answered, in one transaction."""
        positions: dict[tuple[str, str], int] = {}
        rejections = []
        counters = []
        for (record, _signature), result in zip(found, answer.results, strict=True):
            log_id = (record.origin, record.epoch)
            positions[log_id] = max(positions.get(log_id, 0), record.seq)
            counters.append(labelled(Family.UPSTREAM, result.status))
            self.totals.results[result.status] = self.totals.results.get(result.status, 0) + 1
            if result.status == "rejected":
                reason = result.reason or "rejected"
                rejections.append(
                    Rejection(
                        record.uuid, record.origin, record.epoch, record.seq, reason, result.detail or ""
                    )
                )
        if rejections:
            log.error(
                "the central rejected %d records for good (first: %s %s); kept in upstream_rejections",
                len(rejections),
                rejections[0].reason,
                rejections[0].detail[:200],
            )
        await self.marks.acknowledge(positions, rejections, counters, time.time())

    async def pull(self) -> int:
        """Learn the check-ins the central holds after its cursor; how many were new here.

        The cursor moves past a page only once its records were judged under the newest
        roster this gate can have. Without an active manifest nothing can be judged: a
        manifest is asked for first, and without one the cursor stays where it is.
        """
        if self.manifests.current is None:
            # Every record would be refused as unknown_origin and the cursor moved past
            # them: check-ins this gate would never learn, tickets it would admit again.
            await self.refresh_manifest()  # the central's refusal, or its manifest's, is the loop's error
            if self.manifests.current is None:
                return 0
        learned = 0
        for _page in range(MAX_PAGES):
            page = await self.client.pull(self.marks.after, self.settings.batch)
            if page.records:
                learned += await self._learn(list(page.records))
            await self.marks.reached(page.cursor)
            if not page.more:
                break
        return learned

    async def _learn(self, records: list[object]) -> int:
        """Verify and learn one pulled page; how many records were new here.

        Raises, leaving the cursor where it is, when records refused under this gate's
        roster could not be judged under the central's newer one (``_roster_renewed``).
        """
        roster = self.replication.roster()
        received = await self.replication.receive(records)
        learned = len(received.learned.applied)
        self.totals.pulled += len(records)
        self.totals.learned += learned
        if any(r.error in ROSTER_REFUSALS for r in received.refused) and await self._roster_renewed(roster):
            # The roster now lists a gate (or key) it did not when the page was judged:
            # judged again under the newer one, before the cursor moves past them.
            received = await self.replication.receive(records)
            learned += len(received.learned.applied)
            self.totals.learned += len(received.learned.applied)
        if received.refused:
            first = received.refused[0]
            log.warning(
                "%d records from the central were refused (first: %s %s)",
                len(received.refused),
                first.error,
                first.detail[:200],
            )
            refusals = (labelled(Family.UPSTREAM_REFUSED, r.error) for r in received.refused)
            await self.ledger.bump(refusals)
        return learned

    async def _roster_renewed(self, judged: Roster | None) -> bool:
        """Whether the roster changed since ``judged``: the central's newer manifest, or any.

        The central is asked for a newer manifest; one activated meanwhile by another way
        (the manifest loop, a tech's file) counts too. False only when this gate holds the
        newest roster it can know: the central has nothing newer, or this gate is ahead of
        it. Then the refusals are final (a forged record, a gate removed) and the cursor
        moves on. Otherwise this raises and the cursor stays, to judge the page again at the
        next round: a central that cannot be asked (``UpstreamError``), or a central whose
        manifest this gate refuses (``ManifestRefused``: the pull loop's error in status
        until the manifest is fixed, by the central or in the drop folder).
        """
        try:
            renewed = await self.refresh_manifest()
        except UpstreamError as exc:
            if exc.name != "gate_ahead":
                raise
            renewed = False  # this gate's manifest is newer than any the central has
        return renewed or self.replication.roster() is not judged

    async def refresh_manifest(self) -> bool:
        """Fetch, verify and activate a newer manifest; whether one was activated."""
        async with self._manifest_lock:
            return await self._refresh_manifest()

    async def _refresh_manifest(self) -> bool:
        current = self.manifests.current
        have = current.version if current is not None else None
        download = self.download_dir / "manifest.download"
        fetched = await self._download(have, download)
        if fetched is None:
            return False
        if fetched.kind == "delta" and fetched.size > MAX_DELTA_APPLIED:
            # A delta is applied in memory: one this large (a central's bug, or worse) is not,
            # and the full file, which is read in place, is asked for instead.
            download.unlink(missing_ok=True)
            log.warning("the central's delta is %d bytes; fetching the full manifest instead", fetched.size)
            fetched = await self._download(None, download)
            if fetched is None or fetched.kind != "full":
                download.unlink(missing_ok=True)
                raise UpstreamError("bad_reply", "asked for the full manifest, the central sent none")
        try:
            source = fetched.path
            if fetched.kind == "delta":
                if current is None:
                    raise UpstreamError("bad_reply", "the central sent a delta to a gate without a manifest")
                full = self.download_dir / "manifest.assembled"
                await asyncio.to_thread(write_delta_result, current, download, full, self.manifests.trusted)
                source = full
            activated = await self.manifests.offer(source)
        finally:
            download.unlink(missing_ok=True)
            (self.download_dir / "manifest.assembled").unlink(missing_ok=True)
        if activated:
            self.totals.manifests += 1
            await self.ledger.bump([labelled(Family.UPSTREAM, "manifests")])
        return activated

    async def _download(self, have: int | None, dest: Path) -> ManifestFetch | None:
        """The central's manifest for a gate holding ``have``, into ``dest``; its progress in status."""
        self.download = {"bytes": 0, "total": None, "started_at": time.time()}
        try:
            return await self.client.manifest(
                have,
                dest,
                max_bytes=MAX_MANIFEST,
                timeout=self.settings.manifest_timeout,
                progress=self._progress,
            )
        finally:
            self.download = None

    def _progress(self, done: int, total: int | None) -> None:
        if self.download is not None:
            self.download["bytes"], self.download["total"] = done, total

    async def heartbeat(self) -> None:
        """Counters and a short status to the central; the floor kept while at it."""
        counters = await self.ledger.counters()
        status = {} if self._status is None else heartbeat_status(await self._status())
        acked = self._acked[:]
        answer = await self.client.heartbeat(counters, status, acked=acked)
        del self._acked[: len(acked)]
        if self.lane is not None:
            self._acked += await self.lane.deliver(answer.get("commands"))
        await self.clock.save(self.ledger)

    async def upload_evidence(self) -> int:
        """Send the evidence rows the central has not had, batch by batch; how many were sent."""
        sent = 0
        while rows := await self.evidence.batch(self.settings.batch):
            scans = []
            for row in rows:
                try:
                    scans.append(parse_scan(row).as_dict())
                except EvidenceError as exc:  # never sent, or the upload would stop at it for good
                    log.warning("evidence row %s is not sent: %s", row["uuid"], exc)
            if scans:
                await self.client.evidence(scans)
            await self.evidence.advance(int(rows[-1]["hlc"]))
            sent += len(scans)
        return sent

    # ------------------------------------------------------------------ status

    def status(self) -> UpstreamStatus:
        """For status and metrics."""
        return {
            "url": self.client.base_url,
            "up": self.loops["drain"].error is None and self.loops["drain"].ok_at is not None,
            "pending": self.marks.pending({self.ledger.gate_id, *(self.replication.roster() or {})}),
            "cursor": self.marks.after,
            "loops": {name: state.as_dict() for name, state in self.loops.items()},
            "pushed": self.totals.pushed,
            "results": dict(self.totals.results),
            "pulled": self.totals.pulled,
            "learned": self.totals.learned,
            "manifests": self.totals.manifests,
            "download": None if self.download is None else self.download.copy(),
        }
