"""Redemption records as rows: the columns the ledger's ``redemptions`` table and the central's
``checkins`` table share, in one order, and the statements the ledger writes and reads them with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gate_daemon.core.records import Redemption

#: A record's columns, in the order of ``row`` and ``redemption``.
COLUMNS = "uuid, ticket_id, kind, slot, origin, epoch, seq, hlc, wall, operator, mode, forced, voids"
#: How many columns ``COLUMNS`` names.
WIDTH = len(COLUMNS.split(", "))

#: A record this gate made (``void``; a scan's redemption goes through ``scan_commits``).
INSERT_OWN = f"INSERT INTO redemptions ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
#: A record learned from elsewhere, with its origin's signature; one already held is ignored.
INSERT_LEARNED = (
    f"INSERT OR IGNORE INTO redemptions ({COLUMNS}, sig)"  # noqa: S608 (constants only)
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
#: One origin log's records after a sequence number, with their signatures, oldest first.
SELECT_LOG = (
    f"SELECT {COLUMNS}, sig FROM redemptions WHERE origin = ? AND epoch = ? AND seq > ?"  # noqa: S608
    " ORDER BY seq LIMIT ?"
)


def row(record: Redemption) -> tuple[Any, ...]:
    """A record's values in ``COLUMNS`` order."""
    return (
        record.uuid, record.ticket_id, record.kind, record.slot, record.origin, record.epoch, record.seq,
        record.hlc, record.wall, record.operator, record.mode, int(record.forced), record.voids,
    )  # fmt: skip


def redemption(values: Sequence[Any]) -> Redemption:
    """The record whose ``COLUMNS`` are the first values of ``values``."""
    uuid, ticket, kind, slot, origin, epoch, seq, hlc, wall, operator, mode, forced, voids = values[:WIDTH]
    return Redemption(
        uuid=str(uuid),
        ticket_id=str(ticket),
        kind=str(kind),
        slot=None if slot is None else int(slot),
        origin=str(origin),
        epoch=str(epoch),
        seq=int(seq),
        hlc=int(hlc),
        wall=float(wall),
        operator=None if operator is None else str(operator),
        mode=str(mode),
        forced=bool(forced),
        voids=None if voids is None else str(voids),
    )
