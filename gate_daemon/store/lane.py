"""The lane's state and the evidence log of supervisor commands, in the ledger's file.

The ``lane`` table (migration 7) holds the last command applied of each kind, so a
closed lane is still closed after a restart, and a command older than the one applied
is refused (``gate_daemon.core.commands.ordering``). The ``commands`` table is the
evidence log of commands (``gatectl commands --ledger`` reads it): every one applied
or refused once its signature verified, with who signed it (as the command names
them), what it said, when it was issued and received, by which path, and the outcome.
A command is applied in one transaction with its evidence row and its counter, under
the ledger's lock: two paths delivering the same command at once apply it once.

Refusals are kept up to ``REFUSALS_KEPT`` rows back. Applied commands are always kept.

The ``held`` table (migration 8) makes a supervised lane's held allows survive a crash:
a row is written (``intend``) before the scan commits, kept while its allow is held,
deleted when the scan was not held after all (``forget``), and settled ``confirmed``
(with the device that confirmed) or ``not_confirmed`` (``settle``). A row still open
when the gate starts (``unsettled``) was held when the gate died: it is voided then.
"""

from __future__ import annotations

from typing import Any

from gate_daemon.core.commands import Applied, Command, CommandRefused, LaneState, ordering
from gate_daemon.core.counters import Family, labelled
from gate_daemon.store.ledger import Ledger
from gate_daemon.store.transactions import Transaction

#: Refused commands are kept among the last this many rows of the log.
REFUSALS_KEPT = 10_000

_INSERT = """
    INSERT INTO commands (received_ms, via, outcome, supervisor, gate, kind, value, issued_ms, nonce,
                          digest, detail)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


async def load_lane(ledger: Ledger) -> LaneState:
    """The last command applied of each kind, as the file holds them."""
    async with ledger.transaction() as tx:
        cursor = await tx.execute("SELECT kind, value, supervisor, issued_ms, nonce, applied_ms FROM lane")
        rows = await cursor.fetchall()
    found = {
        str(kind): Applied(str(value), str(who), int(issued), str(nonce), int(applied))
        for kind, value, who, issued, nonce, applied in rows
    }
    return LaneState(found.get("lane"), found.get("mode"), found.get("message"))


async def apply_command(
    ledger: Ledger,
    state: LaneState,
    command: Command,
    *,
    via: str,
    now_ms: int,
    roster: frozenset[str] | None = None,
) -> LaneState:
    """Apply a verified command: the replay and ordering rules, then the state, its evidence, a counter.

    ``roster``: the active supervisors' ids; a last command by one no longer there does not
    make this one ``stale``.

    ``CommandRefused`` (``replayed``, ``stale``) once the refusal is recorded.
    """
    refusal: CommandRefused | None = None
    async with ledger.transaction() as tx:
        cursor = await tx.execute(
            "SELECT digest FROM commands WHERE nonce = ? AND outcome = 'applied'", (command.nonce,)
        )
        seen = await cursor.fetchone()
        try:
            ordering(command, None if seen is None else str(seen[0]), state.last(command.kind), roster)
        except CommandRefused as exc:
            refusal = exc
            await _record(tx, command, via, now_ms, exc.name, exc.detail)
        else:
            await tx.execute(
                "INSERT OR REPLACE INTO lane (kind, value, supervisor, issued_ms, nonce, applied_ms)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (command.kind, command.value, command.supervisor, command.issued_ms, command.nonce, now_ms),
            )
            await _record(tx, command, via, now_ms, "applied", command.describe())
    if refusal is not None:
        raise refusal
    return state.applying(command, now_ms)


async def record_refusal(
    ledger: Ledger, command: Command | None, *, via: str, now_ms: int, refused: CommandRefused
) -> None:
    """Keep a command refused before it reached the ordering rules (unparsed: ``command`` None)."""
    async with ledger.transaction() as tx:
        await _record(tx, command, via, now_ms, refused.name, refused.detail)


async def _record(
    tx: Transaction, command: Command | None, via: str, now_ms: int, outcome: str, detail: str
) -> None:
    fields: tuple[Any, ...] = (None,) * 7
    if command is not None:
        c = command
        fields = (c.supervisor, c.gate, c.kind, c.value, c.issued_ms, c.nonce, c.digest())
    await tx.execute(_INSERT, (now_ms, via, outcome, *fields, detail[:300]))
    await tx.count([labelled(Family.COMMAND, outcome)])
    if outcome != "applied":
        await tx.execute(
            "DELETE FROM commands WHERE outcome != 'applied' AND id <= (SELECT MAX(id) FROM commands) - ?",
            (REFUSALS_KEPT,),
        )


async def intend(ledger: Ledger, scan_id: str, now_ms: int) -> None:
    """Note that scan ``scan_id`` may be held, before it commits (durable when this returns)."""
    async with ledger.transaction() as tx:
        await tx.execute("INSERT OR IGNORE INTO held (scan_id, held_ms) VALUES (?, ?)", (scan_id, now_ms))


async def forget(ledger: Ledger, scan_id: str) -> None:
    """Scan ``scan_id`` was not held after all (refused, or the lane changed meanwhile)."""
    async with ledger.transaction() as tx:
        await tx.execute("DELETE FROM held WHERE scan_id = ? AND outcome IS NULL", (scan_id,))


async def settle(
    ledger: Ledger, scan_id: str, outcome: str, *, device: str | None, now_ms: int, counters: list[str]
) -> None:
    """A held allow confirmed (at ``device``) or voided (``not_confirmed``), with its counters."""
    async with ledger.transaction() as tx:
        await tx.execute(
            "UPDATE held SET outcome = ?, device = ?, done_ms = ? WHERE scan_id = ? AND outcome IS NULL",
            (outcome, device, now_ms, scan_id),
        )
        if counters:
            await tx.count(counters)


async def unsettled(ledger: Ledger) -> list[str]:
    """The scans held and neither confirmed nor voided (the gate died while they waited)."""
    async with ledger.transaction() as tx:
        cursor = await tx.execute("SELECT scan_id FROM held WHERE outcome IS NULL ORDER BY held_ms")
        rows = await cursor.fetchall()
    return [str(scan_id) for (scan_id,) in rows]
