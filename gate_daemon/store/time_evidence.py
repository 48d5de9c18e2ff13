"""What the ledger's file says of the time: the floor it keeps, and the latest stamps it holds.

A Pi without a battery-backed clock may start near 1970; the gate's clock
(``gate_daemon.gate.clock``) decides no earlier than its *floor*, the latest time it knows
has passed. The file keeps that floor (``meta`` key ``time_floor``), and its records are
evidence of more:

- this gate's own scans, refusals included: the latest scan's time, which the scan's own
  statement keeps in ``meta`` (``latest_scan_ms``, schema migration 6), so that no start
  reads the evidence log (a million rows on a Pi's card would take seconds);
- the records of each origin log held, this gate's own (voids included) and those
  learned from peers and the central, signed by their origin: the time of each log's
  latest record (the highest sequence number, found through the primary key).

Each read is a few rows through keys, whatever the file's size. What the clock makes of
them (which origins it believes, and how far) is the clock's rule, not the store's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiosqlite

from gate_daemon.store.transactions import Transaction, scalar

#: The latest record of each origin log held (``cursors``) and of this gate's own.
_LATEST_OF_EACH_LOG = """
    SELECT logs.origin,
           (SELECT r.wall FROM redemptions AS r
             WHERE r.origin = logs.origin AND r.epoch = logs.epoch ORDER BY r.seq DESC LIMIT 1)
      FROM (SELECT origin, epoch FROM cursors UNION SELECT ?, ?) AS logs
"""


@dataclass(frozen=True, slots=True)
class TimeEvidence:
    """The file's evidence of the time, in seconds since 1970; None (or no entry) where it holds none."""

    #: The floor as kept (``time_floor``), unread: the clock says what it makes of a bad one.
    kept: str | None = None
    #: The latest of this gate's own scans and records.
    own: float | None = None
    #: Each other origin's latest record held.
    origins: dict[str, float] = field(default_factory=dict)


async def read_evidence(db: aiosqlite.Connection, gate_id: str, epoch: str) -> TimeEvidence:
    """The floor kept and the latest stamps, for ``gate_id`` (its current log in ``epoch``)."""
    kept = await scalar(db, "SELECT value FROM meta WHERE key = 'time_floor'")
    scanned = await scalar(db, "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'latest_scan_ms'")
    own = None if scanned is None else int(scanned) / 1000
    origins: dict[str, float] = {}
    for origin, wall in await db.execute_fetchall(_LATEST_OF_EACH_LOG, (gate_id, epoch)):
        if wall is None:
            continue  # a log whose records were all refused
        if origin == gate_id:
            own = max(own or 0.0, float(wall))
        else:
            origins[str(origin)] = max(origins.get(str(origin), 0.0), float(wall))
    return TimeEvidence(None if kept is None else str(kept), own, origins)


async def keep_floor(tx: Transaction, floor: float) -> None:
    """Keep ``floor``, the latest time this gate knows has passed."""
    await tx.set_meta([("time_floor", repr(floor))])


async def latest_scan_stamp(db: aiosqlite.Connection) -> int | None:
    """The hybrid-clock stamp of this gate's latest scan (kept by the scan's statement); None before one."""
    value = await scalar(db, "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'latest_scan_hlc'")
    return None if value is None else int(value)
