"""One write transaction on an aiosqlite connection that survives cancellation and failure.

Shared by the gate's ledger and the reference central's store. A ``BEGIN`` whose waiter
was cancelled still runs in the database thread, and a transaction left open would
swallow every later write (each committing into it, never durably): so whatever goes
wrong inside, the block waits for what it started (through any further cancellation),
rolls back what is open, and only then lets go. The caller holds its own lock around it.

Also here: ``Transaction``, the ledger's writes inside such a block, and ``scalar``, the
one-value read both stores use.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite


@asynccontextmanager
async def immediate(db: aiosqlite.Connection) -> AsyncIterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (durable when the block ends), rolled back on any failure."""
    begin = asyncio.ensure_future(db.execute("BEGIN IMMEDIATE"))
    try:
        await asyncio.shield(begin)
        yield
        await asyncio.shield(db.execute("COMMIT"))
    except BaseException:
        cancelled = await finish(begin)
        if db.in_transaction:
            cancelled |= await finish(asyncio.ensure_future(db.execute("ROLLBACK")))
        if cancelled:
            raise asyncio.CancelledError from None
        raise


class Transaction:
    """Writes outside a scan (manifest activations, counters, marks) inside one ``immediate`` block."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> aiosqlite.Cursor:
        """Run one statement inside the transaction."""
        return await self._db.execute(sql, params)

    async def count(self, names: Iterable[str]) -> None:
        """Add one to each named counter."""
        await self._db.executemany(
            "INSERT INTO counters (name, value) VALUES (?, 1)"
            " ON CONFLICT (name) DO UPDATE SET value = value + 1",
            [(name,) for name in names],
        )

    async def set_meta(self, values: Iterable[tuple[str, str]]) -> None:
        """Set ``meta`` keys."""
        await self._db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", values)


async def finish(step: asyncio.Future[Any]) -> bool:
    """Wait until a queued database step is done, whatever cancellations arrive meanwhile.

    Its outcome is ignored (the caller is already failing). Returns whether a
    cancellation arrived while waiting, for the caller to raise once it has cleaned up.
    """
    cancelled = False
    while not step.done():
        try:
            await asyncio.shield(step)
        except asyncio.CancelledError:
            cancelled = cancelled or not step.done()
        except BaseException:
            break
    if not step.cancelled():
        step.exception()  # retrieved: never "exception was never retrieved"
    return cancelled


async def scalar(db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    """The first column of the first row ``sql`` returns, or None when it returns none."""
    rows = await db.execute_fetchall(sql, params)
    first = next(iter(rows), None)
    return None if first is None else first[0]
