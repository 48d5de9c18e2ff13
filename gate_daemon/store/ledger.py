"""The gate's durable ledger: redemptions, the scan evidence log, cursors and counters.

One SQLite file in WAL mode with ``synchronous=FULL``: a transaction that returned from
its commit is on disk, so a decision shown after its commit survives a kill -9 or a power
cut. The ledger is the arbiter of double entry: a scan reads its ticket's facts, and the
redemption it then commits takes the next slot of that ticket; the unique index on
``(ticket_id, kind, slot, origin, epoch)`` refuses a second admission made on the same
facts, whatever race or retry produced it (see ``gate_daemon.store.schema``).

All access goes through one aiosqlite connection (its own thread) and one asyncio lock.
A scan is one call, ``record_scan``: the ledger's unit of work, which holds the lock
from reading the facts to committing, so scans never interleave; its commit is one
statement, one trip to the database thread (``gate_daemon.store.scans``). Records from
elsewhere are stored by ``gate_daemon.store.learning``; conflicts are judged by
``gate_daemon.store.conflicts``; ``gate_daemon.store.offline_reads`` reads a ledger file
without the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable, Container, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from gate_daemon.core.conflicts import ticket_facts
from gate_daemon.core.counters import CONFLICTS, MANIFEST_ACTIVATIONS
from gate_daemon.core.decision import LedgerFacts
from gate_daemon.core.hlc import LOGICAL_BITS, MAX_AHEAD_MS, HybridClock, Stamp
from gate_daemon.core.records import Redemption
from gate_daemon.errors import GateError
from gate_daemon.store.conflicts import (
    SELECT_CONFLICTS,
    Conflict,
    EntriesAllowed,
    conflict,
    judge_again,
    single_entry,
    ticket_moves,
)
from gate_daemon.store.learning import Learned, Learner
from gate_daemon.store.log_reader import LogReader
from gate_daemon.store.logs import LogId, OriginLogs, last_seq
from gate_daemon.store.manifest_state import ManifestState, manifest_meta, read_manifest_state
from gate_daemon.store.migrations import NotWal, SchemaTooNew, durable, migrate
from gate_daemon.store.occupancy import Occupancy
from gate_daemon.store.redeemed import RedeemedFilter
from gate_daemon.store.redemptions import INSERT_OWN, row
from gate_daemon.store.scans import (
    PolicyConflict,
    RecordedScan,
    Scan,
    ScanEvidence,
    ScanRecord,
    Verdict,
    collision,
    commit,
    new_scan_id,
    redemption_of,
    resolution,
)
from gate_daemon.store.schema import MIGRATIONS
from gate_daemon.store.time_evidence import TimeEvidence, keep_floor, latest_scan_stamp, read_evidence
from gate_daemon.store.transactions import Transaction, immediate, scalar

log = logging.getLogger(__name__)

#: How often a scan is decided when its redemption keeps meeting a slot taken meanwhile.
SCAN_ATTEMPTS = 3


class LedgerError(GateError):
    """The ledger file cannot be used (unreadable, corrupt, another gate's, too new)."""


class Ledger:
    """The ledger of one gate. Open with ``await Ledger.open(path, gate_id, entries_allowed=...)``."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        path: Path,
        gate_id: str,
        epoch: str,
        *,
        clock: HybridClock,
        logs: OriginLogs,
        redeemed: RedeemedFilter,
        entries_allowed: EntriesAllowed,
        occupancy: Occupancy,
    ) -> None:
        self._db = db
        self.path = path
        self.gate_id = gate_id
        self.epoch = epoch
        #: Stamps this gate's scans and records; moved forward by the stamps it learns.
        self.clock = clock
        self._logs = logs
        self._redeemed = redeemed
        self._entries_allowed = entries_allowed
        self._lock = asyncio.Lock()
        self._closed = False
        self._listeners: list[Callable[[Redemption], None]] = []
        #: Serves peers and the drain from committed data, without the lock.
        self._log_reader = LogReader(path)
        #: Who is inside, per scope, and places granted (docs/CAPACITY.md).
        self.occupancy = occupancy
        self._learner = Learner(
            db, self.transaction, logs=logs, redeemed=redeemed, clock=clock, entries_allowed=entries_allowed,
            occupancy=occupancy,
        )  # fmt: skip

    @classmethod
    async def open(
        cls, path: Path, gate_id: str, *, entries_allowed: EntriesAllowed = single_entry
    ) -> Ledger:
        """Open (or create) the ledger at ``path`` for ``gate_id``, migrating its schema.

        ``entries_allowed`` is a ticket's entry limit, by which double entries are judged
        from the first judgement on: a gate's is its active manifest's
        (``store.conflicts.entry_limit``); without one every ticket counts as
        single-entry.
        """
        try:
            # Large chunks: the start reads every redeemed ticket id once.
            db = await aiosqlite.connect(path, isolation_level=None, iter_chunk_size=4096)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open ledger {path}: {exc}") from None
        try:
            ledger = await cls._prepare(db, path, gate_id, entries_allowed)
        except sqlite3.DatabaseError as exc:
            await db.close()
            raise LedgerError(f"ledger {path} is not usable: {exc}") from None
        except BaseException:
            await db.close()
            raise
        return ledger

    @classmethod
    async def _prepare(
        cls, db: aiosqlite.Connection, path: Path, gate_id: str, entries_allowed: EntriesAllowed
    ) -> Ledger:
        try:
            await durable(db)
            await migrate(db, MIGRATIONS)
        except NotWal as exc:
            raise LedgerError(
                f"ledger {path}: cannot use WAL mode (got {exc.mode}); is it on a network filesystem?"
            ) from None
        except SchemaTooNew as exc:
            raise LedgerError(
                f"ledger {path} has schema version {exc.version}, newer than this gate-daemon "
                f"understands ({exc.known}); upgrade gate-daemon or move the file away"
            ) from None
        epoch = await _claim(db, path, gate_id)
        logs = await OriginLogs.load(db, (gate_id, epoch))
        redeemed = RedeemedFilter()
        async with db.execute("SELECT DISTINCT ticket_id FROM redemptions") as cursor:
            async for found in cursor:
                redeemed.add(str(found[0]))
        return cls(
            db,
            path,
            gate_id,
            epoch,
            clock=HybridClock(await _last_stamp(db, gate_id, epoch)),
            logs=logs,
            redeemed=redeemed,
            entries_allowed=entries_allowed,
            occupancy=await Occupancy.load(db, gate_id),
        )

    async def close(self) -> None:
        """Checkpoint the WAL and close the file (again: nothing)."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            await self._log_reader.aclose()
            with contextlib.suppress(sqlite3.Error):  # the WAL is replayed at the next open
                await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            await self._db.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One write transaction under the ledger's lock; committed (durably) when the block ends."""
        # The lock is let go only once nothing is left open (store.transactions).
        async with self._lock, immediate(self._db):
            yield Transaction(self._db)

    # ---------------------------------------------------------------- the scan

    async def record_scan(
        self, scan: Scan, ticket_id: str | None, verdict: Verdict
    ) -> ScanRecord | RecordedScan:
        """Decide and commit one scan: the ledger's unit of work, under its lock.

        The hybrid clock stamps the scan, the facts of ``ticket_id`` are read (none without
        a ticket), ``verdict`` decides on them, the resolution and (for an admission or an
        exit) the ticket's next slot follow, and the evidence row, its counters and the
        redemption commit in one statement, durable when this returns. A slot taken
        meanwhile means the facts were stale (another writer on the file): the scan is
        decided again on facts read from the file, ``SCAN_ATTEMPTS`` times at most, then
        ``PolicyConflict``. A scan whose uuid is already recorded (a retried request) is
        answered with what was recorded, and nothing is written.
        """
        for _attempt in range(SCAN_ATTEMPTS):
            try:
                async with self._lock:
                    return await self._decide_and_commit(scan, ticket_id, verdict)
            except PolicyConflict:
                # A failure to read is decided again: a lasting one meets the next try too.
                with contextlib.suppress(sqlite3.Error, ValueError):
                    if (recorded := await self.find_scan(scan.uuid)) is not None:
                        return recorded
                log.warning("scan %s lost a race for its ticket's entry; deciding again", scan.uuid)
        raise PolicyConflict("the ticket's entries kept changing under the scan")

    async def _decide_and_commit(self, scan: Scan, ticket_id: str | None, verdict: Verdict) -> ScanRecord:
        """One attempt of ``record_scan``, under the lock; ``PolicyConflict`` when its slot is taken."""
        hlc = self.clock.tick(int(scan.wall * 1000))
        facts = LedgerFacts() if ticket_id is None else await self._facts(ticket_id)
        decision = verdict(facts)
        evidence = ScanEvidence(scan, self.gate_id, hlc, decision, resolution(decision, scan.kind))
        record = redemption_of(evidence, ticket_id, facts, epoch=self.epoch, seq=self._logs.own + 1)
        if self._db.in_transaction:
            # Never commit into a transaction someone left open: it might never be committed.
            raise sqlite3.OperationalError("the ledger connection is inside an unfinished transaction")
        try:
            await commit(self._db, evidence, record)
        except sqlite3.IntegrityError as exc:
            if record is not None:
                # The slot is taken, so the ticket has redemptions the memory did not know of:
                # the next attempt must read its facts from the file.
                self._redeemed.add(record.ticket_id)
            taken = collision(exc)
            if taken == "numbering":
                # Another process wrote this gate's file: take up its numbering and retry.
                self._logs.own = await last_seq(self._db, self._logs.mine)
            if taken is None:
                raise
            raise PolicyConflict(str(exc)) from None
        self.occupancy.took(evidence)
        if record is not None:
            self._redeemed.add(record.ticket_id)
            self._own(record)
        return ScanRecord(evidence, record)

    async def facts(self, ticket_id: str) -> LedgerFacts:
        """What the ledger knows of ``ticket_id``'s entries and exits, between scans."""
        async with self._lock:
            return await self._facts(ticket_id)

    async def _facts(self, ticket_id: str) -> LedgerFacts:
        """A ticket's facts, read under the lock.

        A ticket with no redemption at all (most scans are a ticket's first) is answered
        from memory (``RedeemedFilter``) without a trip to the database. Every redemption
        written through this ledger, and every one in the file at start, is added to the
        filter, so it never answers "none" for a ticket that has one; whatever writes
        redemptions (replication included) must go through the ledger for that reason.
        And were it ever wrong about this gate's own admissions, the slot would collide in
        the unique index and the scan would be decided again on facts read from the file.
        """
        if ticket_id not in self._redeemed:
            return LedgerFacts()
        return ticket_facts(await ticket_moves(self._db, "redemptions", ticket_id))

    async def find_scan(self, scan_id: str) -> RecordedScan | None:
        """The decision and payload fingerprint recorded for scan ``scan_id``, if it was recorded."""
        async with self._lock:
            rows = list(
                await self._db.execute_fetchall(
                    "SELECT decision, fingerprint FROM scans WHERE uuid = ?", (scan_id,)
                )
            )
        return RecordedScan(json.loads(rows[0][0]), str(rows[0][1])) if rows else None

    def subscribe(self, listener: Callable[[Redemption], None]) -> None:
        """Call ``listener`` with each of this gate's own records once it is committed."""
        self._listeners.append(listener)

    def _own(self, record: Redemption) -> None:
        self._logs.took(record.seq)
        for listener in self._listeners:
            try:
                listener(record)
            except Exception:  # the record is committed; a listener must not undo the scan
                log.exception("a ledger listener failed")

    async def void(
        self,
        scan_id: str,
        *,
        wall: float,
        operator: str | None,
        counters: Sequence[str],
        resolution: str = "not_passed",
    ) -> Redemption | None:
        """Take back this gate's redemption made by scan ``scan_id``: the person never passed.

        Appends a ``void`` record naming the redemption (it replicates like any other),
        marks the scan's evidence row ``resolution`` (``not_passed``; a supervised lane's
        ``not_confirmed``), counts ``counters`` and updates
        the ticket's conflicts, in one transaction; returns the void. None, with nothing
        written, when the scan made no redemption here or it is already voided. The
        transaction holds the lock: no scan decides in between.
        """
        async with self.transaction() as tx:
            rows = list(
                await self._db.execute_fetchall(
                    "SELECT ticket_id, mode FROM redemptions"
                    " WHERE uuid = ?1 AND origin = ?2 AND kind != 'void'"
                    " AND NOT EXISTS (SELECT 1 FROM redemptions WHERE voids = ?1 AND origin = ?2)",
                    (scan_id, self.gate_id),
                )
            )
            if not rows:
                return None
            record = Redemption(
                uuid=new_scan_id(),
                ticket_id=str(rows[0][0]),
                kind="void",
                slot=None,
                origin=self.gate_id,
                epoch=self.epoch,
                seq=self._logs.own + 1,
                hlc=self.clock.tick(int(wall * 1000)),
                wall=wall,
                operator=operator,
                mode=str(rows[0][1]),
                voids=scan_id,
            )
            await tx.execute(INSERT_OWN, row(record))
            await tx.execute("UPDATE scans SET resolution = ? WHERE uuid = ?", (resolution, scan_id))
            await tx.count(counters)
            tickets = {record.ticket_id}
            judged = await judge_again(self._db, "redemptions", tickets, self._entries_allowed, wall)
            await tx.count([CONFLICTS] * judged.found)
            tallies = await self.occupancy.recount(tx.execute)
        self.occupancy.keep(tallies)  # no await since the commit: no scan saw the old counts
        self._own(record)
        return record

    # ---------------------------------------------------------------- what the gate keeps

    async def ping(self) -> None:
        """A round trip through the lock and the database thread (the watchdog's probe)."""
        async with self._lock:
            await scalar(self._db, "SELECT 1")
            if self._db.in_transaction:
                raise sqlite3.OperationalError("the ledger connection is inside an unfinished transaction")

    async def counters(self) -> dict[str, int]:
        """Every persisted counter."""
        async with self._lock:
            rows = await self._db.execute_fetchall("SELECT name, value FROM counters ORDER BY name")
        return {str(name): int(value) for name, value in rows}

    async def bump(self, names: Iterable[str]) -> None:
        """Add one to counters outside a scan (a refused manifest, an unreadable image)."""
        async with self.transaction() as tx:
            await tx.count(names)

    async def manifest_state(self) -> ManifestState:
        """The last manifest activated, as recorded (``gate_daemon.store.manifest_state``)."""
        async with self._lock:
            return await read_manifest_state(self._db)

    async def record_manifest(self, state: ManifestState) -> None:
        """Remember the manifest just activated, so an older one is refused after restarts."""
        async with self.transaction() as tx:
            await tx.set_meta(manifest_meta(state))
            await tx.count([MANIFEST_ACTIVATIONS])

    async def time_evidence(self) -> TimeEvidence:
        """The time floor kept and the latest stamps held (``gate_daemon.store.time_evidence``)."""
        async with self._lock:
            return await read_evidence(self._db, self.gate_id, self.epoch)

    async def keep_time_floor(self, floor: float) -> None:
        """Keep ``floor``, the latest time this gate knows has passed, in the file."""
        async with self.transaction() as tx:
            await keep_floor(tx, floor)

    # ---------------------------------------------------------------- conflicts

    async def recheck_conflicts(self, now: float) -> int:
        """Judge again every ticket with more than one entry; how many conflicts are new.

        For a new manifest: a ticket's entry policy may have changed with it, and gates
        holding the same records and the same manifest must hold the same conflicts.
        """
        async with self.transaction() as tx:
            rows = await self._db.execute_fetchall(
                "SELECT ticket_id FROM redemptions WHERE kind = 'entry'"
                " GROUP BY ticket_id HAVING COUNT(*) > 1"
            )
            tickets = {str(found[0]) for found in rows}
            judged = await judge_again(self._db, "redemptions", tickets, self._entries_allowed, now)
            await tx.count([CONFLICTS] * judged.found)
        return judged.found

    async def conflict_count(self) -> int:
        """How many double entries are recorded."""
        async with self._lock:
            return int(await scalar(self._db, "SELECT COUNT(*) FROM conflicts") or 0)

    async def conflicts(self) -> list[Conflict]:
        """Every double entry recorded, oldest loser first."""
        async with self._lock:
            return [conflict(found) for found in await self._db.execute_fetchall(SELECT_CONFLICTS)]

    # ---------------------------------------------------------------- replication

    def known(self) -> dict[LogId, int]:
        """Each origin log held, with the end of its unbroken run from 1: where to continue."""
        return self._logs.known()

    def held(self) -> dict[LogId, int]:
        """Each origin log held, with the highest sequence number held."""
        return self._logs.held()

    async def learn(self, records: Sequence[tuple[Redemption, str]], *, now: float) -> Learned:
        """Store records learned from elsewhere, already verified against their origin's key.

        See ``gate_daemon.store.learning``: in batches, each one transaction with the
        logs' positions, the tickets' conflicts and the counters.
        """
        return await self._learner.learn(records, now=now)

    async def records_after(
        self,
        known: Mapping[LogId, int],
        limit: int,
        origins: Container[str] | None = None,
        *,
        unbroken: bool = False,
    ) -> tuple[list[tuple[Redemption, str | None]], bool]:
        """Records held beyond ``known`` (per origin log; absent logs from the start), oldest first.

        Up to ``limit`` records, each with its origin's signature (None for this gate's
        own, to be signed as it leaves), and whether more remain. With ``origins``, only
        the logs of those origins (a revoked gate's records are not passed on). With
        ``unbroken``, only up to the end of each log's unbroken run (a reader that keeps
        one position per log must not move it past a gap that fills later).
        """
        ends = self._logs.known() if unbroken else self._logs.held()
        return await self._log_reader.records_after(ends, known, limit, origins)


async def _claim(db: aiosqlite.Connection, path: Path, gate_id: str) -> str:
    """The file's epoch, made (with its owner) when the file is new; ``LedgerError`` if another gate's."""
    meta = {str(k): str(v) for k, v in await db.execute_fetchall("SELECT key, value FROM meta")}
    owner = meta.get("gate_id")
    if owner is not None and owner != gate_id:
        raise LedgerError(
            f"ledger {path} belongs to gate {owner!r}, not {gate_id!r}; give each gate its own state_dir"
        )
    epoch = meta.get("epoch")
    if epoch is None or owner is None:
        epoch = epoch or str(uuidlib.uuid4())
        await db.execute("BEGIN IMMEDIATE")
        await db.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [("epoch", epoch), ("gate_id", gate_id), ("created_at", repr(time.time()))],
        )
        await db.execute("COMMIT")
    return epoch


async def _last_stamp(db: aiosqlite.Connection, gate_id: str, epoch: str) -> int:
    """The stamp the clock resumes after: every stamp this gate made, and those it learned.

    A learned stamp too far ahead of the wall clock is not followed (a peer whose clock was
    a day fast must not drag this one a day ahead at the next start). The scans' latest
    stamp is the one their statement keeps, not a read of the whole evidence log.
    """
    ahead = Stamp(int(time.time() * 1000) + MAX_AHEAD_MS, (1 << LOGICAL_BITS) - 1).packed
    last = await scalar(
        db,
        "SELECT MAX(hlc) FROM redemptions WHERE (origin = ? AND epoch = ?) OR hlc <= ?",
        (gate_id, epoch, ahead),
    )
    return max(int(last or 0), await latest_scan_stamp(db) or 0)
