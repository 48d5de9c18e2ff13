"""Double entries as the gate's ledger and the central's store keep them.

The verdict is ``gate_daemon.core.conflicts.losers``, from a ticket's records and its
entry limit; this module reads the records, judges a ticket again whenever its records
(or its entry rule) change, and keeps the ``conflicts`` table (the same in both files:
each losing entry with the entry that stands) in step, inside the caller's transaction.
The records are the ledger's ``redemptions`` or the central's ``checkins``: both have
the columns read here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import aiosqlite

from gate_daemon.core import tokens
from gate_daemon.core.conflicts import REENTRY, Move, losers
from gate_daemon.core.manifest import Manifest
from gate_daemon.core.records import Redemption
from gate_daemon.core.times import format_instant
from gate_daemon.store.redemptions import COLUMNS, WIDTH, redemption

#: A ticket's entry limit for finding double entries (``core.conflicts.REENTRY`` for re-entry).
EntriesAllowed = Callable[[str], int | None]
#: The tables that hold records: the gate's ledger's and the central's.
RecordTable = Literal["redemptions", "checkins"]
#: Ids per ``IN (...)`` list (SQLite allows 32766 parameters per statement).
CHUNK = 500


def single_entry(_ticket_id: str) -> int | None:
    """The entry rule with no manifest to ask: every ticket counts as single-entry."""
    return 1


def entry_limit(manifest: Manifest | None, ticket_id: str) -> int | None:
    """A ticket's entry limit under ``manifest``, for judging double entries; ``REENTRY`` for re-entry.

    A ticket the manifest does not list (known only by its signed payload, whose claims
    the records do not carry) counts as single-entry, and so does every ticket while
    there is no manifest.
    """
    entry = manifest.find_ticket(ticket_id) if manifest is not None else None
    if entry is None:
        return 1
    return REENTRY if entry.entries == tokens.REENTRY else entry.entries


def chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    """``items`` in slices short enough for one ``IN (...)`` list each."""
    return [items[start : start + CHUNK] for start in range(0, len(items), CHUNK)]


async def ticket_moves(db: aiosqlite.Connection, table: RecordTable, ticket_id: str) -> list[Move]:
    """A ticket's records in ``table``, in (hlc, uuid) order."""
    rows = await db.execute_fetchall(
        f"SELECT uuid, kind, hlc, origin, forced, voids, wall FROM {table} WHERE ticket_id = ?"  # noqa: S608
        " ORDER BY hlc, uuid",
        (ticket_id,),
    )
    return [
        Move(str(u), str(k), int(h), str(o), bool(f), None if v is None else str(v), float(w))
        for u, k, h, o, f, v, w in rows
    ]


@dataclass(frozen=True, slots=True)
class Judged:
    """What judging tickets again found."""

    #: Every losing entry of the tickets judged, with the entry that stands against it.
    standing: dict[str, str] = field(default_factory=dict)
    #: How many of those were not recorded before.
    found: int = 0


async def judge_again(
    db: aiosqlite.Connection,
    table: RecordTable,
    tickets: Iterable[str],
    entries_allowed: EntriesAllowed,
    now: float,
) -> Judged:
    """Recompute the conflicts of ``tickets`` from their records in ``table``, in the caller's transaction.

    Only tickets with more than one entry can have any. A conflict that no longer holds is
    deleted, a new one is recorded as detected ``now``, and one whose winner changed keeps
    its detection time.
    """
    candidates: list[str] = []
    for part in chunks(sorted(set(tickets))):
        marks = ",".join("?" * len(part))
        rows = await db.execute_fetchall(
            f"SELECT ticket_id FROM {table} WHERE ticket_id IN ({marks}) AND kind = 'entry'"  # noqa: S608
            " GROUP BY ticket_id HAVING COUNT(*) > 1",
            part,
        )
        candidates += [str(ticket_id) for (ticket_id,) in rows]
    standing: dict[str, str] = {}
    found = 0
    for ticket_id in candidates:
        pairs = losers(await ticket_moves(db, table, ticket_id), entries_allowed(ticket_id))
        old = {
            str(loser): str(winner)
            for loser, winner in await db.execute_fetchall(
                "SELECT loser, winner FROM conflicts WHERE ticket_id = ?", (ticket_id,)
            )
        }
        await db.executemany(
            "DELETE FROM conflicts WHERE ticket_id = ? AND loser = ?",
            [(ticket_id, loser) for loser in old if loser not in pairs],
        )
        await db.executemany(
            "INSERT INTO conflicts (ticket_id, loser, winner, detected_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (ticket_id, loser) DO UPDATE SET winner = excluded.winner",
            [(ticket_id, loser, winner, now) for loser, winner in pairs.items() if old.get(loser) != winner],
        )
        standing.update(pairs)
        found += sum(1 for loser in pairs if loser not in old)
    return Judged(standing, found)


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


_WINNER = ", ".join("w." + c for c in COLUMNS.split(", "))
_LOSER = ", ".join("l." + c for c in COLUMNS.split(", "))
#: Every double entry in the ledger, with both records, oldest loser first (rows for ``conflict``).
SELECT_CONFLICTS = (
    f"SELECT c.ticket_id, c.detected_at, {_WINNER}, {_LOSER}"  # noqa: S608 (constants only)
    " FROM conflicts c JOIN redemptions w ON w.uuid = c.winner JOIN redemptions l ON l.uuid = c.loser"
    " ORDER BY l.hlc, l.uuid"
)


def conflict(row: Sequence[Any]) -> Conflict:
    """The conflict a row of ``SELECT_CONFLICTS`` holds."""
    return Conflict(
        ticket_id=str(row[0]),
        winner=redemption(row[2 : 2 + WIDTH]),
        loser=redemption(row[2 + WIDTH : 2 + 2 * WIDTH]),
        detected_at=float(row[1]),
    )
