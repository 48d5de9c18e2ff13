"""Records learned from elsewhere (peers, the central), stored in a ledger's file.

In transactions of ``LEARN_BATCH`` records, each holding the records, each origin log's
new position, the tickets' conflicts and the counters, and each letting a waiting scan in
before the next: one learner at a time, so a scan waits for one batch at most. Records
already held (by uuid) are duplicates, and so are this gate's own; a record colliding
with a different one of its origin (the same slot, sequence number or void) is refused,
kept as evidence and reported, never overwritten.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import aiosqlite

from gate_daemon.core.counters import CONFLICTS, Family, labelled
from gate_daemon.core.hlc import MAX_AHEAD_MS, HybridClock, Stamp
from gate_daemon.core.records import Redemption
from gate_daemon.store.conflicts import EntriesAllowed, chunks, judge_again
from gate_daemon.store.logs import LogId, OriginLogs
from gate_daemon.store.occupancy import Occupancy
from gate_daemon.store.redeemed import RedeemedFilter
from gate_daemon.store.redemptions import INSERT_LEARNED, row
from gate_daemon.store.transactions import Transaction, scalar

log = logging.getLogger(__name__)

#: Records stored per transaction (a scan waits for one such batch at most).
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


class Learner:
    """Stores verified records from elsewhere in one ledger's file, a batch per transaction.

    Wiring: the ledger makes one, with its connection, its write transaction (which holds
    the ledger's lock), and the parts of its state learning moves: the origin logs, the
    filter of redeemed tickets, the hybrid clock, the entry rule conflicts are judged by,
    and the counts of who is inside.
    """

    def __init__(
        self,
        db: aiosqlite.Connection,
        transaction: Callable[[], AbstractAsyncContextManager[Transaction]],
        *,
        logs: OriginLogs,
        redeemed: RedeemedFilter,
        clock: HybridClock,
        entries_allowed: EntriesAllowed,
        occupancy: Occupancy,
    ) -> None:
        self._db = db
        self._transaction = transaction
        self._logs = logs
        self._redeemed = redeemed
        self._clock = clock
        self._entries_allowed = entries_allowed
        #: Held from a call's first batch to its last: one learner at a time.
        self._learning = asyncio.Lock()
        #: The ledger's counts of who is inside, kept as records are learned.
        self._occupancy = occupancy

    async def learn(self, records: Sequence[tuple[Redemption, str]], *, now: float) -> Learned:
        """Store records already verified against their origin's key, batch by batch."""
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
        batch: dict[str, tuple[Redemption, str]] = {}
        for record, signature in records:
            # This gate's own records come back only if its file is behind what it once
            # wrote (restored from an older copy): they are learned like any others, and
            # its numbering moves past them.
            if (record.origin, record.epoch) != self._logs.mine or record.seq > self._logs.own:
                batch.setdefault(record.uuid, (record, signature))
        duplicates = len(records) - len(batch)
        if not batch:
            return Learned(duplicates=duplicates)
        now_ms = int(now * 1000)
        async with self._transaction() as tx:
            held = await self._existing(list(batch), refused=True)
            fresh = [pair for uuid, pair in batch.items() if uuid not in held]
            duplicates += len(batch) - len(fresh)
            await self._db.executemany(INSERT_LEARNED, [(*row(r), sig) for r, sig in fresh])
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
            positions = await self._advance([*applied, *(r for r, _, _ in turned)], now)
            tickets = {r.ticket_id for r in applied}
            found = (await judge_again(self._db, "redemptions", tickets, self._entries_allowed, now)).found
            ahead = 0
            for record in applied:
                if Stamp.unpack(record.hlc).millis - now_ms > MAX_AHEAD_MS:
                    ahead += 1
                self._clock.observe(record.hlc, now_ms)
            counts = [labelled(Family.PEER, "applied")] * len(applied) + [
                labelled(Family.PEER, "refused")
            ] * len(refused)
            counts += [CONFLICTS] * found + [labelled(Family.PEER, "clock_ahead")] * ahead
            await tx.count(counts)
            await self._occupancy.learned(self._db, applied)
            tallies = await self._occupancy.recount(tx.execute)
        self._occupancy.keep(tallies)  # no await since the commit: no scan saw the old counts
        # Only now: had the transaction failed, ``known`` would claim records never stored,
        # and no peer would send them again.
        own = self._logs.own
        self._logs.moved(positions)
        if self._logs.own > own:
            log.warning(
                "peers hold this gate's records up to %d, this ledger only to %d: it was restored from an "
                "older copy? its own records were learned back and numbering continues after them",
                self._logs.own, own,
            )  # fmt: skip
        return Learned(applied, duplicates, refused, found, ahead)

    async def _existing(self, uuids: Sequence[str], *, refused: bool = False) -> set[str]:
        """Which of ``uuids`` are stored (with ``refused``: or were refused before)."""
        out: set[str] = set()
        for part in chunks(uuids):
            marks = ",".join("?" * len(part))
            sql = f"SELECT uuid FROM redemptions WHERE uuid IN ({marks})"  # noqa: S608 (marks only)
            if refused:
                sql += f" UNION ALL SELECT uuid FROM refused_records WHERE uuid IN ({marks})"  # noqa: S608
            rows = await self._db.execute_fetchall(sql, [*part, *part] if refused else part)
            out.update(str(found[0]) for found in rows)
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
            if await scalar(self._db, sql, params):
                return name
        return "slot_taken"

    async def _advance(self, applied: Sequence[Redemption], now: float) -> dict[LogId, tuple[int, int]]:
        """Move each touched origin log's run and highest-held marks in the file; the new marks.

        The caller sets them in memory once the transaction has committed.
        """
        touched: dict[LogId, set[int]] = {}
        for record in applied:
            touched.setdefault((record.origin, record.epoch), set()).add(record.seq)
        rows = []
        positions: dict[LogId, tuple[int, int]] = {}
        for log_id, seqs in touched.items():
            run, held = self._logs.position(log_id)
            held = max(held, *seqs)
            while run < held:
                if run + 1 not in seqs and not await scalar(
                    self._db,
                    "SELECT 1 FROM redemptions WHERE origin = ?1 AND epoch = ?2 AND seq = ?3"
                    " UNION ALL SELECT 1 FROM refused_records WHERE origin = ?1 AND epoch = ?2 AND seq = ?3",
                    (*log_id, run + 1),
                ):
                    break
                run += 1
            positions[log_id] = (run, held)
            rows.append((*log_id, run, held, now))
        await self._db.executemany(
            "INSERT OR REPLACE INTO cursors (origin, epoch, seq, held, updated_at) VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        return positions
