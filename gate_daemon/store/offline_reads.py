"""A ledger file read without the daemon, which may be stopped, dead or running.

For ``gatectl counters --ledger``, ``gatectl report conflicts --ledger``,
``gatectl commands --ledger`` and the
progress ``gatectl bench peers --process`` watches: plain
``sqlite3``, read-only, never a write (a reader outside the gate's group must not even
create the ``-shm`` file when it can avoid it).
"""

from __future__ import annotations

import contextlib
import sqlite3
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gate_daemon.core.overrides import Override, override_of
from gate_daemon.store.conflicts import SELECT_CONFLICTS, Conflict, conflict
from gate_daemon.store.ledger import LedgerError


@contextlib.contextmanager
def reading(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to a ledger file whose daemon may be stopped, dead or running.

    Any SQLite error while it is open is a ``LedgerError`` naming the file; it is closed after.
    """
    if not path.is_file():
        raise LedgerError(f"no ledger at {path}")
    # A cleanly closed ledger has no WAL: open it immutable, which needs no -shm file (a
    # reader outside the gate's group may not create one). After a crash, or while the
    # gate runs, the WAL holds committed scans, so it must be read: read-only then.
    wal = Path(f"{path}-wal")
    flags = "mode=ro" if wal.exists() else "immutable=1"
    try:
        db = sqlite3.connect(f"file:{urllib.parse.quote(str(path.absolute()))}?{flags}", uri=True)
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot read ledger {path}: {exc}") from None
    try:
        yield db
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot read ledger {path}: {exc}") from None
    finally:
        db.close()


def read_counters(path: Path) -> dict[str, int]:
    """The counters of a ledger file."""
    with reading(path) as db:
        rows = db.execute("SELECT name, value FROM counters ORDER BY name").fetchall()
    return {str(name): int(value) for name, value in rows}


def read_conflicts(path: Path) -> list[Conflict]:
    """The double entries recorded in a ledger file, oldest loser first."""
    with reading(path) as db:
        return [conflict(row) for row in db.execute(SELECT_CONFLICTS).fetchall()]


@dataclass(frozen=True, slots=True)
class LogProgress:
    """How far a ledger file has come with the logs of others and with the central."""

    #: Records of other gates held without a gap (the sum of their logs' unbroken runs).
    learned: int
    #: This gate's own records (its last sequence number).
    own: int
    #: Records the central has answered for (the sum of the drain's positions).
    answered: int


def read_progress(path: Path, gate_id: str) -> LogProgress:
    """What ``gate_id``'s ledger file holds of others' logs, of its own, and what the central answered for."""
    with reading(path) as db:
        learned, own, answered = (
            int(db.execute(sql, params).fetchone()[0] or 0)
            for sql, params in (
                ("SELECT SUM(seq) FROM cursors WHERE origin != ?", (gate_id,)),
                ("SELECT MAX(seq) FROM redemptions WHERE origin = ?", (gate_id,)),
                ("SELECT SUM(seq) FROM upstream_acks", ()),
            )
        )
    return LogProgress(learned, own, answered)


def read_records(path: Path) -> dict[str, tuple[str, str, str, int]]:
    """Every record a ledger file holds, its own and learned: uuid -> (ticket, kind, origin, hlc)."""
    with reading(path) as db:
        rows = db.execute("SELECT uuid, ticket_id, kind, origin, hlc FROM redemptions").fetchall()
    return {str(u): (str(t), str(k), str(o), int(h)) for u, t, k, o, h in rows}


def read_scan_modes(path: Path) -> dict[str, tuple[str, float]]:
    """Each scan's evidence row in a ledger file: uuid -> (mode it was decided in, wall seconds)."""
    with reading(path) as db:
        rows = db.execute("SELECT uuid, mode, wall FROM scans").fetchall()
    return {str(u): (str(m), float(w)) for u, m, w in rows}


@dataclass(frozen=True, slots=True)
class CommandRow:
    """One row of the command evidence log."""

    received_ms: int
    via: str
    outcome: str
    supervisor: str | None
    gate: str | None
    kind: str | None
    value: str | None
    issued_ms: int | None
    nonce: str | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "received_ms": self.received_ms,
            "via": self.via,
            "outcome": self.outcome,
            "supervisor": self.supervisor,
            "gate": self.gate,
            "kind": self.kind,
            "value": self.value,
            "issued_ms": self.issued_ms,
            "nonce": self.nonce,
            "detail": self.detail,
        }


def read_commands(path: Path, limit: int = 100) -> list[CommandRow]:
    """The latest ``limit`` supervisor commands of a ledger file (applied and refused), newest first."""
    with reading(path) as db:
        rows = db.execute(
            "SELECT received_ms, via, outcome, supervisor, gate, kind, value, issued_ms, nonce, detail"
            " FROM commands ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
    return [CommandRow(*row) for row in rows]


#: A ledger's forced entries, with the refused scan each one names (its decision as shown).
_OVERRIDES = (
    "SELECT uuid, gate, wall, operator, ticket_id, json_extract(decision, '$.overrides'),"
    " json_extract(decision, '$.overridden_outcome'), json_extract(decision, '$.overridden_reason')"
    " FROM scans WHERE resolution = 'overridden' ORDER BY hlc"
)


def read_overrides(path: Path) -> list[Override]:
    """The forced entries a supervisor's badge made at this gate, oldest first (``core.overrides``)."""
    with reading(path) as db:
        return [override_of(row) for row in db.execute(_OVERRIDES).fetchall()]
