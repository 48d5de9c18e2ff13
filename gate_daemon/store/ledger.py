"""The gate's durable ledger: redemptions, the scan evidence log, cursors and counters.

One SQLite file in WAL mode with ``synchronous=FULL``: a transaction that returned from
its commit is on disk, so a decision shown after its commit survives a kill -9 or a power
cut. The ledger is the arbiter of double entry: a scan reads its ticket's facts, and the
redemption it then commits takes the next slot of that ticket; the unique index on
``(ticket_id, kind, slot, origin)`` refuses a second admission made on the same facts,
whatever race or retry produced it (see ``gate_daemon.store.schema``).

All access goes through one aiosqlite connection (its own thread) and one asyncio lock
(``serial``): a scan holds it from reading facts to committing, so scans never
interleave. A scan's commit is one statement: one trip to the database thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
import urllib.parse
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable, Container, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from gate_daemon.core.conflicts import Move, losers, ticket_facts
from gate_daemon.core.decision import LedgerFacts, ScanKind
from gate_daemon.core.hlc import LOGICAL_BITS, MAX_AHEAD_MS, HybridClock, Stamp
from gate_daemon.core.records import Redemption
from gate_daemon.core.times import format_instant
from gate_daemon.errors import GateError
from gate_daemon.store.redeemed import RedeemedFilter
from gate_daemon.store.schema import MIGRATIONS
from gate_daemon.store.transactions import finish, immediate

log = logging.getLogger(__name__)


class LedgerError(GateError):
    """The ledger file cannot be used (unreadable, corrupt, another gate's, too new)."""


class PolicyConflict(Exception):
    """A redemption's slot is already taken: the facts it was decided on are stale."""


@dataclass(frozen=True, slots=True)
class ScanEvidence:
    """One row of the evidence log: what was scanned, where, by whom, and the answer."""

    uuid: str
    hlc: int
    wall: float
    gate: str
    device: str
    operator: str | None
    fingerprint: str
    ticket_id: str | None
    kind: ScanKind
    outcome: str
    reason: str
    resolution: str
    mode: str
    manifest_version: int | None
    decision: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RecordedScan:
    """A scan as the evidence log has it: the decision shown and the payload's fingerprint."""

    decision: dict[str, Any]
    fingerprint: str


@dataclass(frozen=True, slots=True)
class ManifestState:
    """What the ledger remembers of the last manifest activated."""

    version: int = 0
    body_sha256: str | None = None
    issued_at: int | None = None
    activated_at: float | None = None


_COMMIT_SCAN = (
    "INSERT INTO scan_commits (uuid, hlc, wall, gate, device, operator, fingerprint, ticket_id, kind,"
    " outcome, reason, resolution, mode, manifest_version, decision, redeem, slot, origin, epoch, seq,"
    " forced, counters) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_COLUMNS = "uuid, ticket_id, kind, slot, origin, epoch, seq, hlc, wall, operator, mode, forced, voids"
_INSERT_LEARNED = (
    f"INSERT OR IGNORE INTO redemptions ({_COLUMNS}, sig)"  # noqa: S608 (constants only)
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_OWN = f"INSERT INTO redemptions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
_SELECT_LOG = (
    f"SELECT {_COLUMNS}, sig FROM redemptions WHERE origin = ? AND epoch = ? AND seq > ?"  # noqa: S608
    " ORDER BY seq LIMIT ?"
)
#: Host parameters per statement when a list is spelled out (SQLite allows 32766).
_CHUNK = 500
#: Records stored per transaction by ``learn`` (a scan waits for one such batch at most).
LEARN_BATCH = 50


@dataclass(frozen=True, slots=True)
class Learned:
    """What storing a batch of records from elsewhere did."""

    applied: tuple[Redemption, ...] = ()
    duplicates: int = 0
    #: Records refused by the ledger's rules (a slot, sequence number or void taken by
    #: another record of the same origin), with what they collided with.
    refused: tuple[tuple[str, str], ...] = ()
    conflicts: int = 0
    clock_ahead: int = 0


@dataclass(frozen=True, slots=True)
class Conflict:
    """A double entry: the entry that stands and the one that should not have happened."""

    ticket_id: str
    winner: Redemption
    loser: Redemption
    detected_at: float

    def as_dict(self) -> dict[str, Any]:
        """The conflict as ``gatectl report conflicts --json`` shows it."""

        def side(record: Redemption) -> dict[str, Any]:
            return {
                "uuid": record.uuid,
                "gate": record.origin,
                "at": format_instant(record.wall),
                "hlc": record.hlc,
                "operator": record.operator,
            }

        return {
            "ticket_id": self.ticket_id,
            "stands": side(self.winner),
            "conflict": side(self.loser),
            "detected_at": format_instant(self.detected_at),
        }


def new_scan_id() -> str:
    """A scan UUID, made when the scan happens."""
    return str(uuidlib.uuid4())


class Ledger:
    """The ledger of one gate. Open with ``await Ledger.open(path, gate_id)``."""

    def __init__(self, db: aiosqlite.Connection, path: Path, gate_id: str, epoch: str) -> None:
        self._db = db
        self.path = path
        self.gate_id = gate_id
        self.epoch = epoch
        self.clock = HybridClock()
        self._lock = asyncio.Lock()
        self._redeemed = RedeemedFilter()
        self._closed = False
        #: The last sequence number of this gate's own log in this epoch.
        self._seq = 0
        #: Per origin log held: (origin, epoch) -> [unbroken run from 1, highest held].
        self._logs: dict[tuple[str, str], list[int]] = {}
        self._listeners: list[Callable[[Redemption], None]] = []
        #: A second, read-only connection (its own thread) for serving peers: a pull is
        #: answered from committed data without holding ``serial``, so it never delays a scan.
        self._reader: aiosqlite.Connection | None = None
        #: Held by ``learn`` from its first batch to its last: scans wait for one batch at most.
        self._learning = asyncio.Lock()
        #: A ticket's entry limit (None: re-entry after each exit), for finding double
        #: entries. The gate sets it from its manifest; unknown tickets count as single-entry.
        self.entries_allowed: Callable[[str], int | None] = lambda _ticket: 1

    @classmethod
    async def open(cls, path: Path, gate_id: str) -> Ledger:
        """Open (or create) the ledger at ``path`` for ``gate_id``, migrating its schema."""
        try:
            # Large chunks: the start reads every redeemed ticket id once.
            db = await aiosqlite.connect(path, isolation_level=None, iter_chunk_size=4096)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open ledger {path}: {exc}") from None
        try:
            ledger = await cls._prepare(db, path, gate_id)
        except sqlite3.DatabaseError as exc:
            await db.close()
            raise LedgerError(f"ledger {path} is not usable: {exc}") from None
        except BaseException:
            await db.close()
            raise
        return ledger

    @classmethod
    async def _prepare(cls, db: aiosqlite.Connection, path: Path, gate_id: str) -> Ledger:
        await db.execute("PRAGMA busy_timeout = 5000")
        mode = await _scalar(db, "PRAGMA journal_mode = WAL")
        if str(mode).lower() != "wal":
            raise LedgerError(
                f"ledger {path}: cannot use WAL mode (got {mode}); is it on a network filesystem?"
            )
        await db.execute("PRAGMA synchronous = FULL")
        version = int(await _scalar(db, "PRAGMA user_version") or 0)
        if version > len(MIGRATIONS):
            raise LedgerError(
                f"ledger {path} has schema version {version}, newer than this gate-daemon "
                f"understands ({len(MIGRATIONS)}); upgrade gate-daemon or move the file away"
            )
        for number in range(version, len(MIGRATIONS)):
            await db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(MIGRATIONS[number]):
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version = {number + 1}")
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
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
        ledger = cls(db, path, gate_id, epoch)
        # The clock resumes after every stamp this gate made, and after the stamps it learned
        # as ``learn`` folds them in: one too far ahead of the wall clock is not followed (a
        # peer whose clock was a day fast must not drag this one a day ahead at the next start).
        ahead = Stamp(int(time.time() * 1000) + MAX_AHEAD_MS, (1 << LOGICAL_BITS) - 1).packed
        last = await _scalar(
            db,
            "SELECT MAX(h) FROM (SELECT MAX(hlc) AS h FROM redemptions"
            " WHERE (origin = ? AND epoch = ?) OR hlc <= ? UNION ALL SELECT MAX(hlc) FROM scans)",
            (gate_id, epoch, ahead),
        )
        ledger.clock = HybridClock(int(last or 0))
        own = await _scalar(
            db, "SELECT MAX(seq) FROM redemptions WHERE origin = ? AND epoch = ?", (gate_id, epoch)
        )
        ledger._seq = int(own or 0)
        for origin, log_epoch, seq, held in await db.execute_fetchall(
            "SELECT origin, epoch, seq, held FROM cursors"
        ):
            ledger._logs[(str(origin), str(log_epoch))] = [int(seq), int(held)]
        ledger._logs[(gate_id, epoch)] = [ledger._seq, ledger._seq]
        async with db.execute("SELECT DISTINCT ticket_id FROM redemptions") as cursor:
            async for row in cursor:
                ledger._redeemed.add(str(row[0]))
        return ledger

    async def close(self) -> None:
        """Checkpoint the WAL and close the file (again: nothing)."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._reader is not None:
                with contextlib.suppress(sqlite3.Error, ValueError):
                    await self._reader.close()
            with contextlib.suppress(sqlite3.Error):  # the WAL is replayed at the next open
                await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            await self._db.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One write transaction; committed (durably) when the block ends without error."""
        # The lock is let go only once nothing is left open (store.transactions).
        async with self._lock, immediate(self._db):
            yield Transaction(self)

    @property
    def serial(self) -> asyncio.Lock:
        """Held by a scan from reading its ticket's facts to committing: scans never interleave."""
        return self._lock

    async def facts(self, ticket_id: str) -> LedgerFacts:
        """What the ledger knows of ``ticket_id``'s entries and exits. Call under ``serial``.

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
        rows = await self._db.execute_fetchall(
            "SELECT uuid, kind, hlc, origin, voids, wall FROM redemptions"
            " WHERE ticket_id = ? ORDER BY hlc, uuid",
            (ticket_id,),
        )
        return ticket_facts(
            [
                Move(str(u), str(k), int(h), str(o), voids=None if v is None else str(v), wall=float(w))
                for u, k, h, o, v, w in rows
            ]
        )

    async def commit_scan(
        self, scan: ScanEvidence, counters: Sequence[str], redeem: LedgerFacts | None = None
    ) -> Redemption | None:
        """Commit a scan's evidence and counters and, with ``redeem``, its entry or exit: all or nothing.

        ``redeem`` is the facts the admission was decided on: the redemption takes the
        ticket's next slot after them; the file numbers it next in this gate's sequence;
        its time, operator and mode are the scan's. One statement through the ``scan_commits``
        view, durable when this returns. Raises ``PolicyConflict`` when the slot is taken
        (the facts were stale); nothing is written then. Call under ``serial``.
        """
        record = None
        if redeem is not None:
            if scan.ticket_id is None:
                raise ValueError("a redemption needs the scan's ticket id")
            if scan.kind is ScanKind.ENTRY:
                taken = max(redeem.entries, redeem.entry_slots)
            else:
                taken = max(redeem.exits, redeem.exit_slots)
            record = Redemption(
                uuid=scan.uuid,
                ticket_id=scan.ticket_id,
                kind=scan.kind.value,
                slot=taken + 1,
                origin=self.gate_id,
                epoch=self.epoch,
                seq=self._seq + 1,
                hlc=scan.hlc,
                wall=scan.wall,
                operator=scan.operator,
                mode=scan.mode,
            )
        if self._db.in_transaction:
            # Never commit into a transaction someone left open: it might never be committed.
            raise sqlite3.OperationalError("the ledger connection is inside an unfinished transaction")
        try:
            await self._commit_statement(scan, record, counters)
        except sqlite3.IntegrityError as exc:
            if record is not None:
                # The slot is taken, so the ticket has redemptions the memory did not know of:
                # the retry must read its facts from the file.
                self._redeemed.add(record.ticket_id)
            if "redemptions.origin" in str(exc):
                # Another process wrote this gate's file: take up its numbering and retry.
                self._seq = int(
                    await _scalar(
                        self._db,
                        "SELECT MAX(seq) FROM redemptions WHERE origin = ? AND epoch = ?",
                        (self.gate_id, self.epoch),
                    )
                    or 0
                )
                raise PolicyConflict(str(exc)) from None
            if any(key in str(exc) for key in ("redemptions.ticket_id", "redemptions.uuid", "scans.uuid")):
                raise PolicyConflict(str(exc)) from None
            raise
        if record is not None:
            self._redeemed.add(record.ticket_id)
            self._own(record)
        return record

    def subscribe(self, listener: Callable[[Redemption], None]) -> None:
        """Call ``listener`` with each of this gate's own records once it is committed."""
        self._listeners.append(listener)

    def _own(self, record: Redemption) -> None:
        self._seq = record.seq
        self._logs[(self.gate_id, self.epoch)] = [record.seq, record.seq]
        for listener in self._listeners:
            try:
                listener(record)
            except Exception:  # the record is committed; a listener must not undo the scan
                log.exception("a ledger listener failed")

    async def _commit_statement(
        self, scan: ScanEvidence, record: Redemption | None, counters: Sequence[str]
    ) -> None:
        try:
            await self._db.execute(_COMMIT_SCAN, (
                scan.uuid, scan.hlc, scan.wall, scan.gate, scan.device, scan.operator, scan.fingerprint,
                scan.ticket_id, scan.kind.value, scan.outcome, scan.reason, scan.resolution, scan.mode,
                scan.manifest_version, json.dumps(scan.decision, separators=(",", ":")),
                record is not None,
                record.slot if record else None,
                record.origin if record else None,
                record.epoch if record else None,
                record.seq if record else None,
                int(record.forced) if record else 0,
                json.dumps(list(counters)),
            ))  # fmt: skip
        finally:
            # The statement ran in autocommit, so no transaction may be open after it. If
            # one is (someone's BEGIN slipped in), the scan is not durable: undo, refuse.
            if self._db.in_transaction:
                cancelled = await finish(asyncio.ensure_future(self._db.execute("ROLLBACK")))
                if cancelled:
                    raise asyncio.CancelledError from None
                raise sqlite3.OperationalError("a transaction was left open around a scan; scan refused")

    async def ping(self) -> None:
        """A round trip through the lock and the database thread (the watchdog's probe)."""
        async with self._lock:
            await _scalar(self._db, "SELECT 1")
            if self._db.in_transaction:
                raise sqlite3.OperationalError("the ledger connection is inside an unfinished transaction")

    async def counters(self) -> dict[str, int]:
        """Every persisted counter."""
        async with self._lock:
            rows = await self._db.execute_fetchall("SELECT name, value FROM counters ORDER BY name")
        return {str(name): int(value) for name, value in rows}

    async def manifest_state(self) -> ManifestState:
        """The last manifest activated, as recorded."""
        async with self._lock:
            rows = await self._db.execute_fetchall("SELECT key, value FROM meta WHERE key LIKE 'manifest_%'")
        meta = {str(k): str(v) for k, v in rows}
        if "manifest_version" not in meta:
            return ManifestState()
        return ManifestState(
            version=int(meta["manifest_version"]),
            body_sha256=meta.get("manifest_sha256"),
            issued_at=int(meta["manifest_issued_at"]) if "manifest_issued_at" in meta else None,
            activated_at=float(meta["manifest_activated_at"]) if "manifest_activated_at" in meta else None,
        )

    async def record_manifest(self, state: ManifestState) -> None:
        """Remember the manifest just activated, so an older one is refused after restarts."""
        values = [
            ("manifest_version", str(state.version)),
            ("manifest_sha256", state.body_sha256 or ""),
            ("manifest_issued_at", str(state.issued_at or 0)),
            ("manifest_activated_at", repr(state.activated_at or time.time())),
        ]
        async with self.transaction() as tx:
            await tx.set_meta(values)
            await tx.count(["manifest_activations"])

    async def find_scan(self, scan_id: str) -> RecordedScan | None:
        """The decision and payload fingerprint recorded for scan ``scan_id``, if it was recorded."""
        async with self._lock:
            rows = list(
                await self._db.execute_fetchall(
                    "SELECT decision, fingerprint FROM scans WHERE uuid = ?", (scan_id,)
                )
            )
        return RecordedScan(json.loads(rows[0][0]), str(rows[0][1])) if rows else None

    async def void(
        self, scan_id: str, *, wall: float, operator: str | None, counters: Sequence[str]
    ) -> Redemption | None:
        """Take back this gate's redemption made by scan ``scan_id``: the person never passed.

        Appends a ``void`` record naming the redemption (it replicates like any other),
        marks the scan's evidence row ``not_passed``, counts ``counters`` and updates
        the ticket's conflicts, in one transaction; returns the void. None, with nothing
        written, when the scan made no redemption here or it is already voided. The
        transaction holds ``serial``: no scan decides in between.
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
                seq=self._seq + 1,
                hlc=self.clock.tick(int(wall * 1000)),
                wall=wall,
                operator=operator,
                mode=str(rows[0][1]),
                voids=scan_id,
            )
            await tx.execute(_INSERT_OWN, _row(record))
            await tx.execute("UPDATE scans SET resolution = 'not_passed' WHERE uuid = ?", (scan_id,))
            await tx.count(counters)
            found = await self._recheck_conflicts(tx, {record.ticket_id}, wall)
            await tx.count(["conflicts"] * found)
        self._own(record)
        return record

    # ---------------------------------------------------------------- replication

    def known(self) -> dict[tuple[str, str], int]:
        """Each origin log held, with the end of its unbroken run from 1: where to continue."""
        return {log_id: run for log_id, (run, _held) in self._logs.items()}

    def held(self) -> dict[tuple[str, str], int]:
        """Each origin log held, with the highest sequence number held."""
        return {log_id: held for log_id, (_run, held) in self._logs.items()}

    async def records_after(
        self,
        known: Mapping[tuple[str, str], int],
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
        ends = {log_id: run if unbroken else held for log_id, (run, held) in self._logs.items()}
        behind = [
            (log_id, known.get(log_id, 0), end)
            for log_id, end in ends.items()
            if end > known.get(log_id, 0) and (origins is None or log_id[0] in origins)
        ]
        out: list[tuple[Redemption, str | None]] = []
        if not behind:
            return out, False
        reader = await self._read_only()
        for (origin, epoch), after, end in behind:
            if len(out) >= limit:
                return out, True
            rows = await reader.execute_fetchall(_SELECT_LOG, (origin, epoch, after, limit - len(out) + 1))
            for row in rows:
                if int(row[6]) > end:
                    break
                if len(out) >= limit:
                    return out, True
                out.append((_redemption(row), None if row[13] is None else str(row[13])))
        return out, False

    async def _read_only(self) -> aiosqlite.Connection:
        """The reader connection, opened at first use."""
        if self._closed:
            raise ValueError("the ledger is closed")
        if self._reader is None:
            uri = f"file:{urllib.parse.quote(str(self.path.absolute()))}?mode=ro"
            reader = await aiosqlite.connect(uri, uri=True, isolation_level=None)
            await reader.execute("PRAGMA busy_timeout = 5000")
            if self._reader is None and not self._closed:
                self._reader = reader
            else:
                await reader.close()
        assert self._reader is not None
        return self._reader

    async def learn(self, records: Sequence[tuple[Redemption, str]], *, now: float) -> Learned:
        """Store records learned from elsewhere, already verified against their origin's key.

        In transactions of ``LEARN_BATCH`` records, each holding the records, each origin
        log's new position, the tickets' conflicts and the counters, and each letting a
        waiting scan in before the next: one learner at a time, so a scan waits for one
        batch at most. Records already held (by uuid) are duplicates, and so are this
        gate's own; a record colliding with a different one of its origin (the same slot,
        sequence number or void) is refused, kept as evidence and reported, never
        overwritten.
        """
        async with self._learning:
            parts = [
                await self._learn(records[start : start + LEARN_BATCH], now=now)
                for start in range(0, len(records), LEARN_BATCH)
            ]
        return Learned(
            applied=tuple(r for part in parts for r in part.applied),
            duplicates=sum(part.duplicates for part in parts),
            refused=tuple(r for part in parts for r in part.refused),
            conflicts=sum(part.conflicts for part in parts),
            clock_ahead=sum(part.clock_ahead for part in parts),
        )

    async def _learn(self, records: Sequence[tuple[Redemption, str]], *, now: float) -> Learned:
        mine = (self.gate_id, self.epoch)
        batch: dict[str, tuple[Redemption, str]] = {}
        for record, signature in records:
            # This gate's own records come back only if its file is behind what it once
            # wrote (restored from an older copy): they are learned like any others, and
            # its numbering moves past them.
            if (record.origin, record.epoch) != mine or record.seq > self._seq:
                batch.setdefault(record.uuid, (record, signature))
        duplicates = len(records) - len(batch)
        if not batch:
            return Learned(duplicates=duplicates)
        now_ms = int(now * 1000)
        positions: dict[tuple[str, str], list[int]] = {}
        async with self.transaction() as tx:
            held = await self._existing(list(batch), refused=True)
            fresh = [pair for uuid, pair in batch.items() if uuid not in held]
            duplicates += len(batch) - len(fresh)
            await self._db.executemany(_INSERT_LEARNED, [(*_row(r), sig) for r, sig in fresh])
            stored = await self._existing([r.uuid for r, _ in fresh])
            applied = tuple(r for r, _ in fresh if r.uuid in stored)
            turned = [(r, sig, await self._collision(r)) for r, sig in fresh if r.uuid not in stored]
            refused = tuple((r.uuid, reason) for r, _, reason in turned)
            await self._db.executemany(
                "INSERT OR IGNORE INTO refused_records"
                " (uuid, origin, epoch, seq, reason, record, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (r.uuid, r.origin, r.epoch, r.seq, reason, json.dumps(r.wire(sig)), now)
                    for r, sig, reason in turned
                ],
            )
            for record in applied:
                self._redeemed.add(record.ticket_id)
            positions = await self._advance(tx, [*applied, *(r for r, _, _ in turned)], now)
            found = await self._recheck_conflicts(tx, {r.ticket_id for r in applied}, now)
            ahead = 0
            for record in applied:
                if Stamp.unpack(record.hlc).millis - now_ms > MAX_AHEAD_MS:
                    ahead += 1
                self.clock.observe(record.hlc, now_ms)
            counts = ["peer:applied"] * len(applied) + ["peer:refused"] * len(refused)
            counts += ["conflicts"] * found + ["peer:clock_ahead"] * ahead
            await tx.count(counts)
        # Only now: had the transaction failed, ``known`` would claim records never stored,
        # and no peer would send them again.
        self._logs.update(positions)
        if mine in positions and positions[mine][1] > self._seq:
            log.warning(
                "peers hold this gate's records up to %d, this ledger only to %d: it was restored from an "
                "older copy? its own records were learned back and numbering continues after them",
                positions[mine][1], self._seq,
            )  # fmt: skip
            self._seq = positions[mine][1]
        return Learned(applied, duplicates, refused, found, ahead)

    async def _existing(self, uuids: Sequence[str], *, refused: bool = False) -> set[str]:
        """Which of ``uuids`` are stored (with ``refused``: or were refused before)."""
        out: set[str] = set()
        for start in range(0, len(uuids), _CHUNK):
            part = uuids[start : start + _CHUNK]
            marks = ",".join("?" * len(part))
            sql = f"SELECT uuid FROM redemptions WHERE uuid IN ({marks})"  # noqa: S608 (marks only)
            if refused:
                sql += f" UNION ALL SELECT uuid FROM refused_records WHERE uuid IN ({marks})"  # noqa: S608
            rows = await self._db.execute_fetchall(sql, [*part, *part] if refused else part)
            out.update(str(row[0]) for row in rows)
        return out

    async def _collision(self, record: Redemption) -> str:
        """Why a verified record could not be stored: what of its origin's it collides with."""
        checks = (
            ("seq_taken", "SELECT 1 FROM redemptions WHERE origin = ? AND epoch = ? AND seq = ?",
             (record.origin, record.epoch, record.seq)),
            ("already_voided", "SELECT 1 FROM redemptions WHERE voids = ? AND origin = ?",
             (record.voids, record.origin)),
        )  # fmt: skip
        for name, sql, params in checks:
            if await _scalar(self._db, sql, params):
                return name
        return "slot_taken"

    async def _advance(
        self, tx: Transaction, applied: Sequence[Redemption], now: float
    ) -> dict[tuple[str, str], list[int]]:
        """Move each touched origin log's run and highest-held marks in ``tx``; the new marks.

        The caller sets them in memory once ``tx`` has committed.
        """
        touched: dict[tuple[str, str], set[int]] = {}
        for record in applied:
            touched.setdefault((record.origin, record.epoch), set()).add(record.seq)
        rows = []
        positions: dict[tuple[str, str], list[int]] = {}
        for log_id, seqs in touched.items():
            run, held = self._logs.get(log_id, [0, 0])
            held = max(held, *seqs)
            while run < held:
                if run + 1 not in seqs and not await _scalar(
                    self._db,
                    "SELECT 1 FROM redemptions WHERE origin = ?1 AND epoch = ?2 AND seq = ?3"
                    " UNION ALL SELECT 1 FROM refused_records WHERE origin = ?1 AND epoch = ?2 AND seq = ?3",
                    (*log_id, run + 1),
                ):
                    break
                run += 1
            positions[log_id] = [run, held]
            rows.append((*log_id, run, held, now))
        await self._db.executemany(
            "INSERT OR REPLACE INTO cursors (origin, epoch, seq, held, updated_at) VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        return positions

    async def _recheck_conflicts(self, tx: Transaction, tickets: set[str], now: float) -> int:
        """Recompute the conflicts of ``tickets`` in ``tx``; how many are new."""
        found = 0
        ids = sorted(tickets)
        for start in range(0, len(ids), _CHUNK):
            part = ids[start : start + _CHUNK]
            marks = ",".join("?" * len(part))
            candidates = await self._db.execute_fetchall(
                f"SELECT ticket_id FROM redemptions WHERE ticket_id IN ({marks}) AND kind = 'entry'"  # noqa: S608
                " GROUP BY ticket_id HAVING COUNT(*) > 1",
                part,
            )
            for (ticket_id,) in candidates:
                rows = await self._db.execute_fetchall(
                    "SELECT uuid, kind, hlc, origin, forced, voids FROM redemptions WHERE ticket_id = ?",
                    (ticket_id,),
                )
                moves = [Move(str(u), str(k), int(h), str(o), bool(f), v) for u, k, h, o, f, v in rows]
                pairs = losers(moves, self.entries_allowed(str(ticket_id)))
                old = {
                    str(loser): str(winner)
                    for loser, winner in await self._db.execute_fetchall(
                        "SELECT loser, winner FROM conflicts WHERE ticket_id = ?", (ticket_id,)
                    )
                }
                gone = [(ticket_id, loser) for loser in old if loser not in pairs]
                await self._db.executemany("DELETE FROM conflicts WHERE ticket_id = ? AND loser = ?", gone)
                await self._db.executemany(
                    "INSERT INTO conflicts (ticket_id, loser, winner, detected_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (ticket_id, loser) DO UPDATE SET winner = excluded.winner",
                    [(ticket_id, lose, win, now) for lose, win in pairs.items() if old.get(lose) != win],
                )
                found += sum(1 for loser in pairs if loser not in old)
        return found

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
            found = await self._recheck_conflicts(tx, {str(row[0]) for row in rows}, now)
            await tx.count(["conflicts"] * found)
        return found

    async def conflict_count(self) -> int:
        """How many double entries are recorded."""
        async with self._lock:
            return int(await _scalar(self._db, "SELECT COUNT(*) FROM conflicts") or 0)

    async def conflicts(self) -> list[Conflict]:
        """Every double entry recorded, oldest loser first."""
        async with self._lock:
            return await _read_conflicts(self._db)

    async def bump(self, names: Iterable[str]) -> None:
        """Add one to counters outside a scan (a refused manifest, an unreadable image)."""
        async with self.transaction() as tx:
            await tx.count(names)


class Transaction:
    """Writes outside the scan path (manifest activations, counters) in one transaction."""

    def __init__(self, ledger: Ledger) -> None:
        self._db = ledger._db

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> aiosqlite.Cursor:
        """Run one statement inside the transaction."""
        return await self._db.execute(sql, params)

    async def count(self, names: Iterable[str]) -> None:
        """Add one to each named counter."""
        await self._db.executemany(
            "INSERT INTO counters (name, value) VALUES (?, 1)"
            " ON CONFLICT (name) DO UPDATE SET value = value + 1",
            [(name,) for name in names],
        )

    async def set_meta(self, values: Iterable[tuple[str, str]]) -> None:
        """Set ``meta`` keys."""
        await self._db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", values)


async def _scalar(db: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()) -> Any:
    rows = list(await db.execute_fetchall(sql, params))
    return rows[0][0] if rows else None


def _statements(script: str) -> list[str]:
    """Split a migration into whole statements (a trigger's body holds semicolons)."""
    out: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            out.append(pending.strip())
            pending = ""
    if pending.strip():
        out.append(pending.strip())
    return out


def _open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to a ledger file whose daemon may be stopped, dead or running."""
    if not path.is_file():
        raise LedgerError(f"no ledger at {path}")
    # A cleanly closed ledger has no WAL: open it immutable, which needs no -shm file (a
    # reader outside the gate's group may not create one). After a crash, or while the
    # gate runs, the WAL holds committed scans, so it must be read: read-only then.
    wal = Path(f"{path}-wal")
    flags = "mode=ro" if wal.exists() else "immutable=1"
    try:
        return sqlite3.connect(f"file:{urllib.parse.quote(str(path.absolute()))}?{flags}", uri=True)
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot read ledger {path}: {exc}") from None


def read_counters(path: Path) -> dict[str, int]:
    """The counters of a ledger file, read without the daemon (it may be stopped or dead)."""
    db = _open_read_only(path)
    try:
        rows = db.execute("SELECT name, value FROM counters ORDER BY name").fetchall()
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot read ledger {path}: {exc}") from None
    finally:
        db.close()
    return {str(name): int(value) for name, value in rows}


def _row(record: Redemption) -> tuple[Any, ...]:
    return (
        record.uuid, record.ticket_id, record.kind, record.slot, record.origin, record.epoch, record.seq,
        record.hlc, record.wall, record.operator, record.mode, int(record.forced), record.voids,
    )  # fmt: skip


def _redemption(row: Sequence[Any]) -> Redemption:
    return Redemption(
        uuid=str(row[0]),
        ticket_id=str(row[1]),
        kind=str(row[2]),
        slot=None if row[3] is None else int(row[3]),
        origin=str(row[4]),
        epoch=str(row[5]),
        seq=int(row[6]),
        hlc=int(row[7]),
        wall=float(row[8]),
        operator=None if row[9] is None else str(row[9]),
        mode=str(row[10]),
        forced=bool(row[11]),
        voids=None if row[12] is None else str(row[12]),
    )


_WINNER = ", ".join("w." + c for c in _COLUMNS.split(", "))
_LOSER = ", ".join("l." + c for c in _COLUMNS.split(", "))
_CONFLICTS = (
    f"SELECT c.ticket_id, c.detected_at, {_WINNER}, {_LOSER}"  # noqa: S608 (constants only)
    " FROM conflicts c JOIN redemptions w ON w.uuid = c.winner JOIN redemptions l ON l.uuid = c.loser"
    " ORDER BY l.hlc, l.uuid"
)


async def _read_conflicts(db: aiosqlite.Connection) -> list[Conflict]:
    rows = await db.execute_fetchall(_CONFLICTS)
    return [_conflict(row) for row in rows]


def _conflict(row: Sequence[Any]) -> Conflict:
    width = len(_COLUMNS.split(", "))
    return Conflict(
        ticket_id=str(row[0]),
        winner=_redemption(row[2 : 2 + width]),
        loser=_redemption(row[2 + width : 2 + 2 * width]),
        detected_at=float(row[1]),
    )


def read_conflicts(path: Path) -> list[Conflict]:
    """The double entries recorded in a ledger file, read without the daemon."""
    db = _open_read_only(path)
    try:
        return [_conflict(row) for row in db.execute(_CONFLICTS).fetchall()]
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot read ledger {path}: {exc}") from None
    finally:
        db.close()
