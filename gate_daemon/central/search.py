"""Participant search over a manifest's tickets: by ticket id, order id or seat.

Case-insensitive. A ticket matches ``exact`` when one of its fields is the query,
``prefix`` when one starts with it, ``contains`` when one holds it, and ``close`` when
its ticket id or order id is a likely typo of it (``difflib`` ratio of at least
``CLOSE``). Best matches first, then by ticket id. Pure; one pass over the tickets
(a reference server's search, not an index).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from gate_daemon.core.ticket_record import TicketEntry
from gate_daemon.core.tokens import REENTRY

MATCHES = ("exact", "prefix", "contains", "close", "pretix")
#: How alike a ticket or order id must be to the query to be a ``close`` match.
CLOSE = 0.75


@dataclass(frozen=True, slots=True)
class Found:
    """A ticket that matched, and how well."""

    entry: TicketEntry
    match: str
    #: For ``close`` matches, how alike (0..1); 1 otherwise.
    score: float = 1.0

    def as_dict(self) -> dict[str, object]:
        """The ticket as the participants route shows it (without check-ins)."""
        e = self.entry
        return {
            "ticket_id": e.ticket_id,
            "order_id": e.order_id or None,
            "seat": e.seat or None,
            "status": e.status.value,
            "session": e.session or None,
            "zone": e.zone or None,
            "entries_allowed": None if e.entries == REENTRY else e.entries,
            "match": self.match,
        }


def _match(entry: TicketEntry, q: str) -> tuple[str, float] | None:
    fields = [f.casefold() for f in (entry.ticket_id, entry.order_id, entry.seat) if f]
    if q in fields:
        return "exact", 1.0
    if any(f.startswith(q) for f in fields):
        return "prefix", 1.0
    if any(q in f for f in fields):
        return "contains", 1.0
    best = 0.0
    # Ticket and order ids only: seats are too short to be typos of anything.
    for text in (f.casefold() for f in (entry.ticket_id, entry.order_id) if f):
        matcher = difflib.SequenceMatcher(None, q, text)
        if (
            matcher.real_quick_ratio() >= CLOSE
            and matcher.quick_ratio() >= CLOSE
            and matcher.ratio() >= CLOSE
        ):
            best = max(best, matcher.ratio())
    return ("close", best) if best else None


def search(entries: Iterable[TicketEntry], query: str, limit: int) -> list[Found]:
    """The best ``limit`` tickets for ``query``."""
    q = query.casefold()
    found = []
    for entry in entries:
        how = _match(entry, q)
        if how is not None:
            found.append(Found(entry, *how))
    found.sort(key=lambda f: (MATCHES.index(f.match), -f.score, f.entry.ticket_id))
    return found[:limit]


def listed(entries: Iterable[TicketEntry], ticket_ids: list[str], match: str) -> list[Found]:
    """The tickets named by ``ticket_ids`` (a pretix bridge's search), in that order."""
    wanted = {tid: i for i, tid in enumerate(ticket_ids)}
    found = [Found(e, match) for e in entries if e.ticket_id in wanted]
    return sorted(found, key=lambda f: wanted[f.entry.ticket_id])
