"""The pretix bridge's tables in the central's database (``gate_daemon.central.pretix``).

What the bridge knows of its pretix event between syncs and across restarts: positions
by pretix id (secret, order status, item, subevent, holder), revoked and blocked
secrets, its cursors (pretix's ``X-Page-Generated`` times, the check-in cursor of the
upload, the sequence of the records it learns), each uploaded record's answer, and the
pretix check-ins it learned. Every write is one transaction of the central's store.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import aiosqlite

from gate_daemon.core.records import Redemption
from gate_daemon.store.central.checkin_book import CentralStore
from gate_daemon.store.central.schema import COLUMNS
from gate_daemon.store.conflicts import chunks
from gate_daemon.store.redemptions import redemption
from gate_daemon.store.transactions import scalar


@dataclass(frozen=True, slots=True)
class PositionRow:
    """One pretix order position, as the bridge keeps it."""

    position_id: int
    ticket_id: str
    secret: str
    order_code: str
    #: ``core.ticket_record.Status`` value.
    status: str
    item: int
    subevent: int | None
    name: str


class PretixState:
    """The bridge's rows, read and written through the central's store."""

    def __init__(self, store: CentralStore) -> None:
        self._store = store

    async def positions(self) -> list[PositionRow]:
        """Every position known, by pretix id."""
        async with self._store.transaction() as db:
            rows = await db.execute_fetchall(
                "SELECT position_id, ticket_id, secret, order_code, status, item, subevent, name"
                " FROM pretix_positions ORDER BY position_id"
            )
        return [
            PositionRow(
                int(p), str(t), str(s), str(o), str(st), int(i), None if e is None else int(e), str(n)
            )
            for p, t, s, o, st, i, e, n in rows
        ]

    async def secrets(self) -> dict[str, tuple[str, str]]:
        """Revoked and blocked secrets: secret -> (state, pretix's reference)."""
        async with self._store.transaction() as db:
            rows = await db.execute_fetchall("SELECT secret, state, ref FROM pretix_secrets")
        return {str(s): (str(st), str(r)) for s, st, r in rows}

    async def meta(self) -> dict[str, str]:
        """The bridge's cursors and device facts."""
        async with self._store.transaction() as db:
            rows = await db.execute_fetchall("SELECT key, value FROM pretix_meta")
        return {str(k): str(v) for k, v in rows}

    async def save(
        self,
        positions: Sequence[PositionRow],
        secrets: Iterable[tuple[str, str, str, bool]],
        meta: dict[str, str],
    ) -> None:
        """Store a download's positions and secrets (``(secret, state, ref, on)``) and its cursors at once."""
        async with self._store.transaction() as db:
            await db.executemany(
                "INSERT INTO pretix_positions (position_id, ticket_id, secret, order_code, status, item,"
                " subevent, name) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (position_id) DO UPDATE SET"
                " ticket_id = excluded.ticket_id, secret = excluded.secret, status = excluded.status,"
                " item = excluded.item, subevent = excluded.subevent, name = excluded.name",
                [
                    (p.position_id, p.ticket_id, p.secret, p.order_code, p.status, p.item, p.subevent, p.name)
                    for p in positions
                ],
            )
            for secret, state, ref, on in secrets:
                if on:
                    await db.execute(
                        "INSERT INTO pretix_secrets (secret, state, ref) VALUES (?, ?, ?)"
                        " ON CONFLICT (secret) DO UPDATE SET state = excluded.state, ref = excluded.ref"
                        " WHERE pretix_secrets.state = 'blocked'",
                        (secret, state, ref),
                    )
                else:
                    await db.execute(
                        "DELETE FROM pretix_secrets WHERE secret = ? AND state = ?", (secret, state)
                    )
            await _put(db, meta)

    async def put_meta(self, meta: dict[str, str]) -> None:
        """Store cursors."""
        async with self._store.transaction() as db:
            await _put(db, meta)

    async def to_upload(self, after: int, origin: str, limit: int) -> list[tuple[int, Redemption]]:
        """Stored records after check-in cursor ``after`` that are not the bridge's own, in cursor order."""
        async with self._store.transaction() as db:
            rows = await db.execute_fetchall(
                f"SELECT {COLUMNS} FROM checkins WHERE cursor > ? AND origin != ?"  # noqa: S608
                " ORDER BY cursor LIMIT ?",
                (after, origin, limit),
            )
        return [(int(row[14]), redemption(row)) for row in rows]

    async def record(self, uuid: str) -> Redemption | None:
        """One stored record by uuid (signed or not)."""
        async with self._store.transaction() as db:
            rows = await db.execute_fetchall(
                f"SELECT {COLUMNS} FROM checkins WHERE uuid = ?",  # noqa: S608
                (uuid,),
            )
        found = next(iter(rows), None)
        return None if found is None or found[5] is None else redemption(found)

    async def losers(self, uuids: Sequence[str]) -> set[str]:
        """Which of ``uuids`` the central judged to be a double entry's losing entry."""
        found: set[str] = set()
        async with self._store.transaction() as db:
            for part in chunks(sorted(set(uuids))):
                marks = ",".join("?" * len(part))
                rows = await db.execute_fetchall(
                    f"SELECT loser FROM conflicts WHERE loser IN ({marks})",  # noqa: S608
                    part,
                )
                found.update(str(u) for (u,) in rows)
        return found

    async def uploaded(self, answers: Sequence[tuple[str, str, str | None]], now: float, cursor: int) -> None:
        """Keep upload answers ``(uuid, status, reason)`` and move the upload cursor to ``cursor``."""
        async with self._store.transaction() as db:
            await db.executemany(
                "INSERT INTO pretix_uploads (uuid, status, reason, sent_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (uuid) DO UPDATE SET status = excluded.status, reason = excluded.reason",
                [(u, s, r, now) for u, s, r in answers],
            )
            await _put(db, {"upload_cursor": str(cursor)})

    async def refusals(self, after: int, limit: int) -> list[tuple[int, str, str, str, str, float]]:
        """Scans the gates refused (evidence rows of a known ticket) after row ``after``:
        (row, gate, ticket_id, kind, reason, wall)."""
        async with self._store.transaction() as db:
            rows = await db.execute_fetchall(
                "SELECT rowid, gate, ticket_id, kind, reason, wall FROM evidence"
                " WHERE rowid > ? AND outcome != 'allow' AND ticket_id IS NOT NULL"
                " AND kind IN ('entry', 'exit')"
                " ORDER BY rowid LIMIT ?",
                (after, limit),
            )
        return [(int(r), str(g), str(t), str(k), str(why), float(w)) for r, g, t, k, why, w in rows]

    async def mark_sent(self, uuid: str, status: str, now: float) -> None:
        """Keep a record's answer from pretix before its upload (an online validation pretix made)."""
        async with self._store.transaction() as db:
            await db.execute(
                "INSERT OR IGNORE INTO pretix_uploads (uuid, status, reason, sent_at) VALUES (?, ?, NULL, ?)",
                (uuid, status, now),
            )

    async def upload_answers(self) -> dict[str, int]:
        """How many records pretix answered with each status."""
        async with self._store.transaction() as db:
            rows = await db.execute_fetchall("SELECT status, COUNT(*) FROM pretix_uploads GROUP BY status")
        return {str(s): int(n) for s, n in rows}

    async def upload_of(self, uuid: str) -> tuple[str, str | None] | None:
        """A record's upload answer: (status, reason); None before it was sent."""
        async with self._store.transaction() as db:
            rows = await db.execute_fetchall(
                "SELECT status, reason FROM pretix_uploads WHERE uuid = ?", (uuid,)
            )
        found = next(iter(rows), None)
        return None if found is None else (str(found[0]), None if found[1] is None else str(found[1]))

    async def learned_ids(self, checkin_ids: Sequence[int]) -> set[int]:
        """Which pretix check-ins the bridge learned already."""
        found: set[int] = set()
        async with self._store.transaction() as db:
            for part in chunks(sorted(set(checkin_ids))):
                marks = ",".join("?" * len(part))
                rows = await db.execute_fetchall(
                    f"SELECT checkin_id FROM pretix_learned WHERE checkin_id IN ({marks})",  # noqa: S608
                    part,
                )
                found.update(int(c) for (c,) in rows)
        return found

    async def learned(self, pairs: Sequence[tuple[int, str]], seq: int) -> None:
        """Note learned pretix check-ins (id, record uuid) and the last sequence number given."""
        async with self._store.transaction() as db:
            await db.executemany(
                "INSERT OR IGNORE INTO pretix_learned (checkin_id, uuid) VALUES (?, ?)", pairs
            )
            await _put(db, {"learned_seq": str(seq)})

    async def slots(self, ticket_id: str, origin: str) -> dict[str, int]:
        """The highest slot per kind the records of ``origin`` hold for a ticket."""
        async with self._store.transaction() as db:
            rows = await db.execute_fetchall(
                "SELECT kind, MAX(slot) FROM checkins WHERE ticket_id = ? AND origin = ? GROUP BY kind",
                (ticket_id, origin),
            )
        return {str(k): int(s or 0) for k, s in rows}

    async def gate_zone(self, gate: str) -> str | None:
        """The zone a gate said it serves in its last heartbeat."""
        async with self._store.transaction() as db:
            status = await scalar(db, "SELECT status FROM gates WHERE gate_id = ?", (gate,))
        if status is None:
            return None
        zone = json.loads(str(status)).get("zone")
        return zone if isinstance(zone, str) else None


async def _put(db: aiosqlite.Connection, meta: dict[str, str]) -> None:
    if meta:
        await db.executemany(
            "INSERT INTO pretix_meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            list(meta.items()),
        )
