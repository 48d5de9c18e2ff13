"""The decision table: one real payload per reason, against a real manifest, through evaluate()."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from gate_daemon.core.decision import (
    Checkpoint,
    Decision,
    LedgerFacts,
    Outcome,
    Reason,
    Ticket,
    decide,
    evaluate,
    identify,
)
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.manifest import Status, TicketEntry, open_manifest
from gate_daemon.provision.event import load_event
from tests.support import (
    EXPIRES,
    SAT_END,
    SAT_OPENS,
    SAT_START,
    SUN_END,
    SUN_OPENS,
    SUN_START,
    World,
)

STRANGER = SecretKey.generate()
ANYWHERE = Checkpoint()
NO_ENTRIES = LedgerFacts()


def _bad_signature(world: World) -> str:
    payload = world.sign("T-4000")
    body = payload[4:]
    raw = bytearray(base64.b32decode(body + "=" * (-len(body) % 8)))
    raw[-1] ^= 0x01  # last signature byte; the rest stays well formed
    return "GD1:" + base64.b32encode(bytes(raw)).decode().rstrip("=")


@dataclass(frozen=True)
class Case:
    """One row: a payload (or a way to make it), the gate, the ledger, the clock, and the verdict."""

    reason: Reason
    payload: str | Callable[[World], str]
    now: float = SAT_START
    where: Checkpoint = ANYWHERE
    facts: LedgerFacts = NO_ENTRIES
    no_manifest: bool = False
    expect: dict[str, Any] = field(default_factory=dict)
    message: tuple[str, ...] = ()


CASES: dict[str, Case] = {
    "ok-reference": Case(
        Reason.OK,
        "REF-SAT-FLOOR-0001",
        where=Checkpoint(zone="floor"),
        expect={"ticket_id": "T-0001", "format": "reference", "entries_allowed": 1, "entries_used": 0},
        message=("Entry allowed",),
    ),
    "ok-legacy": Case(Reason.OK, "O-100-A2", expect={"ticket_id": "T-0002", "format": "legacy"}),
    "ok-signed-unlisted": Case(
        Reason.OK,
        lambda w: w.sign("T-9000", session="sat", zone="floor"),
        where=Checkpoint(zone="floor", session="sat"),
        expect={"ticket_id": "T-9000", "format": "signed", "session": "sat", "zone": "floor"},
    ),
    "invalid_payload": Case(Reason.INVALID_PAYLOAD, "GD1:!!!!", message=("Not a ticket code",)),
    "invalid_payload-empty": Case(Reason.INVALID_PAYLOAD, ""),
    "invalid_payload-version": Case(Reason.INVALID_PAYLOAD, lambda w: "GD2:" + w.sign("T-0001")[4:]),
    "manifest_missing": Case(Reason.MANIFEST_MISSING, "REF-SAT-FLOOR-0001", no_manifest=True),
    "manifest_expired": Case(
        Reason.MANIFEST_EXPIRED, "REF-SAT-FLOOR-0001", now=EXPIRES + 1, message=("2026-11-23T23:30:00Z",)
    ),
    "unknown_key": Case(Reason.UNKNOWN_KEY, lambda w: w.sign("T-0001", key=STRANGER)),
    "bad_signature": Case(Reason.BAD_SIGNATURE, _bad_signature),
    "wrong_event": Case(
        Reason.WRONG_EVENT, lambda w: w.sign("T-0001", event="elsewhere"), expect={"ticket_id": "T-0001"}
    ),
    "unknown_ticket": Case(Reason.UNKNOWN_TICKET, "NO-SUCH-CODE-1234"),
    "revoked": Case(Reason.REVOKED, "O-107-D1", expect={"ticket_id": "T-REV"}),
    "revoked-signed": Case(Reason.REVOKED, lambda w: w.sign("T-REV")),
    "blocked": Case(Reason.BLOCKED, "O-104-C1", expect={"ticket_id": "T-0006"}),
    "unpaid": Case(Reason.UNPAID, "O-101-B1", expect={"ticket_id": "T-0003"}, message=("not paid",)),
    "canceled": Case(Reason.CANCELED, "O-102-B2", expect={"ticket_id": "T-0004"}),
    "refunded": Case(Reason.REFUNDED, "REF-REFUNDED-0005", expect={"ticket_id": "T-0005"}),
    "wrong_zone": Case(Reason.WRONG_ZONE, "O-100-A2", where=Checkpoint(zone="floor"), message=("Balcony",)),
    "wrong_zone-signed": Case(
        Reason.WRONG_ZONE, lambda w: w.sign("T-9001", zone="vip"), where=Checkpoint(zone="floor")
    ),
    "wrong_session-pinned": Case(
        Reason.WRONG_SESSION,
        "REF-SAT-FLOOR-0001",
        where=Checkpoint(session="sun"),
        expect={"session": "sat"},
        message=("Saturday",),
    ),
    "wrong_session-other-open": Case(
        Reason.WRONG_SESSION,
        "REF-SUNDAY-FLOOR-77",
        now=SAT_START,
        expect={"session": "sun", "opens_at": SUN_OPENS},
        message=("Sunday", "entry opens 2026-11-22T17:30:00Z"),
    ),
    "wrong_session-not-in-event": Case(Reason.WRONG_SESSION, lambda w: w.sign("T-9002", session="mon")),
    "too_early-session": Case(
        Reason.TOO_EARLY,
        "REF-SAT-FLOOR-0001",
        now=SAT_OPENS - 600,
        expect={"opens_at": SAT_OPENS, "opens_in": 600},
        message=("2026-11-21T18:00:00Z", "10 min"),
    ),
    "too_early-valid_from": Case(
        Reason.TOO_EARLY,
        lambda w: w.sign("T-9003", valid_from=SAT_START),
        now=SAT_OPENS + 60,
        expect={"opens_at": SAT_START, "opens_in": SAT_START - SAT_OPENS - 60, "format": "signed"},
        message=("2026-11-21T19:00:00Z", "59 min"),
    ),
    "too_early-any-session": Case(
        Reason.TOO_EARLY,
        "O-105-C2",  # no session of its own: waits for the next one
        now=SAT_END + 3600,
        expect={"opens_at": SUN_OPENS},
    ),
    "too_late-session": Case(
        Reason.TOO_LATE, "REF-SAT-FLOOR-0001", now=SAT_END + 60, message=("Saturday ended",)
    ),
    "too_late-valid_until": Case(
        Reason.TOO_LATE,
        lambda w: w.sign("T-9004", valid_until=SAT_START),
        now=SAT_START + 1,
        message=("expired 2026-11-21T19:00:00Z",),
    ),
    "too_late-event-over": Case(
        Reason.TOO_LATE, "O-105-C2", now=SUN_END + 60, message=("event ended 2026-11-22T23:30:00Z",)
    ),
    "already_used": Case(
        Reason.ALREADY_USED,
        "REF-SAT-FLOOR-0001",
        facts=LedgerFacts(entries=1, last_entry_at=SAT_START - 300, last_entry_gate="north-1"),
        expect={"last_entry_gate": "north-1", "last_entry_at": SAT_START - 300, "entries_used": 1},
        message=("Already used", "2026-11-21T18:55:00Z", "gate north-1"),
    ),
    "n-entries-left": Case(
        Reason.OK,
        "O-105-C2",
        facts=LedgerFacts(entries=2, last_entry_at=SAT_START - 60, last_entry_gate="north-1"),
        expect={"entries_allowed": 3, "entries_used": 2},
        message=("last entry",),
    ),
    "n-entries-used-up": Case(
        Reason.ALREADY_USED,
        "O-105-C2",
        facts=LedgerFacts(entries=3, last_entry_at=SAT_START - 60, last_entry_gate="south-2"),
        expect={"entries_allowed": 3, "entries_used": 3, "last_entry_gate": "south-2"},
        message=("All 3 entries used", "gate south-2"),
    ),
    "re-entry-inside": Case(
        Reason.ALREADY_USED,
        "O-106-C3",
        now=SUN_START,
        facts=LedgerFacts(entries=4, inside=True, last_entry_at=SUN_START - 60, last_entry_gate="north-1"),
        message=("Already inside", "scan out first", "gate north-1"),
    ),
    "re-entry-outside": Case(
        Reason.OK,
        "O-106-C3",
        now=SUN_START,
        facts=LedgerFacts(entries=4, inside=False),
        message=("re-entry",),
    ),
    "listed-signed-takes-manifest-status": Case(
        Reason.CANCELED, lambda w: w.sign("T-0004", session="sat"), expect={"format": "signed"}
    ),
    "listed-signed-takes-manifest-zone": Case(
        Reason.WRONG_ZONE,
        lambda w: w.sign("T-0002", zone="floor"),  # the manifest moved it to the balcony
        where=Checkpoint(zone="floor"),
        expect={"zone": "balcony"},
    ),
}


def run(case: Case, world: World) -> tuple[str, Decision]:
    payload = case.payload(world) if callable(case.payload) else case.payload
    manifest = None if case.no_manifest else world.manifest
    return payload, evaluate(payload, manifest, case.where, case.now, case.facts)


@pytest.mark.parametrize("name", list(CASES))
def test_decision_table(shared_world: World, name: str) -> None:
    case = CASES[name]
    payload, decision = run(case, shared_world)
    assert decision.reason is case.reason, decision
    assert decision.outcome is case.reason.outcome
    for key, value in case.expect.items():
        assert getattr(decision, key) == value, (key, decision)
    for words in case.message:
        assert words in decision.message, decision.message
    shown = json.dumps(decision.as_dict())
    if payload:
        assert payload not in shown


def test_the_table_covers_every_reason() -> None:
    assert {case.reason for case in CASES.values()} == set(Reason)


def test_reason_outcomes() -> None:
    special = {Reason.OK: Outcome.ALLOW, Reason.ALREADY_USED: Outcome.ALREADY_USED}
    special[Reason.TOO_EARLY] = Outcome.TOO_EARLY
    for reason in Reason:
        assert reason.outcome is special.get(reason, Outcome.DENY), reason


def test_as_dict_renders_times_and_leaves_out_absent_details(shared_world: World) -> None:
    _, decision = run(CASES["already_used"], shared_world)
    shown = decision.as_dict()
    assert shown["outcome"] == "already_used"
    assert shown["reason"] == "already_used"
    assert shown["last_entry_at"] == "2026-11-21T18:55:00Z"
    assert shown["last_entry_gate"] == "north-1"
    assert "opens_at" not in shown and "opens_in" not in shown
    _, early = run(CASES["too_early-session"], shared_world)
    assert early.as_dict()["opens_at"] == "2026-11-21T18:00:00Z"
    assert early.as_dict()["opens_in"] == 600
    json.dumps(shown)  # JSON-ready


def test_identify_then_decide_is_evaluate(shared_world: World) -> None:
    found = identify("O-105-C2", shared_world.manifest, SAT_START)
    assert isinstance(found, Ticket)
    assert (found.ticket_id, found.status, found.entries) == ("T-0007", Status.COMPLETED, 3)
    facts = LedgerFacts(entries=1)
    split = decide(found, shared_world.manifest, Checkpoint(), facts, SAT_START)
    assert split == evaluate("O-105-C2", shared_world.manifest, Checkpoint(), SAT_START, facts)
    assert split.reason is Reason.OK


def test_identify_stops_before_the_ledger(shared_world: World) -> None:
    found = identify("NO-SUCH-CODE-1234", shared_world.manifest, SAT_START)
    assert isinstance(found, Decision) and found.reason is Reason.UNKNOWN_TICKET


def test_signed_ticket_keeps_its_own_window_when_listed(shared_world: World) -> None:
    payload = shared_world.sign("T-0001", valid_until=SAT_START)
    late = evaluate(payload, shared_world.manifest, Checkpoint(), SAT_START + 60)
    assert late.reason is Reason.TOO_LATE
    assert evaluate(payload, shared_world.manifest, Checkpoint(), SAT_START).reason is Reason.OK


def test_entry_policy_walks_through_n_entries(shared_world: World) -> None:
    reasons = [
        evaluate("O-105-C2", shared_world.manifest, Checkpoint(), SAT_START, LedgerFacts(entries=n)).reason
        for n in range(5)
    ]
    assert reasons == [Reason.OK, Reason.OK, Reason.OK, Reason.ALREADY_USED, Reason.ALREADY_USED]


def test_manifest_checks_come_before_the_payload_lookup(shared_world: World) -> None:
    # The order documented in decision.py: parse first, then the manifest's state.
    assert evaluate("", None, Checkpoint(), SAT_START).reason is Reason.INVALID_PAYLOAD
    expired = evaluate("NO-SUCH-CODE-1234", shared_world.manifest, Checkpoint(), EXPIRES + 1)
    assert expired.reason is Reason.MANIFEST_EXPIRED


def test_event_without_sessions_is_always_open(world: World) -> None:
    path = world.dir / "open-air.toml"
    path.write_text('ticket_keys = ["issuer.pub"]\n[event]\nid = "demo-2026"\nname = "Open air"\n')
    event = load_event(path)
    tickets = [TicketEntry("T-1", order_id="O-1", seat="S1")]
    manifest = open_manifest(world.build(tickets, event=event, expires_at=2**32 - 1), world.trusted)
    for now in (0, SAT_START, SUN_END + 10 * 86400):
        assert evaluate("O-1-S1", manifest, Checkpoint(), now).reason is Reason.OK
    # A signed ticket's own window still applies.
    payload = world.sign("T-2", valid_from=SAT_START, valid_until=SAT_END)
    assert evaluate(payload, manifest, Checkpoint(), SAT_START - 1).reason is Reason.TOO_EARLY
    assert evaluate(payload, manifest, Checkpoint(), SAT_START).reason is Reason.OK
    assert evaluate(payload, manifest, Checkpoint(), SAT_END + 1).reason is Reason.TOO_LATE
