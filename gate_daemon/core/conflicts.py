"""Double entries found when gates that could not talk merge their records.

Two gates cut off from each other can both admit the same single-entry ticket: neither
could know. Once their records meet, every gate (and the server) must name the same
entry as the one that stands and the other as the conflict, whatever order the records
arrived in. So the rule uses only the records: replay a ticket's entries and exits in
hybrid-clock order (uuid breaks ties), apply the ticket's entry policy, and every entry
the policy would have refused is a *loser*; its *winner* is the earlier entry it
collided with. Voided entries and exits (the person never passed) take no part, and
neither do forced entries (an operator's override is not a double entry).

Pure: rows in, pairs out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gate_daemon.core.decision import LedgerFacts

#: ``entries_allowed`` for a ticket that may re-enter after each exit.
REENTRY = None


@dataclass(frozen=True, slots=True)
class Move:
    """One of a ticket's records, as far as conflicts care."""

    uuid: str
    kind: str
    hlc: int
    origin: str
    forced: bool = False
    voids: str | None = None
    #: Wall-clock seconds at the origin: evidence shown to people ("used at 19:02"), never an order.
    wall: float = 0.0


def ticket_facts(moves: Sequence[Move]) -> LedgerFacts:
    """What a ticket's records say of its use, for ``decide``; ``moves`` in (hlc, uuid) order.

    Inside is where the last movement left the ticket, in hybrid-clock order (the order
    conflicts are judged in): counting would let two exits recorded at two gates that
    could not talk cancel two entries. A void counts only from the origin of what it
    voids (a gate can take back its own admissions, never another gate's).
    """
    origin_of = {m.uuid: m.origin for m in moves}
    voided = {m.voids for m in moves if m.kind == "void" and m.voids and origin_of.get(m.voids) == m.origin}
    entries = exits = entry_slots = exit_slots = 0
    last_at: float | None = None
    last_gate: str | None = None
    inside = False
    for move in moves:
        if move.kind == "entry":
            entry_slots += 1
            if move.uuid not in voided:
                entries += 1
                inside = True
                last_at, last_gate = move.wall, move.origin
        elif move.kind == "exit":
            exit_slots += 1
            if move.uuid not in voided:
                exits += 1
                inside = False
    return LedgerFacts(
        entries=entries,
        exits=exits,
        inside=inside,
        last_entry_at=last_at,
        last_entry_gate=last_gate,
        entry_slots=entry_slots,
        exit_slots=exit_slots,
    )


def losers(moves: Iterable[Move], entries_allowed: int | None) -> dict[str, str]:
    """Each conflicting entry's uuid mapped to the uuid of the entry that stands against it.

    ``entries_allowed`` is the ticket's limit, or ``REENTRY`` for a ticket that may
    come back in after each exit (then an entry while the ticket is inside conflicts).
    A void counts only when it comes from the origin of what it voids.
    """
    rows = list(moves)
    origin_of = {m.uuid: m.origin for m in rows}
    voided = {m.voids for m in rows if m.kind == "void" and m.voids and origin_of.get(m.voids) == m.origin}
    live = sorted(
        (m for m in rows if m.kind in ("entry", "exit") and m.uuid not in voided and not m.forced),
        key=lambda m: (m.hlc, m.uuid),
    )
    out: dict[str, str] = {}
    if entries_allowed is REENTRY:
        inside: str | None = None  # the entry that let the ticket in
        for move in live:
            if move.kind == "exit":
                inside = None
            elif inside is None:
                inside = move.uuid
            else:
                out[move.uuid] = inside
        return out
    entries = [m for m in live if m.kind == "entry"]
    limit = max(1, entries_allowed)
    for move in entries[limit:]:
        out[move.uuid] = entries[limit - 1].uuid
    return out
