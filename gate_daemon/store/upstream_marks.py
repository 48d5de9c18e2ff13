"""What the central server has answered for, kept in the ledger's file.

Per origin log, the sequence number up to which the central has given a final answer
(applied, duplicate, conflict or rejected) for this gate's sending: the drain continues
after it, and never sends a record twice unless an answer was lost (the central then
says ``duplicate``). Records the central rejected are kept as evidence. And the
central's own pull cursor: where the next pull of other devices' check-ins continues.
All of it lives in the ledger's file (migration 5) and changes in one transaction per
answer, so a gate killed mid-drain resumes exactly where the central last answered.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass

from gate_daemon.store.ledger import Ledger

LogId = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record the central refused for good."""

    uuid: str
    origin: str
    epoch: str
    seq: int
    reason: str
    detail: str


class UpstreamMarks:
    """The drain's positions per origin log and the central's pull cursor, durable."""

    def __init__(self, ledger: Ledger, acked: dict[LogId, int], after: int) -> None:
        self.ledger = ledger
        self._acked = acked
        self._after = after

    @classmethod
    async def load(cls, ledger: Ledger) -> UpstreamMarks:
        """Read the marks from the ledger's file."""
        async with ledger.transaction() as tx:
            rows = await (await tx.execute("SELECT origin, epoch, seq FROM upstream_acks")).fetchall()
            after = await (await tx.execute("SELECT value FROM meta WHERE key = 'upstream_after'")).fetchone()
        acked = {(str(origin), str(epoch)): int(seq) for origin, epoch, seq in rows}
        return cls(ledger, acked, int(after[0]) if after else 0)

    @property
    def acked(self) -> Mapping[LogId, int]:
        """Per origin log, the last sequence number the central answered for."""
        return self._acked

    @property
    def after(self) -> int:
        """The central's pull cursor reached."""
        return self._after

    def pending(self, origins: Container[str] | None = None) -> int:
        """Records held (in unbroken runs) that the central has not answered for yet.

        With ``origins``, only those origins' logs (the drain sends no others: a gate dropped
        from the roster can no longer be verified).
        """
        return sum(
            max(0, run - self._acked.get(log_id, 0))
            for log_id, run in self.ledger.known().items()
            if origins is None or log_id[0] in origins
        )

    async def acknowledge(
        self,
        positions: Mapping[LogId, int],
        rejections: Iterable[Rejection],
        counters: Iterable[str],
        now: float,
    ) -> None:
        """Move the logs' positions, keep the rejections and count: one transaction."""
        moved = {log_id: seq for log_id, seq in positions.items() if seq > self._acked.get(log_id, 0)}
        async with self.ledger.transaction() as tx:
            for (origin, epoch), seq in moved.items():
                await tx.execute(
                    "INSERT INTO upstream_acks (origin, epoch, seq, updated_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (origin, epoch) DO UPDATE SET seq = excluded.seq,"
                    " updated_at = excluded.updated_at",
                    (origin, epoch, seq, now),
                )
            for r in rejections:
                await tx.execute(
                    "INSERT OR IGNORE INTO upstream_rejections"
                    " (uuid, origin, epoch, seq, reason, detail, rejected_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (r.uuid, r.origin, r.epoch, r.seq, r.reason, r.detail[:500], now),
                )
            await tx.count(counters)
        self._acked.update(moved)

    async def reached(self, cursor: int) -> None:
        """Remember the central's pull cursor (only forwards)."""
        if cursor <= self._after:
            return
        async with self.ledger.transaction() as tx:
            await tx.set_meta([("upstream_after", str(cursor))])
        self._after = cursor
