"""Who is inside, per scope, as the ledger knows it; and places granted between gates.

The ``occupancy`` table counts entries and exits per scope (``*``, the venue, or a zone
id) and origin gate. This gate's own scans are counted by triggers on ``scans``, in the
scan's own statement (``gate_daemon.store.schema``); records learned from elsewhere by
``learned``, in the learner's transaction, their zone looked up by ``zone_of`` (the
active manifest's word on the ticket). ``capacity_grants`` holds the places moved
between gates in strict mode (``gate_daemon.core.capacity``); ``capacity_asks`` this
gate's asks not yet answered.

``Occupancy`` keeps the same counts in memory as ``Tally`` values, so a scan weighs
capacity without a trip to the database: a scan's commit adds its move (``took``), and
every other writer reads the counts again inside its transaction and keeps them once it
has committed (``recount`` then ``keep``, with no ``await`` in between).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

import aiosqlite

from gate_daemon.core.capacity import VENUE, Tally
from gate_daemon.core.manifest import Manifest
from gate_daemon.core.records import Redemption
from gate_daemon.store.scans import ScanEvidence

#: Runs one statement: a connection's ``execute`` or a ``Transaction``'s.
Execute = Callable[[str, tuple[Any, ...]], Awaitable[aiosqlite.Cursor]]
#: The zone of a ticket, for records learned from elsewhere; None: the venue only.
ZoneOf = Callable[[str], str | None]

_UPSERT = (
    "INSERT INTO occupancy (scope, origin, entries, exits) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (scope, origin) DO UPDATE"
    " SET entries = entries + excluded.entries, exits = exits + excluded.exits"
)


def no_zone(_ticket_id: str) -> str | None:
    """Without a manifest a learned record counts for the venue only."""
    return None


def zone_of(manifest: Manifest | None, ticket_id: str) -> str | None:
    """A ticket's zone under ``manifest``; None when it does not list the ticket (or has no zone)."""
    entry = manifest.find_ticket(ticket_id) if manifest is not None else None
    if entry is None:
        return None
    return entry.zone or None


async def read_tallies(execute: Execute, gate_id: str) -> dict[str, Tally]:
    """Every scope's tally as the file holds it."""
    found: dict[str, dict[str, int]] = {}
    cursor = await execute(
        "SELECT scope, SUM(entries - exits), SUM(CASE WHEN origin = ?1 THEN entries ELSE 0 END),"
        " SUM(CASE WHEN origin = ?1 THEN exits ELSE 0 END) FROM occupancy GROUP BY scope",
        (gate_id,),
    )
    for scope, inside, entries, exits in await cursor.fetchall():
        found.setdefault(str(scope), {}).update(inside=inside, own_entries=entries, own_exits=exits)
    for column, field in (("receiver", "granted_in"), ("giver", "granted_out")):
        cursor = await execute(
            f"SELECT scope, SUM(places) FROM capacity_grants WHERE {column} = ? GROUP BY scope",  # noqa: S608
            (gate_id,),
        )
        for scope, places in await cursor.fetchall():
            found.setdefault(str(scope), {})[field] = places
    return {scope: Tally(**{k: int(v or 0) for k, v in values.items()}) for scope, values in found.items()}


class Occupancy:
    """The ledger's counts of who is inside and of places granted, kept in memory beside the file."""

    def __init__(self, gate_id: str, tallies: dict[str, Tally]) -> None:
        self.gate_id = gate_id
        self.tallies = tallies
        #: Set by the daemon to the active manifest's zones (``zone_of``).
        self.zone_of: ZoneOf = no_zone

    @classmethod
    async def load(cls, db: aiosqlite.Connection, gate_id: str) -> Occupancy:
        """The counts of the ledger file ``db``."""
        return cls(gate_id, await read_tallies(db.execute, gate_id))

    def took(self, evidence: ScanEvidence) -> None:
        """Count one of this gate's scans just committed (the triggers counted it in the file)."""
        if evidence.resolution not in ("admitted", "exited", "overridden"):
            return
        entry = evidence.resolution != "exited"  # a supervisor's forced entry is an entry too
        for scope in _scopes(evidence.decision.zone):
            tally = self.tallies.get(scope, Tally())
            self.tallies[scope] = replace(
                tally,
                inside=tally.inside + (1 if entry else -1),
                own_entries=tally.own_entries + entry,
                own_exits=tally.own_exits + (not entry),
            )

    async def recount(self, execute: Execute) -> dict[str, Tally]:
        """The counts read again inside a writer's transaction, to ``keep`` once it commits."""
        return await read_tallies(execute, self.gate_id)

    def keep(self, tallies: dict[str, Tally]) -> None:
        """Take the counts ``recount`` read, once their transaction has committed."""
        self.tallies = tallies

    async def learned(self, db: aiosqlite.Connection, applied: Sequence[Redemption]) -> None:
        """Count records just stored from elsewhere, inside the learner's transaction.

        An entry or exit counts unless its void is held already; a void takes back the
        move it names when that move was held before this batch (in the same batch, the
        move itself was not counted).
        """
        batch = {r.uuid for r in applied}
        deltas: Counter[tuple[str, str, str]] = Counter()
        for record in applied:
            if record.kind in ("entry", "exit"):
                voided = await db.execute_fetchall(
                    "SELECT 1 FROM redemptions WHERE voids = ? AND origin = ?", (record.uuid, record.origin)
                )
                if not list(voided):
                    _add(deltas, record.origin, record.kind, self.zone_of(record.ticket_id), 1)
            elif record.voids is not None and record.voids not in batch:
                rows = list(
                    await db.execute_fetchall(
                        "SELECT kind, ticket_id FROM redemptions"
                        " WHERE uuid = ? AND origin = ? AND kind != 'void'",
                        (record.voids, record.origin),
                    )
                )
                if rows:
                    kind, ticket_id = str(rows[0][0]), str(rows[0][1])
                    _add(deltas, record.origin, kind, self.zone_of(ticket_id), -1)
        await db.executemany(
            _UPSERT,
            [
                (scope, origin, n if kind == "entry" else 0, n if kind == "exit" else 0)
                for (scope, origin, kind), n in deltas.items()
                if n
            ],
        )


def _scopes(zone: str | None) -> Iterable[str]:
    return (VENUE, zone) if zone else (VENUE,)


def _add(deltas: Counter[tuple[str, str, str]], origin: str, kind: str, zone: str | None, n: int) -> None:
    for scope in _scopes(zone):
        deltas[(scope, origin, kind)] += n
