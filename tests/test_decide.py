"""The decision table: one real payload per reason, against a real manifest, through evaluate()."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gate_daemon.core.decision import (
    Checkpoint,
    Decision,
    LedgerFacts,
    ScanKind,
    Ticket,
    decide,
    evaluate,
    identify,
)
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.manifest import open_manifest
from gate_daemon.core.reasons import Outcome, Reason
from gate_daemon.core.rotating import DEFAULT_PERIOD, encode_code, issue_certificate, step_of
from gate_daemon.core.ticket_record import Status, TicketEntry
from gate_daemon.core.tokens import PayloadFormat, TicketClaims, event_tag
from gate_daemon.provision.event import load_event
from tests.support import (
    EVENT_ID,
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


def _rotating_minute_old(world: World) -> str:
    """A rotating code of a minute before SAT_START: a screenshot shown again (docs/ROTATING.md)."""
    claims = TicketClaims("T-ROT-1", event_tag(EVENT_ID), zone="floor")
    cert = issue_certificate(claims, STRANGER.public, world.issuer, DEFAULT_PERIOD)
    return encode_code(cert, step_of(SAT_START - 60, DEFAULT_PERIOD), STRANGER)


@dataclass(frozen=True)
class Case:
    """One row: a payload (or a way to make it), the gate, the ledger, the clock, and the verdict."""

    reason: Reason
    payload: str | Callable[[World], str]
    now: float = SAT_START
    where: Checkpoint = ANYWHERE
    facts: LedgerFacts = NO_ENTRIES
    no_manifest: bool = False
    kind: ScanKind = ScanKind.ENTRY
    expect: dict[str, Any] = field(default_factory=dict)
    message: tuple[str, ...] = ()


CASES: dict[str, Case] = {
    "ok-reference": Case(
        Reason.OK,
        "REF-SAT-FLOOR-0001",
        where=Checkpoint(zone="floor"),
        expect={
            "ticket_id": "T-0001",
            "format": PayloadFormat.REFERENCE,
            "entries_allowed": 1,
            "entries_used": 0,
        },
        message=("Entry allowed",),
    ),
    "ok-legacy": Case(Reason.OK, "O-100-A2", expect={"ticket_id": "T-0002", "format": PayloadFormat.LEGACY}),
    "ok-signed-unlisted": Case(
        Reason.OK,
        lambda w: w.sign("T-9000", session="sat", zone="floor"),
        where=Checkpoint(zone="floor", session="sat"),
        expect={"ticket_id": "T-9000", "format": PayloadFormat.SIGNED, "session": "sat", "zone": "floor"},
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
    "expired_code": Case(
        Reason.EXPIRED_CODE,
        _rotating_minute_old,
        expect={"ticket_id": "T-ROT-1", "format": PayloadFormat.ROTATING},
        message=("expired",),
    ),
    "wrong_event": Case(
        Reason.WRONG_EVENT, lambda w: w.sign("T-0001", event="elsewhere"), expect={"ticket_id": "T-0001"}
    ),
    "unknown_ticket": Case(Reason.UNKNOWN_TICKET, "NO-SUCH-CODE-1234"),
    # T-0001 is order O-100 seat A1 but has a reference code: its guessable text opens nothing.
    "unknown_ticket-order-seat-of-a-coded-ticket": Case(
        Reason.UNKNOWN_TICKET, "O-100-A1", where=Checkpoint(zone="floor"), expect={"ticket_id": None}
    ),
    "unknown_ticket-order-seat-of-a-coded-ticket-sun": Case(Reason.UNKNOWN_TICKET, "O-108-D2", now=SUN_START),
    "revoked": Case(Reason.REVOKED, "O-107-D1", expect={"ticket_id": "T-REV"}),
    "revoked-signed": Case(Reason.REVOKED, lambda w: w.sign("T-REV")),
    "blocked": Case(Reason.BLOCKED, "O-104-C1", expect={"ticket_id": "T-0006"}),
    "unpaid": Case(Reason.UNPAID, "O-101-B1", expect={"ticket_id": "T-0003"}, message=("not paid",)),
    "canceled": Case(Reason.CANCELED, "O-102-B2", expect={"ticket_id": "T-0004"}),
    "canceled-signed-pinned": Case(
        Reason.CANCELED, lambda w: w.sign("T-0004", session="sat"), where=Checkpoint(session="sat")
    ),
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
    "wrong_session-pinned-while-own-open": Case(
        Reason.WRONG_SESSION,
        "REF-SAT-FLOOR-0001",
        now=SAT_START,  # Saturday is open, but this gate serves Sunday only
        where=Checkpoint(session="sun"),
    ),
    # A gate pinned to a session answers that session's tickets by their own window, even
    # while another session is open: never wrong_session.
    "too_early-pinned-own-session-while-another-open": Case(
        Reason.TOO_EARLY,
        "REF-SUNDAY-FLOOR-77",
        now=SAT_START,
        where=Checkpoint(session="sun"),
        expect={"session": "sun", "opens_at": SUN_OPENS, "opens_in": SUN_OPENS - SAT_START},
    ),
    "too_late-pinned-own-session-while-another-open": Case(
        Reason.TOO_LATE,
        "REF-SAT-FLOOR-0001",
        now=SUN_START,
        where=Checkpoint(session="sat"),
        message=("Saturday ended",),
    ),
    "ok-pinned-own-session": Case(
        Reason.OK,
        lambda w: w.sign("T-9005", session="sun"),
        now=SUN_OPENS,
        where=Checkpoint(session="sun"),
        expect={"format": PayloadFormat.SIGNED, "session": "sun"},
    ),
    "too_early-pinned-signed-own-session": Case(
        Reason.TOO_EARLY,
        lambda w: w.sign("T-9006", session="sun"),
        now=SAT_END - 60,
        where=Checkpoint(session="sun"),
        expect={"opens_at": SUN_OPENS},
    ),
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
        expect={
            "opens_at": SAT_START,
            "opens_in": SAT_START - SAT_OPENS - 60,
            "format": PayloadFormat.SIGNED,
        },
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
    "exit-while-inside": Case(
        Reason.OK,
        "O-106-C3",
        now=SUN_START,
        kind=ScanKind.EXIT,
        facts=LedgerFacts(entries=2, exits=1, inside=True),
        message=("Exit recorded",),
        expect={"ticket_id": "T-0008", "entries_used": 2},
    ),
    "exit-not-inside": Case(
        Reason.NOT_INSIDE,
        "O-106-C3",
        now=SUN_START,
        kind=ScanKind.EXIT,
        facts=LedgerFacts(entries=1, exits=1, inside=False),
        message=("no entry to scan out",),
    ),
    "exit-ignores-revocation-and-time": Case(
        Reason.OK,
        "O-107-D1",
        now=EXPIRES - 1,
        kind=ScanKind.EXIT,
        facts=LedgerFacts(entries=1, inside=True),
        expect={"ticket_id": "T-REV"},
    ),
    "exit-still-needs-a-real-ticket": Case(
        Reason.UNKNOWN_TICKET, "NO-SUCH-TICKET", kind=ScanKind.EXIT, facts=LedgerFacts(entries=1, inside=True)
    ),
    "listed-signed-takes-manifest-status": Case(
        Reason.CANCELED, lambda w: w.sign("T-0004", session="sat"), expect={"format": PayloadFormat.SIGNED}
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
    return payload, evaluate(payload, manifest, case.where, case.now, case.facts, case.kind)


@pytest.mark.parametrize("name", list(CASES))
def test_decision_table(shared_world: World, name: str) -> None:
    case = CASES[name]
    payload, decision = run(case, shared_world)
    assert decision.reason is case.reason, decision
    assert decision.outcome is case.reason.outcome
    for key, value in case.expect.items():
        assert getattr(decision, key) == value, (key, decision)
        if isinstance(value, PayloadFormat):
            assert getattr(decision, key) is value, (key, decision)
    for words in case.message:
        assert words in decision.message, decision.message
    shown = json.dumps(decision.as_dict())
    if payload:
        assert payload not in shown


def test_the_table_covers_every_reason() -> None:
    # ledger_unavailable is the gate's own answer when it cannot commit (tests/test_gate_service.py);
    # manual_release, the steward button's (tests/test_turnstile.py); lane_closed, a closed
    # lane's (tests/test_lane.py); venue_full, the capacity check's (tests/test_capacity.py).
    # None comes from a payload.
    gate_only = {Reason.LEDGER_UNAVAILABLE, Reason.MANUAL_RELEASE, Reason.LANE_CLOSED, Reason.VENUE_FULL}
    # Staff badges' reasons are the gate's too (tests/test_badges.py, tests/test_override.py).
    gate_only |= {r for r in Reason if r.outcome is Outcome.STAFF} | {Reason.OVERRIDDEN}
    assert {case.reason for case in CASES.values()} == set(Reason) - gate_only


def test_reason_outcomes() -> None:
    special = {Reason.OK: Outcome.ALLOW, Reason.ALREADY_USED: Outcome.ALREADY_USED}
    special[Reason.TOO_EARLY] = Outcome.TOO_EARLY
    special[Reason.MANUAL_RELEASE] = Outcome.ALLOW
    special[Reason.OVERRIDDEN] = Outcome.ALLOW
    special |= {r: Outcome.STAFF for r in Reason if r.value.startswith(("staff_", "badge_", "override_"))}
    special[Reason.VENUE_FULL] = Outcome.TOO_EARLY  # yellow: "not now" (docs/CAPACITY.md)
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


# ------------------------------------------------------------------ checkpoints the event does not have


def test_checkpoint_problems_name_an_unknown_zone_or_session(shared_world: World) -> None:
    manifest = shared_world.manifest
    assert Checkpoint().problems(manifest) == []
    assert Checkpoint(zone="floor", session="sun").problems(manifest) == []
    assert Checkpoint(zone="flor").problems(manifest) == [
        "zone 'flor' is not a zone of event demo-2026 (zones: floor, balcony)"
    ]
    assert Checkpoint(session="nope").problems(manifest) == [
        "session 'nope' is not a session of event demo-2026 (sessions: sat, sun)"
    ]
    both = Checkpoint(zone="Floor", session="SAT").problems(manifest)  # ids are case-sensitive
    assert [p.split(" is not ")[0] for p in both] == ["zone 'Floor'", "session 'SAT'"]


def test_checkpoint_problems_of_an_event_without_zones_or_sessions(world: World) -> None:
    path = world.dir / "bare.toml"
    path.write_text('[event]\nid = "demo-2026"\nname = "Bare"\n')
    data = world.build([TicketEntry("T-1")], event=load_event(path), expires_at=2**32 - 1)
    manifest = open_manifest(data, world.trusted)
    assert Checkpoint(zone="floor", session="sat").problems(manifest) == [
        "zone 'floor' is not a zone of event demo-2026 (zones: none)",
        "session 'sat' is not a session of event demo-2026 (sessions: none)",
    ]


# ------------------------------------------------------------------ payload formats


@pytest.mark.parametrize(
    ("payload", "fmt"),
    [
        ("REF-SAT-FLOOR-0001", PayloadFormat.REFERENCE),
        ("O-105-C2", PayloadFormat.LEGACY),
        ("signed", PayloadFormat.SIGNED),
    ],
)
def test_format_is_a_payload_format(shared_world: World, payload: str, fmt: PayloadFormat) -> None:
    text = shared_world.sign("T-9100") if payload == "signed" else payload
    found = identify(text, shared_world.manifest, SAT_START)
    assert isinstance(found, Ticket)
    assert found.format is fmt
    decision = evaluate(text, shared_world.manifest, Checkpoint(), SAT_START)
    assert decision.format is fmt
    assert decision.as_dict()["format"] == fmt.value
    assert json.loads(json.dumps(decision.as_dict()))["format"] == fmt.value


def test_denials_before_lookup_carry_the_format_they_know(shared_world: World) -> None:
    unknown_key = evaluate(shared_world.sign("T-1", key=STRANGER), shared_world.manifest, ANYWHERE, SAT_START)
    assert unknown_key.format is PayloadFormat.SIGNED
    assert evaluate("NO-SUCH-CODE-1234", shared_world.manifest, ANYWHERE, SAT_START).format is None
    assert evaluate("GD1:!!!!", shared_world.manifest, ANYWHERE, SAT_START).format is None


# ------------------------------------------------------------------ legacy codes off


def test_event_without_legacy_codes_opens_by_code_and_signature_only(world: World) -> None:
    event = dataclasses.replace(world.event, legacy_codes=False)
    manifest = open_manifest(world.build(event=event), world.trusted)
    for text in ("O-100-A2", "O-105-C2", "O-106-C3", "O-102-B2", "O-107-D1", "O-100-A1"):
        decision = evaluate(text, manifest, ANYWHERE, SAT_START)
        assert decision.reason is Reason.UNKNOWN_TICKET, (text, decision)
    assert evaluate("REF-SAT-FLOOR-0001", manifest, ANYWHERE, SAT_START).reason is Reason.OK
    assert evaluate(world.sign("T-0007"), manifest, ANYWHERE, SAT_START).reason is Reason.OK
    assert evaluate(world.sign("T-0004"), manifest, ANYWHERE, SAT_START).reason is Reason.CANCELED


# ------------------------------------------------------------------ a gate pinned to a session

# Every way a ticket of session S reaches a gate: listed by code or order-seat, or signed
# (listed or not, with or without a window of its own).
LISTED = {
    "sat": ["REF-SAT-FLOOR-0001", "O-100-A2", "O-101-B1", "O-102-B2"],
    "sun": ["REF-SUNDAY-FLOOR-77", "O-106-C3"],
}
LISTED_IDS = {"sat": ["T-0001", "T-0002", "T-0003", "T-0004"], "sun": ["T-0008", "T-SUN"]}
_SIGNED: dict[tuple[object, ...], str] = {}


def _signed(
    world: World, ticket_id: str, session: str, zone: str, window: tuple[int | None, int | None]
) -> str:
    key = (ticket_id, session, zone, window)
    if key not in _SIGNED:
        _SIGNED[key] = world.sign(
            ticket_id, session=session, zone=zone, valid_from=window[0], valid_until=window[1]
        )
    return _SIGNED[key]


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    session=st.sampled_from(["sat", "sun"]),
    data=st.data(),
    now=st.one_of(
        st.integers(0, 2**32 - 1),
        st.integers(SAT_OPENS - 7200, SUN_END + 7200),
        st.sampled_from([SAT_OPENS, SAT_START, SAT_END, SUN_OPENS, SUN_START, SUN_END]),
    ),
    zone=st.sampled_from([None, "floor", "balcony"]),
    facts=st.builds(LedgerFacts, entries=st.integers(0, 5), inside=st.booleans()),
)
def test_pinned_gate_never_says_wrong_session_to_its_own_sessions_tickets(
    shared_world: World, session: str, data: st.DataObject, now: int, zone: str | None, facts: LedgerFacts
) -> None:
    kind = data.draw(st.sampled_from(["listed", "signed-listed", "signed-new"]))
    if kind == "listed":
        payload = data.draw(st.sampled_from(LISTED[session]))
    else:
        ticket_id = data.draw(
            st.sampled_from(LISTED_IDS[session])
            if kind == "signed-listed"
            else st.sampled_from(["T-N1", "T-N2"])
        )
        window = data.draw(
            st.sampled_from([(None, None), (SAT_START, None), (None, SAT_END), (SUN_OPENS, SUN_END)])
        )
        payload = _signed(shared_world, ticket_id, session, data.draw(st.sampled_from(["", "floor"])), window)
    decision = evaluate(payload, shared_world.manifest, Checkpoint(zone=zone, session=session), now, facts)
    assert decision.reason is not Reason.WRONG_SESSION, decision
    if decision.ticket_id is not None and decision.session is not None:
        assert decision.session == session
    # The same ticket at a gate pinned to the other session is never let in.
    other = "sun" if session == "sat" else "sat"
    elsewhere = evaluate(payload, shared_world.manifest, Checkpoint(zone=zone, session=other), now, facts)
    assert elsewhere.reason is not Reason.OK, elsewhere


def test_the_pinned_property_is_not_vacuous(shared_world: World) -> None:
    """At the pinned gate, its tickets get every time-window answer, not just one."""
    manifest, sun_gate = shared_world.manifest, Checkpoint(session="sun")
    reasons = {
        evaluate("REF-SUNDAY-FLOOR-77", manifest, sun_gate, now).reason
        for now in (SAT_START, SUN_OPENS, SUN_END + 1)
    }
    assert reasons == {Reason.TOO_EARLY, Reason.OK, Reason.TOO_LATE}
