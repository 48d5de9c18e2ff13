"""Supervisors' commands the central holds for its gates, until each gate acknowledges its own.

``POST /v1/commands`` stores a verified command by its nonce (the same command posted again
is a duplicate, another with the same nonce is refused); each heartbeat from the gate it
names is answered with the commands it has not acknowledged yet, oldest first; the next
heartbeat acknowledges them (applied or refused there: the gate's evidence log says which).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from gate_daemon.core.commands import EXPIRY_MS, SignedCommand
from gate_daemon.store.central.checkin_book import CentralStore

#: Commands handed to a gate in one heartbeat answer, at most.
PER_HEARTBEAT = 32
#: Commands ``listed`` shows, at most.
LISTED = 200


class CommandQueue:
    """The ``commands`` table of the central's database."""

    def __init__(self, store: CentralStore) -> None:
        self.store = store

    async def add(self, signed: SignedCommand, now: float) -> Literal["queued", "duplicate", "reused"]:
        """Keep a verified command for its gate: ``queued``, ``duplicate`` (held already) or ``reused``.

        ``reused``: another command holds this nonce; nothing is written.
        """
        c = signed.command
        async with self.store.transaction() as db:
            rows = list(await db.execute_fetchall("SELECT digest FROM commands WHERE nonce = ?", (c.nonce,)))
            if rows:
                return "duplicate" if str(rows[0][0]) == c.digest() else "reused"
            await db.execute(
                "INSERT INTO commands (nonce, gate, kind, value, supervisor, issued_ms, digest, envelope,"
                " received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (c.nonce, c.gate, c.kind, c.value, c.supervisor, c.issued_ms, c.digest(),
                 json.dumps(signed.envelope()), now),
            )  # fmt: skip
        return "queued"

    async def pending(self, gate: str, acked: Sequence[str], now: float) -> list[dict[str, Any]]:
        """Mark ``acked`` (nonces) acknowledged by ``gate``; the envelopes it has yet to acknowledge.

        A gate leaves a command it refused for a reason that clears up unacknowledged (its
        manifest older than this one's, its clock behind); one issued more than ``EXPIRY_MS``
        ago is no longer sent, as every gate would refuse it ``expired``.
        """
        async with self.store.transaction() as db:
            if acked:
                await db.executemany(
                    "UPDATE commands SET acked_at = ? WHERE nonce = ? AND gate = ? AND acked_at IS NULL",
                    [(now, nonce, gate) for nonce in acked],
                )
            rows = await db.execute_fetchall(
                "SELECT envelope FROM commands WHERE gate = ? AND acked_at IS NULL AND issued_ms >= ?"
                " ORDER BY issued_ms, nonce LIMIT ?",
                (gate, int(now * 1000) - EXPIRY_MS, PER_HEARTBEAT),
            )
        return [json.loads(envelope) for (envelope,) in rows]

    async def listed(self, gate: str) -> list[dict[str, Any]]:
        """The latest commands for ``gate``, newest first, each with whether its gate acknowledged it."""
        async with self.store.transaction() as db:
            rows = await db.execute_fetchall(
                "SELECT envelope, received_at, acked_at FROM commands WHERE gate = ?"
                " ORDER BY issued_ms DESC, nonce DESC LIMIT ?",
                (gate, LISTED),
            )
        return [
            {**json.loads(envelope), "received_at": received, "acked_at": acked}
            for envelope, received, acked in rows
        ]
