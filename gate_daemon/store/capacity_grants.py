"""Places moved between gates in strict mode: grants given and taken, asks waiting for an answer.

Each is one transaction of the ledger (``Ledger.transaction``: its lock, so no scan
weighs capacity in between), and each keeps the ledger's counts in memory current
(``Occupancy.recount`` inside, ``keep`` after). The order is what keeps the limit
(docs/CAPACITY.md): a giver writes its grant before it answers, so its share drops
first; a receiver's share rises only when it writes the grant it holds, signed by the
giver. An ask is written before it is sent, and sent again with the same uuid until it
is answered: a grant whose answer was lost is answered again, never made twice. An ask
answered (or refused for good) is deleted; one unanswered is never dropped, since only
it can bring the places of a grant whose answer was lost (at most one is open per peer
and scope: ``gate_daemon.net.capacity``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gate_daemon.core.capacity import Grant, Tally
from gate_daemon.store.ledger import Ledger

#: Places to give, decided on the giver's counts read inside its transaction.
Amount = Callable[[dict[str, Tally]], int]


class GrantTaken(ValueError):
    """An ask's uuid names a grant made to another gate."""


@dataclass(frozen=True, slots=True)
class Ask:
    """An ask of this gate's not yet answered: sent again, with the same uuid, until it is."""

    uuid: str
    scope: str
    peer: str
    want: int
    urgent: bool


async def give(
    ledger: Ledger,
    uuid: str,
    *,
    event: str,
    scope: str,
    receiver: str,
    amount: Amount,
    sign: Callable[[Grant], str],
) -> tuple[Grant, str]:
    """The grant for ask ``uuid``: the one made before (an ask sent again), or a new one, written.

    ``amount`` decides the places on the counts as they stand inside the transaction. A
    grant of places is durable before this returns, and the giver's share is lower by them
    from then on; a grant of none is answered without being written.
    """
    async with ledger.transaction() as tx:
        cursor = await tx.execute(
            "SELECT scope, giver, receiver, places, sig FROM capacity_grants WHERE uuid = ?", (uuid,)
        )
        found = await cursor.fetchone()
        if found is not None:
            if str(found[2]) != receiver:
                raise GrantTaken(f"ask {uuid} was answered to another gate")
            return Grant(uuid, event, str(found[0]), str(found[1]), receiver, int(found[3])), str(found[4])
        grant = Grant(uuid, event, scope, ledger.gate_id, receiver, amount(ledger.occupancy.tallies))
        signature = sign(grant)
        if not grant.places:
            return grant, signature  # nothing given: nothing to answer the same way again
        await tx.execute(
            "INSERT INTO capacity_grants (uuid, scope, giver, receiver, places, made_ms, sig)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (uuid, scope, grant.giver, receiver, grant.places, int(time.time() * 1000), signature),
        )
        tallies = await ledger.occupancy.recount(tx.execute)
    ledger.occupancy.keep(tallies)  # no await since the commit: no scan saw the old counts
    return grant, signature


async def take(ledger: Ledger, grant: Grant, signature: str) -> None:
    """Hold a grant made to this gate (verified by the caller) and close its ask, in one transaction."""
    async with ledger.transaction() as tx:
        if grant.places:
            await tx.execute(
                "INSERT OR IGNORE INTO capacity_grants (uuid, scope, giver, receiver, places, made_ms, sig)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    grant.uuid,
                    grant.scope,
                    grant.giver,
                    grant.receiver,
                    grant.places,
                    int(time.time() * 1000),
                    signature,
                ),
            )
        await tx.execute("DELETE FROM capacity_asks WHERE uuid = ?", (grant.uuid,))  # answered: done
        tallies = await ledger.occupancy.recount(tx.execute)
    ledger.occupancy.keep(tallies)  # no await since the commit: no scan saw the old counts


async def open_ask(ledger: Ledger, ask: Ask) -> None:
    """Write an ask before it is sent."""
    async with ledger.transaction() as tx:
        await tx.execute(
            "INSERT OR IGNORE INTO capacity_asks (uuid, scope, peer, want, urgent, asked_ms)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (ask.uuid, ask.scope, ask.peer, ask.want, int(ask.urgent), int(time.time() * 1000)),
        )


async def close_ask(ledger: Ledger, uuid: str) -> None:
    """Give up an ask the peer refused for good (it made no grant for it, and never will)."""
    async with ledger.transaction() as tx:
        await tx.execute("DELETE FROM capacity_asks WHERE uuid = ?", (uuid,))


async def open_asks(ledger: Ledger) -> list[Ask]:
    """This gate's asks not yet answered, oldest first."""
    async with ledger.transaction() as tx:
        cursor = await tx.execute(
            "SELECT uuid, scope, peer, want, urgent FROM capacity_asks"
            " WHERE answered_ms IS NULL ORDER BY asked_ms"
        )
        rows = await cursor.fetchall()
    return [Ask(str(u), str(s), str(p), int(w), bool(g)) for u, s, p, w, g in rows]
