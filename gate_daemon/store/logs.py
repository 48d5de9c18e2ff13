"""The origin logs a ledger holds, in memory: how far each runs, and this gate's own numbering.

Every record belongs to its origin's log, ``(origin, epoch)``, numbered from 1. Per log
the ledger knows the end of the unbroken run from 1 (where a pull continues) and the
highest number held (a push can arrive ahead of a gap). The file's ``cursors`` table is
the durable copy, read once at start: these marks move only once the transaction that
wrote them has committed, so they never claim a record the file does not hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import aiosqlite

from gate_daemon.store.transactions import scalar

#: An origin log: (origin gate, epoch).
LogId = tuple[str, str]


class OriginLogs:
    """Per origin log held, its unbroken run and highest number; and the last number this gate gave."""

    def __init__(self, mine: LogId, own: int, held: Mapping[LogId, Sequence[int]]) -> None:
        #: This gate's own log in its current epoch.
        self.mine = mine
        #: The last sequence number this gate gave a record of its own.
        self.own = own
        self._marks = {log_id: (run, high) for log_id, (run, high) in held.items()}
        self._marks[mine] = (own, own)

    @classmethod
    async def load(cls, db: aiosqlite.Connection, mine: LogId) -> OriginLogs:
        """The logs as the file holds them, with ``mine`` this gate's own."""
        held = {
            (str(origin), str(epoch)): (int(seq), int(high))
            for origin, epoch, seq, high in await db.execute_fetchall(
                "SELECT origin, epoch, seq, held FROM cursors"
            )
        }
        return cls(mine, await last_seq(db, mine), held)

    def position(self, log_id: LogId) -> tuple[int, int]:
        """(end of the unbroken run, highest held) of ``log_id``; (0, 0) for a log not held."""
        return self._marks.get(log_id, (0, 0))

    def known(self) -> dict[LogId, int]:
        """Each log held, with the end of its unbroken run from 1: where to continue."""
        return {log_id: run for log_id, (run, _high) in self._marks.items()}

    def held(self) -> dict[LogId, int]:
        """Each log held, with the highest sequence number held."""
        return {log_id: high for log_id, (_run, high) in self._marks.items()}

    def took(self, seq: int) -> None:
        """This gate committed its own record number ``seq``."""
        self.own = seq
        self._marks[self.mine] = (seq, seq)

    def moved(self, positions: Mapping[LogId, tuple[int, int]]) -> None:
        """Learned records moved these logs (committed); this gate's numbering continues after its own."""
        self._marks.update(positions)
        if self.mine in positions:
            self.own = max(self.own, positions[self.mine][1])


async def last_seq(db: aiosqlite.Connection, log_id: LogId) -> int:
    """The highest sequence number of ``log_id`` in the file (0 for none)."""
    last = await scalar(db, "SELECT MAX(seq) FROM redemptions WHERE origin = ? AND epoch = ?", log_id)
    return int(last or 0)
