"""The central's enrollment tables: one-time tokens and the gates they enrolled (docs/ENROLL.md).

A token is held by the public half of its token key (``core.enrollment.token_key``), never
by its secret. Redeeming one checks and spends it and enters its gate in one transaction,
so two requests with the same token cannot both enroll.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from gate_daemon.core.enrollment import EnrollRefused, Request
from gate_daemon.core.keys import PublicKey
from gate_daemon.core.manifest_header import RosterGate
from gate_daemon.store.central.checkin_book import CentralStore


@dataclass(frozen=True, slots=True)
class Enrolled:
    """A gate a token enrolled."""

    id: str
    pub: str
    addr: str
    zone: str | None
    joined_at: float

    def roster_gate(self) -> RosterGate:
        """As the manifest's roster holds it."""
        return RosterGate(self.id, PublicKey.parse(self.pub), self.addr)


@dataclass(frozen=True, slots=True)
class TokenRow:
    """A token as the central holds it."""

    gate: str
    zone: str | None
    created_at: float
    expires_at: float
    used_at: float | None
    revoked_at: float | None

    def state(self, now: float) -> str:
        """``used``, ``revoked``, ``expired`` or ``open``."""
        if self.used_at is not None:
            return "used"
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= now else "open"


_SELECT_ROWS = "SELECT gate, zone, created_at, expires_at, used_at, revoked_at FROM enroll_tokens"


class Enrollments:
    """The ``enroll_tokens`` and ``enrolled_gates`` tables of the central's database."""

    def __init__(self, store: CentralStore) -> None:
        self.store = store

    async def add_token(
        self, token_key: PublicKey, gate: str, zone: str | None, now: float, expires: float
    ) -> None:
        """Keep a new token's public key for ``gate``."""
        async with self.store.transaction() as db:
            await db.execute(
                "INSERT INTO enroll_tokens (token_key, gate, zone, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (token_key.text(), gate, zone, now, expires),
            )

    async def revoke(self, gate: str, now: float) -> int:
        """Revoke every token of ``gate`` that is neither used nor revoked; how many."""
        async with self.store.transaction() as db:
            return await _revoke(db, gate, now)

    async def redeem(self, request: Request, now: float) -> TokenRow:
        """Spend the request's token and enter its gate; ``EnrollRefused`` naming why not (no change)."""
        async with self.store.transaction() as db:
            rows = list(
                await db.execute_fetchall(f"{_SELECT_ROWS} WHERE token_key = ?", (request.token.text(),))
            )
            if not rows:
                raise EnrollRefused(
                    "token_unknown", "this central issued no such token (forged, or another central's)"
                )
            token = TokenRow(*rows[0])
            state = token.state(now)
            if state != "open":
                raise EnrollRefused(f"token_{state}", _REFUSED[state])
            if token.gate != request.gate_id:
                raise EnrollRefused("token_unknown", "the token was issued for another gate")
            await db.execute(
                "UPDATE enroll_tokens SET used_at = ? WHERE token_key = ?", (now, request.token.text())
            )
            await db.execute(
                "INSERT OR REPLACE INTO enrolled_gates (id, pub, addr, zone, joined_at, token_key)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (request.gate_id, request.pub.text(), request.addr, token.zone, now, request.token.text()),
            )
        return token

    async def gates(self) -> list[Enrolled]:
        """The enrolled gates, by id."""
        async with self.store.transaction() as db:
            rows = await db.execute_fetchall(
                "SELECT id, pub, addr, zone, joined_at FROM enrolled_gates ORDER BY id"
            )
        return [Enrolled(*row) for row in rows]

    async def roster(self) -> tuple[RosterGate, ...]:
        """The enrolled gates as the manifest's roster holds them."""
        return tuple(gate.roster_gate() for gate in await self.gates())

    async def remove(self, gate: str, now: float) -> tuple[bool, int]:
        """Take ``gate`` out of the enrolled roster and revoke its open tokens, in one transaction:
        whether it was in the roster, and how many tokens were revoked (a token left over would
        enroll the removed gate again)."""
        async with self.store.transaction() as db:
            cursor = await db.execute("DELETE FROM enrolled_gates WHERE id = ?", (gate,))
            removed = cursor.rowcount > 0
            return removed, await _revoke(db, gate, now)

    async def tokens(self) -> Sequence[TokenRow]:
        """Every token, newest first."""
        async with self.store.transaction() as db:
            rows = await db.execute_fetchall(f"{_SELECT_ROWS} ORDER BY created_at DESC")
        return [TokenRow(*row) for row in rows]


async def _revoke(db: aiosqlite.Connection, gate: str, now: float) -> int:
    cursor = await db.execute(
        "UPDATE enroll_tokens SET revoked_at = ? WHERE gate = ? AND used_at IS NULL AND revoked_at IS NULL",
        (now, gate),
    )
    return int(cursor.rowcount)


_REFUSED = {
    "used": "this token enrolled a gate already: a token works once (make a new one)",
    "revoked": "this token was revoked",
    "expired": "this token has expired (make a new one)",
}
