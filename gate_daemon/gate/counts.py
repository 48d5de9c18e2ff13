"""Counters bumped outside a scan: a count the ledger cannot take is logged, never fatal.

A refused manifest, a passage at the turnstile, an unreadable image: each is counted in
the ledger on its own, with no scan to fail. A ledger that cannot take the count (locked,
full, closing) must not stop what is being counted, so the failure is a log line.
"""

from __future__ import annotations

import logging
import sqlite3

from gate_daemon.store.ledger import Ledger

log = logging.getLogger(__name__)


async def count_softly(ledger: Ledger, name: str) -> None:
    """Add one to the counter ``name``; a ledger that cannot take it is logged, never fatal."""
    try:
        await ledger.bump([name])
    except (sqlite3.Error, ValueError) as exc:
        log.error("cannot count %s in the ledger: %s", name, exc)
