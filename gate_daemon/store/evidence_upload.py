"""The evidence log's rows the central has not had yet, and how far it has had them.

The upstream drain sends this gate's evidence rows (``scans``: one per scan, denials
included) to the central after its records, oldest first by hybrid clock: each gate's
stamps only grow, so the stamp of the last row the central answered for is the cursor
(``meta`` key ``upstream_evidence_hlc``). The central keeps each row once by its uuid,
so a batch resent after a lost answer is harmless.

The log has no index but its key (a scan writes no more pages than it must), so a batch
reads the whole log: it is read on a read-only connection of its own (never under the
ledger's lock), and only when the latest scan's stamp (kept in ``meta`` by the scan's own
statement) is past the cursor. A row's resolution can change after it was sent (an
entry not passed is voided): the void is a record, and reaches the central as one.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import aiosqlite

from gate_daemon.store.ledger import Ledger

_KEY = "upstream_evidence_hlc"
_ROWS = (
    "SELECT uuid, hlc, wall, device, operator, ticket_id, kind, outcome, reason, resolution, mode,"
    " manifest_version,"
    # A forced entry's refused scan, kept in the decision as shown (gate.staff): the upload's ``overrides``.
    " CASE WHEN resolution = 'overridden' THEN json_object('scan', json_extract(decision, '$.overrides'),"
    " 'outcome', json_extract(decision, '$.overridden_outcome'),"
    " 'reason', json_extract(decision, '$.overridden_reason')) END"
    " FROM scans WHERE hlc > ? ORDER BY hlc LIMIT ?"
)
_NAMES = (
    "uuid", "hlc", "wall", "device", "operator", "ticket_id", "kind", "outcome", "reason", "resolution",
    "mode", "manifest_version", "overrides",
)  # fmt: skip


class EvidenceCursor:
    """Where the evidence upload stands, and the rows after it."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._after: int | None = None

    async def after(self) -> int:
        """The stamp of the last row the central answered for (0 before any)."""
        if self._after is None:
            async with self.ledger.transaction() as tx:
                found = await (await tx.execute("SELECT value FROM meta WHERE key = ?", (_KEY,))).fetchone()
            self._after = int(found[0]) if found else 0
        return self._after

    async def batch(self, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` rows after the cursor, oldest first, as dictionaries of the upload's fields.

        Read on a read-only connection opened for the batch: first the latest scan's stamp
        (one row of ``meta``), and the log only when it is past the cursor.
        """
        after = await self.after()
        uri = f"file:{urllib.parse.quote(str(self.ledger.path.absolute()))}?mode=ro"
        async with aiosqlite.connect(uri, uri=True, isolation_level=None) as reader:
            await reader.execute("PRAGMA busy_timeout = 5000")
            found = await (
                await reader.execute("SELECT value FROM meta WHERE key = 'latest_scan_hlc'")
            ).fetchone()
            if not found or int(found[0]) <= after:
                return []
            rows = await reader.execute_fetchall(_ROWS, (after, limit))
        out = [dict(zip(_NAMES, row, strict=True)) for row in rows]
        for row in out:
            row["overrides"] = None if row["overrides"] is None else json.loads(row["overrides"])
        return out

    async def advance(self, hlc: int) -> None:
        """The central answered for every row up to stamp ``hlc``: remember it (only forwards)."""
        if hlc <= await self.after():
            return
        async with self.ledger.transaction() as tx:
            await tx.set_meta([(_KEY, str(hlc))])
        self._after = hlc
