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
import sqlite3
import time
import urllib.parse
import uuid as uuidlib
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from gate_daemon.core.decision import LedgerFacts, ScanKind
from gate_daemon.core.hlc import HybridClock
from gate_daemon.errors import GateError
from gate_daemon.store.redeemed import RedeemedFilter
from gate_daemon.store.schema import MIGRATIONS


class LedgerError(GateError):
    """The ledger file cannot be used (unreadable, corrupt, another gate's, too new)."""


class PolicyConflict(Exception):
    """A redemption's slot is already taken: the facts it was decided on are stale."""


@dataclass(frozen=True, slots=True)
class Redemption:
    """An entry or exit that happened."""

    uuid: str
    ticket_id: str
    kind: ScanKind
    slot: int | None
    origin: str
    epoch: str
    hlc: int
    wall: float
    operator: str | None
    mode: str
    forced: bool = False


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
    " outcome, reason, resolution, mode, manifest_version, decision, redeem, slot, origin, epoch,"
    " forced, counters) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


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
        last = await _scalar(
            db,
            "SELECT MAX(h) FROM (SELECT MAX(hlc) AS h FROM redemptions UNION ALL SELECT MAX(hlc) FROM scans)",
        )
        ledger.clock = HybridClock(int(last or 0))
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
            with contextlib.suppress(sqlite3.Error):  # the WAL is replayed at the next open
                await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            await self._db.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One write transaction; committed (durably) when the block ends without error."""
        async with self._lock:
            begin = asyncio.ensure_future(self._db.execute("BEGIN IMMEDIATE"))
            try:
                await asyncio.shield(begin)
                yield Transaction(self)
                await asyncio.shield(self._db.execute("COMMIT"))
            except BaseException:
                # A BEGIN whose waiter was cancelled still runs in the database thread, and
                # a transaction left open would swallow every later scan's commit: wait for
                # it (through any further cancellation), then close whatever is open,
                # before the lock is let go.
                cancelled = await _finish(begin)
                if self._db.in_transaction:
                    cancelled |= await _finish(asyncio.ensure_future(self._db.execute("ROLLBACK")))
                if cancelled:
                    raise asyncio.CancelledError from None
                raise

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
            "SELECT uuid, kind, wall, origin, voids FROM redemptions WHERE ticket_id = ? ORDER BY hlc",
            (ticket_id,),
        )
        voided = {str(row[4]) for row in rows if row[1] == "void"}
        entries = exits = entry_slots = exit_slots = 0
        last_at: float | None = None
        last_gate: str | None = None
        for uuid, kind, wall, origin, _voids in rows:
            if kind == "entry":
                entry_slots += 1
                if uuid not in voided:
                    entries += 1
                    last_at, last_gate = float(wall), str(origin)
            elif kind == "exit":
                exit_slots += 1
                if uuid not in voided:
                    exits += 1
        return LedgerFacts(
            entries=entries,
            exits=exits,
            inside=entries > exits,
            last_entry_at=last_at,
            last_entry_gate=last_gate,
            entry_slots=entry_slots,
            exit_slots=exit_slots,
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
                kind=scan.kind,
                slot=taken + 1,
                origin=self.gate_id,
                epoch=self.epoch,
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
            if any(key in str(exc) for key in ("redemptions.ticket_id", "redemptions.uuid", "scans.uuid")):
                raise PolicyConflict(str(exc)) from None
            raise
        if record is not None:
            self._redeemed.add(record.ticket_id)
        return record

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
                int(record.forced) if record else 0,
                json.dumps(list(counters)),
            ))  # fmt: skip
        finally:
            # The statement ran in autocommit, so no transaction may be open after it. If
            # one is (someone's BEGIN slipped in), the scan is not durable: undo, refuse.
            if self._db.in_transaction:
                cancelled = await _finish(asyncio.ensure_future(self._db.execute("ROLLBACK")))
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

    async def void(self, scan_id: str, *, wall: float, operator: str | None, counters: Sequence[str]) -> bool:
        """Take back this gate's redemption made by scan ``scan_id``: the person never passed.

        Appends a ``void`` record naming the redemption (it replicates like any other),
        marks the scan's evidence row ``not_passed`` and counts ``counters``, in one
        transaction. False, with nothing written, when the scan made no redemption here or
        it is already voided. The transaction holds ``serial``: no scan decides in between.
        """
        async with self.transaction() as tx:
            hlc = self.clock.tick(int(wall * 1000))
            cursor = await tx.execute(
                    "INSERT INTO redemptions (uuid, ticket_id, kind, slot, origin, epoch, seq, hlc, wall,"
                " operator, mode, forced, voids)"
                " SELECT ?1, ticket_id, 'void', NULL, ?2, ?3,"
                "  (SELECT COALESCE(MAX(seq), 0) + 1 FROM redemptions WHERE origin = ?2 AND epoch = ?3),"
                "  ?4, ?5, ?6, mode, 0, uuid"
                " FROM redemptions WHERE uuid = ?7 AND origin = ?2 AND kind != 'void'"
                " AND NOT EXISTS (SELECT 1 FROM redemptions WHERE voids = ?7)",
                (new_scan_id(), self.gate_id, self.epoch, hlc, wall, operator, scan_id),
            )  # fmt: skip
            if cursor.rowcount != 1:
                return False
            await tx.execute("UPDATE scans SET resolution = 'not_passed' WHERE uuid = ?", (scan_id,))
            await tx.count(counters)
        return True

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


async def _finish(step: asyncio.Future[Any]) -> bool:
    """Wait until a queued database step is done, whatever cancellations arrive meanwhile.

    Its outcome is ignored (the caller is already failing). Returns whether a
    cancellation arrived while waiting, for the caller to raise once it has cleaned up.
    """
    cancelled = False
    while not step.done():
        try:
            await asyncio.shield(step)
        except asyncio.CancelledError:
            cancelled = cancelled or not step.done()
        except BaseException:
            break
    if not step.cancelled():
        step.exception()  # retrieved: never "exception was never retrieved"
    return cancelled


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


def read_counters(path: Path) -> dict[str, int]:
    """The counters of a ledger file, read without the daemon (it may be stopped or dead)."""
    if not path.is_file():
        raise LedgerError(f"no ledger at {path}")
    # A cleanly closed ledger has no WAL: open it immutable, which needs no -shm file (a
    # reader outside the gate's group may not create one). After a crash the WAL holds
    # committed scans, so it must be read: read-only then.
    wal = Path(f"{path}-wal")
    flags = "mode=ro" if wal.exists() else "immutable=1"
    try:
        db = sqlite3.connect(f"file:{urllib.parse.quote(str(path.absolute()))}?{flags}", uri=True)
        try:
            rows = db.execute("SELECT name, value FROM counters ORDER BY name").fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot read ledger {path}: {exc}") from None
    return {str(name): int(value) for name, value in rows}
