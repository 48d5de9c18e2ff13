"""A SQLite file made durable and brought to its schema's latest version.

Shared by the gate's ledger (``gate_daemon.store.schema``) and the reference central's
store. ``durable`` sets WAL with ``synchronous = FULL``: a transaction that returned from
its commit is on disk. ``migrate`` applies numbered migrations in order, each in one
transaction with its ``PRAGMA user_version`` bump, so a crash leaves the file at a whole
version; a file newer than the code is refused, never downgraded. Each caller words the
errors for its own program.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import aiosqlite

from gate_daemon.store.transactions import scalar


class NotWal(Exception):
    """The file cannot use WAL mode (a network filesystem, a read-only folder)."""

    def __init__(self, mode: str) -> None:
        super().__init__(f"cannot use WAL mode (got {mode})")
        self.mode = mode


class SchemaTooNew(Exception):
    """The file has more migrations applied than this code knows."""

    def __init__(self, version: int, known: int) -> None:
        super().__init__(f"schema version {version}, newer than {known}")
        self.version = version
        self.known = known


async def durable(db: aiosqlite.Connection) -> None:
    """Set the connection up for durable writes: WAL, ``synchronous = FULL``, a busy timeout."""
    await db.execute("PRAGMA busy_timeout = 5000")
    mode = await scalar(db, "PRAGMA journal_mode = WAL")
    if str(mode).lower() != "wal":
        raise NotWal(str(mode))
    await db.execute("PRAGMA synchronous = FULL")


async def migrate(db: aiosqlite.Connection, migrations: Sequence[str]) -> None:
    """Apply the migrations the file lacks, each in its own transaction with the version bump."""
    version = int(await scalar(db, "PRAGMA user_version") or 0)
    if version > len(migrations):
        raise SchemaTooNew(version, len(migrations))
    for number in range(version, len(migrations)):
        await db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(migrations[number]):
                await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {number + 1}")
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise


def _statements(script: str) -> list[str]:
    """Split a migration into whole statements (a trigger's body holds semicolons)."""
    out: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            out.append(pending.strip())
            pending = ""
    if pending.strip():
        out.append(pending.strip())
    return out
