"""The parts of a scan's unit of work: the scan handed over, its evidence row, its one statement.

``Ledger.record_scan`` runs the unit under the ledger's lock. Here: the scan as the gate
hands it over (``Scan``), the evidence row it becomes (``ScanEvidence``), what it did
(``resolution``), the slot an admission or exit takes, the counters it adds one to, and
``commit``: one ``INSERT`` into the ``scan_commits`` view, whose trigger writes the
redemption, the evidence row and the counters (``gate_daemon.store.schema``).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiosqlite

from gate_daemon.core import counters
from gate_daemon.core.decision import Decision, LedgerFacts, ScanKind
from gate_daemon.core.reasons import Outcome, Reason
from gate_daemon.core.records import Redemption
from gate_daemon.store.transactions import finish

#: How a scan is decided: by this gate alone, or with the central's word (online-first).
Route = Literal["offline", "online"]
#: A scan's decision from its ticket's facts: pure, and ``gate_daemon.core.decision``'s, never the store's.
Verdict = Callable[[LedgerFacts], Decision]


class PolicyConflict(Exception):
    """A redemption's slot is already taken: the facts it was decided on are stale."""


def new_scan_id() -> str:
    """A scan UUID, made when the scan happens."""
    return str(uuidlib.uuid4())


@dataclass(frozen=True, slots=True)
class Scan:
    """A scan as the gate hands it to the ledger: what was scanned, where, by whom, and how it is decided."""

    uuid: str
    wall: float
    device: str
    operator: str | None
    #: The payload's keyed fingerprint (``core.tokens.payload_fingerprint``); empty for a manual release.
    fingerprint: str
    kind: ScanKind
    route: Route
    manifest_version: int | None


@dataclass(frozen=True, slots=True)
class ScanEvidence:
    """One row of the evidence log: the scan, its stamp, the decision shown and what the scan did."""

    scan: Scan
    gate: str
    hlc: int
    decision: Decision
    resolution: str


@dataclass(frozen=True, slots=True)
class ScanRecord:
    """A scan the ledger committed: its evidence row and the entry or exit it made, if any."""

    evidence: ScanEvidence
    redemption: Redemption | None


@dataclass(frozen=True, slots=True)
class RecordedScan:
    """A scan as the evidence log has it: the decision shown and the payload's fingerprint."""

    decision: dict[str, Any]
    fingerprint: str


def resolution(decision: Decision, kind: ScanKind) -> str:
    """What a scan did: ``admitted``, ``exited``, ``overridden`` (all three redeem), ``released``
    (the button), ``signed_in`` or ``signed_out`` (a staff badge) or ``refused``."""
    if decision.reason is Reason.MANUAL_RELEASE:
        return "released"
    if decision.reason in _RESOLUTIONS:
        return _RESOLUTIONS[decision.reason]
    if decision.outcome is Outcome.ALLOW and decision.ticket_id is not None:
        return "admitted" if kind is ScanKind.ENTRY else "exited"
    return "refused"


#: Resolutions named by the reason alone (staff badges, and a supervisor's forced entry).
_RESOLUTIONS = {
    Reason.OVERRIDDEN: "overridden",
    Reason.STAFF_SIGNED_IN: "signed_in",
    Reason.STAFF_SIGNED_OUT: "signed_out",
}


def redemption_of(
    evidence: ScanEvidence, ticket_id: str | None, facts: LedgerFacts, *, epoch: str, seq: int
) -> Redemption | None:
    """The entry or exit a scan makes (None when it makes none), numbered ``seq`` in its gate's log.

    It takes the ticket's next slot after ``facts``, the facts the scan was decided on
    (voided entries keep their slots); its time, operator and route are the scan's.
    """
    if evidence.resolution not in ("admitted", "exited", "overridden"):
        return None
    scan, decision = evidence.scan, evidence.decision
    if decision.ticket_id is None or decision.ticket_id != ticket_id:
        raise ValueError("a scan can only redeem the ticket whose facts it was decided on")
    forced = evidence.resolution == "overridden"
    taken: int | None
    if forced:
        taken = None  # a forced entry takes no slot: it is no entry the ticket's policy allowed
    elif scan.kind is ScanKind.ENTRY:
        taken = max(facts.entries, facts.entry_slots)
    else:
        taken = max(facts.exits, facts.exit_slots)
    return Redemption(
        uuid=scan.uuid,
        ticket_id=decision.ticket_id,
        kind=scan.kind.value,
        slot=None if taken is None else taken + 1,
        origin=evidence.gate,
        epoch=epoch,
        seq=seq,
        hlc=evidence.hlc,
        wall=scan.wall,
        operator=scan.operator,
        mode=scan.route,
        forced=forced,
    )


def collision(exc: sqlite3.IntegrityError) -> Literal["numbering", "slot"] | None:
    """What a refused scan collided with: this gate's numbering, a slot (or the scan's uuid), or neither."""
    if "redemptions.origin" in str(exc):
        return "numbering"
    if any(key in str(exc) for key in ("redemptions.ticket_id", "redemptions.uuid", "scans.uuid")):
        return "slot"
    return None


def scan_counters(evidence: ScanEvidence) -> tuple[str, ...]:
    """The counters a committed scan adds one to (docs/LEDGER.md, "Counters")."""
    if evidence.resolution == "released":
        return (counters.MANUAL_RELEASES,)
    extra = (counters.OVERRIDES,) if evidence.resolution == "overridden" else ()
    scan, decision = evidence.scan, evidence.decision
    return (
        counters.scan_counters(
            scan.route, decision.outcome.value, decision.reason.value, scan.kind.value, evidence.resolution
        )
        + extra
    )


_COMMIT_SCAN = (
    "INSERT INTO scan_commits (uuid, hlc, wall, gate, device, operator, fingerprint, ticket_id, kind,"
    " outcome, reason, resolution, mode, manifest_version, decision, redeem, slot, origin, epoch, seq,"
    " forced, counters) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


async def commit(db: aiosqlite.Connection, evidence: ScanEvidence, redemption: Redemption | None) -> None:
    """Commit a scan's evidence row, its counters and its redemption in one statement: all or nothing.

    Durable when this returns. ``sqlite3.IntegrityError`` when a unique index refuses the
    redemption or the scan's uuid; nothing is written then.
    """
    scan, decision = evidence.scan, evidence.decision
    try:
        await db.execute(_COMMIT_SCAN, (
            scan.uuid, evidence.hlc, scan.wall, evidence.gate, scan.device, scan.operator, scan.fingerprint,
            decision.ticket_id, scan.kind.value, decision.outcome.value, decision.reason.value,
            evidence.resolution, scan.route, scan.manifest_version,
            json.dumps(decision.as_dict(), separators=(",", ":")),
            redemption is not None,
            redemption.slot if redemption else None,
            redemption.origin if redemption else None,
            redemption.epoch if redemption else None,
            redemption.seq if redemption else None,
            int(redemption.forced) if redemption else 0,
            json.dumps(list(scan_counters(evidence))),
        ))  # fmt: skip
    finally:
        # The statement ran in autocommit, so no transaction may be open after it. If
        # one is (someone's BEGIN slipped in), the scan is not durable: undo, refuse.
        if db.in_transaction:
            cancelled = await finish(asyncio.ensure_future(db.execute("ROLLBACK")))
            if cancelled:
                raise asyncio.CancelledError from None
            raise sqlite3.OperationalError("a transaction was left open around a scan; scan refused")
