"""What a pushed batch of records may collide with in the central's ``checkins``.

A push is judged record by record against what the database already holds and against
the records before it in the batch. ``held_for`` reads the first in a few queries up
front (by uuid, by origin log, by voided record), so a batch costs a handful of trips to
the database thread, not several per record; ``Held.taken`` adds each record stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from gate_daemon.core.records import Redemption
from gate_daemon.store.conflicts import chunks
from gate_daemon.store.redemptions import row


@dataclass
class Held:
    """What a push's records may collide with (filled from the database, then as the batch is stored)."""

    signed: set[str] = field(default_factory=set)
    #: uuid -> (ticket_id, kind, origin) of check-ins /v1/validate made, not yet signed.
    unsigned: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    seqs: set[tuple[str, str, int]] = field(default_factory=set)
    voids: set[tuple[str, str]] = field(default_factory=set)

    def taken(self, record: Redemption) -> None:
        """Count ``record`` as stored, for the records after it in the batch."""
        self.signed.add(record.uuid)
        self.unsigned.pop(record.uuid, None)
        self.seqs.add((record.origin, record.epoch, record.seq))
        if record.voids is not None:
            self.voids.add((record.voids, record.origin))


async def held_for(db: aiosqlite.Connection, records: Sequence[tuple[Redemption, str]]) -> Held:
    """What of the batch's uuids, sequence numbers and voids the database already holds."""
    held = Held()
    for part in chunks(sorted({r.uuid for r, _ in records})):
        marks = ",".join("?" * len(part))
        for uuid, ticket, kind, origin, sig in await db.execute_fetchall(
            f"SELECT uuid, ticket_id, kind, origin, sig FROM checkins WHERE uuid IN ({marks})",  # noqa: S608
            part,
        ):
            if sig is None:
                held.unsigned[str(uuid)] = (str(ticket), str(kind), str(origin))
            else:
                held.signed.add(str(uuid))
    logs: dict[tuple[str, str], set[int]] = {}
    for record, _ in records:
        logs.setdefault((record.origin, record.epoch), set()).add(record.seq)
    for (origin, epoch), seqs in logs.items():
        for part in chunks(sorted(seqs)):
            marks = ",".join("?" * len(part))
            rows = await db.execute_fetchall(
                f"SELECT seq FROM checkins WHERE origin = ? AND epoch = ? AND seq IN ({marks})",  # noqa: S608
                (origin, epoch, *part),
            )
            held.seqs.update((origin, epoch, int(seq)) for (seq,) in rows)
    for part in chunks(sorted({r.voids for r, _ in records if r.voids is not None})):
        marks = ",".join("?" * len(part))
        rows = await db.execute_fetchall(
            f"SELECT voids, origin FROM checkins WHERE voids IN ({marks})",  # noqa: S608
            part,
        )
        held.voids.update((str(v), str(o)) for v, o in rows)
    return held


def values(record: Redemption, signature: str, cursor: int) -> tuple[Any, ...]:
    """A signed record's values in ``central.schema.COLUMNS`` order."""
    return (*row(record), signature, cursor)
