"""Records served from a ledger's origin logs, on a read-only connection of their own.

Peers pull records and the upstream drain sends them: both read committed data on a
second connection (its own thread), never taking the ledger's lock, so serving them
never delays a scan.
"""

from __future__ import annotations

import contextlib
import sqlite3
import urllib.parse
from collections.abc import Container, Mapping
from pathlib import Path

import aiosqlite

from gate_daemon.core.records import Redemption
from gate_daemon.store.logs import LogId
from gate_daemon.store.redemptions import SELECT_LOG, redemption


class LogReader:
    """Reads a ledger file's origin logs on a read-only connection opened at first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reader: aiosqlite.Connection | None = None
        self._closed = False

    async def records_after(
        self,
        ends: Mapping[LogId, int],
        known: Mapping[LogId, int],
        limit: int,
        origins: Container[str] | None = None,
    ) -> tuple[list[tuple[Redemption, str | None]], bool]:
        """Each log's records after ``known``, up to its end in ``ends``, and whether more remain.

        Up to ``limit`` records, oldest first per log, each with its origin's signature
        (None for this gate's own); with ``origins``, only those origins' logs.
        """
        behind = [
            (log_id, known.get(log_id, 0), end)
            for log_id, end in ends.items()
            if end > known.get(log_id, 0) and (origins is None or log_id[0] in origins)
        ]
        out: list[tuple[Redemption, str | None]] = []
        if not behind:
            return out, False
        reader = await self._connection()
        for (origin, epoch), after, end in behind:
            if len(out) >= limit:
                return out, True
            rows = await reader.execute_fetchall(SELECT_LOG, (origin, epoch, after, limit - len(out) + 1))
            for row in rows:
                if int(row[6]) > end:
                    break
                if len(out) >= limit:
                    return out, True
                out.append((redemption(row), None if row[13] is None else str(row[13])))
        return out, False

    async def _connection(self) -> aiosqlite.Connection:
        """The read-only connection, opened at first use."""
        if self._closed:
            raise ValueError("the ledger is closed")
        if self._reader is None:
            uri = f"file:{urllib.parse.quote(str(self.path.absolute()))}?mode=ro"
            reader = await aiosqlite.connect(uri, uri=True, isolation_level=None)
            await reader.execute("PRAGMA busy_timeout = 5000")
            if self._reader is None and not self._closed:
                self._reader = reader
            else:
                await reader.close()
        assert self._reader is not None
        return self._reader

    async def aclose(self) -> None:
        """Close the connection; later reads raise ``ValueError``."""
        self._closed = True
        if self._reader is not None:
            with contextlib.suppress(sqlite3.Error, ValueError):
                await self._reader.close()
