"""The central's SQLite file: check-ins, conflicts, validations, heartbeats and manifests built.

One aiosqlite connection, WAL and ``synchronous = FULL``; every write is one
``BEGIN IMMEDIATE`` transaction under one asyncio lock, so a push, a validation or a
heartbeat is all stored or not at all. ``PRAGMA user_version`` is the schema version; a
newer file than this code knows is refused.

The tables are in ``gate_daemon.store.central.schema``; what a pushed batch collides with is read
by ``gate_daemon.store.central.checkins``, and conflicts are judged by ``gate_daemon.store.conflicts``,
as at the gates.

``read_report`` reads the file without the server (``gate-central report``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from gate_daemon.core.conflicts import ticket_facts
from gate_daemon.core.decision import Decision, LedgerFacts
from gate_daemon.core.evidence import EvidenceScan
from gate_daemon.core.hlc import HybridClock
from gate_daemon.core.records import Redemption
from gate_daemon.errors import GateError
from gate_daemon.store.central.checkins import Held, held_for, values
from gate_daemon.store.central.schema import COLUMNS, MIGRATIONS, SCHEMA_VERSION
from gate_daemon.store.conflicts import EntriesAllowed, judge_again, ticket_moves
from gate_daemon.store.migrations import NotWal, SchemaTooNew, durable, migrate
from gate_daemon.store.redemptions import redemption
from gate_daemon.store.transactions import immediate, scalar


class StoreError(GateError):
    """The central's database cannot be used."""


class UuidReused(GateError):
    """A validation's uuid was already used for another request."""


@dataclass(frozen=True, slots=True)
class PushResult:
    """What became of one pushed record."""

    uuid: str | None
    status: str
    reason: str | None = None
    detail: str | None = None
    winner: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The result as answered (absent details left out)."""
        out: dict[str, Any] = {"uuid": self.uuid, "status": self.status}
        for name in ("reason", "detail", "winner"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


@dataclass(frozen=True, slots=True)
class ManifestRow:
    """A manifest version the central built."""

    version: int
    event_id: str
    issued_at: int
    expires_at: int
    body_sha256: str
    tickets: int
    file: str


class CentralStore:
    """The central's database."""

    def __init__(self, db: aiosqlite.Connection, path: Path, clock: HybridClock) -> None:
        self._db = db
        self.path = path
        self._lock = asyncio.Lock()
        #: Stamps the check-ins ``/v1/validate`` makes until their signed record arrives.
        self.clock = clock

    @classmethod
    async def open(cls, path: Path) -> CentralStore:
        """Open (or create) the database at ``path``; ``StoreError`` naming the file otherwise."""
        try:
            db = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from None
        try:
            await durable(db)
            await migrate(db, MIGRATIONS)
            last = int(await scalar(db, "SELECT COALESCE(MAX(hlc), 0) FROM checkins") or 0)
        except NotWal as exc:
            await db.close()
            raise StoreError(f"{path}: cannot use WAL mode (got {exc.mode})") from None
        except SchemaTooNew as exc:
            await db.close()
            raise StoreError(
                f"{path} has schema version {exc.version}, newer than this gate-central understands "
                f"({exc.known})"
            ) from None
        except sqlite3.DatabaseError as exc:
            await db.close()
            raise StoreError(f"{path} is not a usable central database: {exc}") from None
        except BaseException:
            await db.close()
            raise
        return cls(db, path, HybridClock(last))

    async def aclose(self) -> None:
        """Close the database."""
        await self._db.close()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock, immediate(self._db):
            yield self._db

    def transaction(self) -> contextlib.AbstractAsyncContextManager[aiosqlite.Connection]:
        """One write transaction under the store's lock, for the modules of its other tables."""
        return self._transaction()

    # ------------------------------------------------------------------ check-ins

    async def cursor(self) -> int:
        """The latest pull cursor given (0 before any)."""
        async with self._lock:  # committed state only: see ``pull``
            return int(await scalar(self._db, "SELECT COALESCE(MAX(cursor), 0) FROM checkins") or 0)

    async def push(
        self,
        records: Sequence[tuple[Redemption, str]],
        entries_allowed: EntriesAllowed,
        now: float,
    ) -> tuple[list[PushResult], int]:
        """Store verified records in one transaction; a result for each, and the cursor after.

        What the batch collides with is read in a few queries up front, and the records are
        judged in order against it and against each other, so a batch costs a handful of
        trips to the database thread, not several per record.
        """
        now_ms = int(now * 1000)
        async with self._transaction() as db:
            cursor = int(await scalar(db, "SELECT COALESCE(MAX(cursor), 0) FROM checkins") or 0)
            held = await held_for(db, records)
            results: list[PushResult] = []
            inserts: list[tuple[Any, ...]] = []
            completions: list[tuple[Any, ...]] = []
            touched: set[str] = set()
            for record, signature in records:
                result = _judge(record, held)
                if result is None:
                    cursor += 1
                    stored = values(record, signature, cursor)
                    if record.uuid in held.unsigned:
                        completions.append((*stored[1:], record.uuid))
                        result = PushResult(record.uuid, "duplicate")
                    else:
                        inserts.append((*stored, now))
                        result = PushResult(record.uuid, "applied")
                    held.taken(record)
                    touched.add(record.ticket_id)
                    self.clock.observe(record.hlc, now_ms)
                results.append(result)
            await db.executemany(
                f"INSERT INTO checkins ({COLUMNS}, received_at)"  # noqa: S608 (constant columns)
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                inserts,
            )
            # The signed records of check-ins /v1/validate made: they complete them, now servable.
            await db.executemany(
                "UPDATE checkins SET ticket_id = ?, kind = ?, slot = ?, origin = ?, epoch = ?, seq = ?,"
                " hlc = ?, wall = ?, operator = ?, mode = ?, forced = ?, voids = ?, sig = ?, cursor = ?"
                " WHERE uuid = ?",
                completions,
            )
            standing = (await judge_again(db, "checkins", touched, entries_allowed, now)).standing
        out = []
        for (record, _), result in zip(records, results, strict=True):
            winner = standing.get(record.uuid)
            if result.status == "applied" and winner is not None:
                result = PushResult(record.uuid, "conflict", "double_entry", winner=winner)
            out.append(result)
        return out, cursor

    async def pull(self, after: int, limit: int) -> tuple[list[dict[str, Any]], int, bool]:
        """Servable records after cursor ``after``: wire forms, the last cursor, whether more remain.

        Under the store's lock: the one connection would otherwise read the rows of a push
        still in its transaction, and a gate would move its cursor past numbers that a
        rollback (or a crash before COMMIT) hands to other records later, never pulled.
        """
        async with self._lock:
            rows = await self._db.execute_fetchall(
                f"SELECT {COLUMNS} FROM checkins WHERE cursor > ? ORDER BY cursor LIMIT ?",  # noqa: S608
                (after, limit + 1),
            )
        found = list(rows)
        page = found[:limit]
        records = [redemption(row).wire(str(row[13])) for row in page]
        return records, int(page[-1][14]) if page else after, len(found) > limit

    async def checkins_of(self, ticket_id: str, limit: int = 5) -> list[dict[str, Any]]:
        """A ticket's stored check-ins, newest first (by hybrid clock)."""
        async with self._lock:  # committed state only: see ``pull``
            rows = await self._db.execute_fetchall(
                "SELECT kind, origin, wall, operator FROM checkins WHERE ticket_id = ?"
                " ORDER BY hlc DESC, uuid DESC LIMIT ?",
                (ticket_id, limit),
            )
        # ``operator`` when the record names one (a pretix device, for what the bridge learned).
        return [
            {"kind": str(k), "gate": str(o), "at": float(w), **({"operator": str(op)} if op else {})}
            for k, o, w, op in rows
        ]

    # ------------------------------------------------------------------ validations

    async def validate(
        self,
        uuid: str,
        gate: str,
        fingerprint: str,
        judge: Callable[[LedgerFacts], Decision] | Decision,
        ticket_id: str | None,
        kind: str,
        now: float,
    ) -> dict[str, Any]:
        """Decide a validation once, storing an allowed check-in with its answer; the answer.

        ``judge`` is the decision already made (no ticket found) or what makes it from the
        ticket's facts, read in the same transaction. ``UuidReused`` when ``uuid`` was
        used for another request (or by a pushed record).
        """
        async with self._transaction() as db:
            rows = await db.execute_fetchall(
                "SELECT gate, fingerprint, decision FROM validations WHERE uuid = ?", (uuid,)
            )
            held = next(iter(rows), None)
            if held is not None:
                if (str(held[0]), str(held[1])) != (gate, fingerprint):
                    raise UuidReused(f"uuid {uuid} was used for another validation")
                stored: dict[str, Any] = json.loads(held[2])
                return stored
            if await scalar(db, "SELECT 1 FROM checkins WHERE uuid = ?", (uuid,)):
                raise UuidReused(f"uuid {uuid} is already a stored check-in's")
            if isinstance(judge, Decision):
                decision = judge
            else:
                assert ticket_id is not None
                decision = judge(ticket_facts(await ticket_moves(db, "checkins", ticket_id)))
            answer = decision.as_dict()
            if decision.outcome.value == "allow" and ticket_id is not None:
                hlc = self.clock.tick(int(now * 1000))
                await db.execute(
                    "INSERT INTO checkins (uuid, ticket_id, kind, origin, hlc, wall, mode, received_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, 'online', ?)",
                    (uuid, ticket_id, kind, gate, hlc, now, now),
                )
            await db.execute(
                "INSERT INTO validations (uuid, gate, fingerprint, decision, decided_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (uuid, gate, fingerprint, json.dumps(answer), now),
            )
        return answer

    async def release(self, uuid: str, gate: str, entries_allowed: EntriesAllowed, now: float) -> bool:
        """Take back the check-in a validation made, when its gate did not admit after all.

        Only an unsigned check-in (no record of the gate's has completed it) made for
        ``gate`` is removed, with the ticket's conflicts judged again; whether one was.
        """
        async with self._transaction() as db:
            rows = await db.execute_fetchall(
                "SELECT ticket_id, origin, sig FROM checkins WHERE uuid = ?", (uuid,)
            )
            held = next(iter(rows), None)
            if held is None or held[2] is not None or str(held[1]) != gate:
                return False
            ticket_id = str(held[0])
            await db.execute("DELETE FROM checkins WHERE uuid = ?", (uuid,))
            await db.execute("DELETE FROM conflicts WHERE ticket_id = ?", (ticket_id,))
            await judge_again(db, "checkins", {ticket_id}, entries_allowed, now)
        return True

    # ------------------------------------------------------------------ heartbeats

    async def heartbeat(
        self, gate: str, sent_at: float, counters: Mapping[str, int], status: Mapping[str, Any], now: float
    ) -> None:
        """Keep a gate's latest heartbeat, and the beat in the history (``beats``)."""
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO gates (gate_id, last_seen, beats, sent_at, counters, status)"
                " VALUES (?, ?, 1, ?, ?, ?) ON CONFLICT (gate_id) DO UPDATE SET"
                " last_seen = excluded.last_seen, beats = beats + 1, sent_at = excluded.sent_at,"
                " counters = excluded.counters, status = excluded.status",
                (gate, now, sent_at, json.dumps(dict(counters)), json.dumps(dict(status))),
            )
            await db.execute(
                "INSERT INTO beats (gate, at, sent_at, mode, scans, offline, pending)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                beat_row(gate, now, sent_at, counters, status),
            )

    # ------------------------------------------------------------------ evidence

    async def store_evidence(self, gate: str, scans: Sequence[EvidenceScan], now: float) -> tuple[int, int]:
        """Keep a gate's uploaded evidence rows, each once; how many were new and how many held already.

        Rows are keyed by (``gate``, uuid): only the same gate's row with the uuid makes a
        duplicate, so another gate cannot take a uuid first and have this gate's rows dropped.
        """
        async with self._transaction() as db:
            uuids = [s.uuid for s in scans]
            held = {
                str(row[0])
                for row in await db.execute_fetchall(
                    f"SELECT uuid FROM evidence WHERE gate = ? AND uuid IN ({', '.join('?' * len(uuids))})",  # noqa: S608
                    [gate, *uuids],
                )
            }
            fresh = {s.uuid: s for s in scans if s.uuid not in held}
            await db.executemany(
                "INSERT INTO evidence (uuid, gate, hlc, wall, device, operator, ticket_id, kind, outcome,"
                " reason, resolution, mode, manifest_version, received_at, overrides)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (s.uuid, gate, s.hlc, s.wall, s.device, s.operator, s.ticket_id, s.kind, s.outcome,
                     s.reason, s.resolution, s.mode, s.manifest_version, now,
                     None if s.overrides is None else json.dumps(s.overrides))
                    for s in fresh.values()
                ],
            )  # fmt: skip
        return len(fresh), len(scans) - len(fresh)

    async def heard(self) -> list[dict[str, Any]]:
        """Every gate's last heartbeat, by gate id: gate, last_seen, beats, sent_at, counters, status."""
        async with self._lock:
            rows = await self._db.execute_fetchall(
                "SELECT gate_id, last_seen, beats, sent_at, counters, status FROM gates ORDER BY gate_id"
            )
        return [
            {
                "gate": g,
                "last_seen": s,
                "beats": b,
                "sent_at": a,
                "counters": json.loads(c),
                "status": json.loads(t),
            }
            for g, s, b, a, c, t in rows
        ]

    # ------------------------------------------------------------------ manifests

    async def manifests(self) -> list[ManifestRow]:
        """The versions built, oldest first."""
        rows = await self._db.execute_fetchall(
            "SELECT version, event_id, issued_at, expires_at, body_sha256, tickets, file FROM manifests"
            " ORDER BY version"
        )
        return [
            ManifestRow(int(v), str(e), int(i), int(x), str(s), int(t), str(f))
            for v, e, i, x, s, t, f in rows
        ]

    async def add_manifest(self, row: ManifestRow, now: float) -> None:
        """Record a version built (its file already written)."""
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO manifests (version, event_id, issued_at, expires_at, body_sha256, tickets, file,"
                " built_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (row.version, row.event_id, row.issued_at, row.expires_at, row.body_sha256, row.tickets,
                 row.file, now),
            )  # fmt: skip


def beat_row(
    gate: str, now: float, sent_at: float, counters: Mapping[str, int], status: Mapping[str, Any]
) -> tuple[Any, ...]:
    """A heartbeat's row in ``beats``: the route the gate decided by (``unknown`` if it did not say)."""
    route = status.get("route")
    if route not in ("online", "offline"):
        route = "offline" if status.get("decision") == "offline" else "unknown"
    pending = status.get("pending")
    if isinstance(pending, bool) or not isinstance(pending, int):
        pending = None
    return (gate, now, sent_at, route, counters.get("scans", 0), counters.get("offline_scans", 0), pending)


def _judge(record: Redemption, held: Held) -> PushResult | None:
    """The answer for a record that cannot be stored; None when it is stored."""
    if record.uuid in held.signed:
        return PushResult(record.uuid, "duplicate")
    made = held.unsigned.get(record.uuid)
    if made is not None and made != (record.ticket_id, record.kind, record.origin):
        detail = "uuid: already used by an online validation of another ticket, kind or gate"
        return PushResult(record.uuid, "rejected", "bad_record", detail)
    if (record.origin, record.epoch, record.seq) in held.seqs:
        detail = f"gate {record.origin!r} seq {record.seq} is held by another record"
        return PushResult(record.uuid, "rejected", "seq_taken", detail)
    if record.voids is not None and (record.voids, record.origin) in held.voids:
        return PushResult(
            record.uuid, "rejected", "already_voided", f"gate {record.origin!r} already voided it"
        )
    return None


@contextlib.contextmanager
def reading(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the central's database; ``StoreError`` naming the file otherwise."""
    if not path.is_file():
        raise StoreError(f"{path}: no such database (has gate-central run with this state_dir?)")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from None
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version != SCHEMA_VERSION:
            raise StoreError(f"{path} has schema version {version}, this gate-central reads {SCHEMA_VERSION}")
        yield db
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a central database: {exc}") from None
    finally:
        db.close()


def read_report(path: Path) -> dict[str, Any]:
    """What the central holds, read from its database file (read-only; the server may run).

    ``StoreError`` when the file is missing or not a central database.
    """
    with reading(path) as db:
        total, signed = db.execute("SELECT COUNT(*), COUNT(sig) FROM checkins").fetchone()
        kinds = dict(db.execute("SELECT kind, COUNT(*) FROM checkins GROUP BY kind").fetchall())
        cursor = db.execute("SELECT COALESCE(MAX(cursor), 0) FROM checkins").fetchone()[0]
        conflicts = [
            {"ticket_id": t, "loser": lo, "winner": w, "detected_at": d}
            for t, lo, w, d in db.execute(
                "SELECT ticket_id, loser, winner, detected_at FROM conflicts ORDER BY detected_at, ticket_id"
            )
        ]
        gates = [
            {"gate": g, "last_seen": s, "beats": b, "sent_at": a, "counters": json.loads(c)}
            for g, s, b, a, c in db.execute(
                "SELECT gate_id, last_seen, beats, sent_at, counters FROM gates ORDER BY gate_id"
            )
        ]
        latest = db.execute(
            "SELECT version, event_id, issued_at, expires_at, tickets FROM manifests"
            " ORDER BY version DESC LIMIT 1"
        ).fetchone()
        validations = db.execute("SELECT COUNT(*) FROM validations").fetchone()[0]
    manifest = None
    if latest is not None:
        keys = ("version", "event_id", "issued_at", "expires_at", "tickets")
        manifest = dict(zip(keys, latest, strict=True))
    return {
        "checkins": int(total),
        "signed": int(signed),
        "awaiting_signature": int(total) - int(signed),
        "by_kind": {str(k): int(v) for k, v in kinds.items()},
        "cursor": int(cursor),
        "validations": int(validations),
        "conflicts": conflicts,
        "gates": gates,
        "manifest": manifest,
    }


def read_checkins(path: Path) -> dict[str, tuple[str, str, str, int, float]]:
    """Every check-in the central holds: uuid -> (ticket, kind, origin, hlc, received_at), read-only."""
    if not path.is_file():
        raise StoreError(f"{path}: no such database (has gate-central run with this state_dir?)")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT uuid, ticket_id, kind, origin, hlc, received_at FROM checkins"
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read {path}: {exc}") from None
    return {str(u): (str(t), str(k), str(o), int(h), float(r)) for u, t, k, o, h, r in rows}
