"""Deltas never remove a ticket: a row dropped from tickets.csv stays in the manifest, canceled.

Otherwise a signed ticket whose row was dropped would read as "sold after the last sync"
and open the gate again. Every case here goes through the real builder and ``apply_delta``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct

import pytest

from gate_daemon.core.decision import Checkpoint, evaluate
from gate_daemon.core.delta import DeltaPlan, apply_delta, changes_member, encode_changes, plan_delta
from gate_daemon.core.manifest import DELTA, Manifest, open_envelope, open_manifest, peek_header, seal
from gate_daemon.core.reasons import Reason
from gate_daemon.core.ticket_record import Status, TicketEntry, decode_record
from gate_daemon.errors import ManifestRefused
from gate_daemon.provision.event import load_event
from tests.support import EVENT_TOML, SAT_START, SUN_START, TICKET_COUNT, World, entry

SESSIONS = {"sat", "sun"}
ZONES = {"floor", "balcony"}


def without(world: World, *ticket_ids: str) -> list[TicketEntry]:
    """The world's tickets with these rows dropped from tickets.csv."""
    return [t for t in world.tickets if t.ticket_id not in ticket_ids]


def step(world: World, base: Manifest, tickets: list[TicketEntry], **build) -> tuple[bytes, Manifest]:
    """Build the delta from ``base`` to its next version, and apply it."""
    delta = world.build(tickets, version=base.version + 1, base=base, **build)
    return delta, open_manifest(apply_delta(base, delta, world.trusted), world.trusted)


# ------------------------------------------------------------------ plan_delta


def test_plan_keeps_a_dropped_ticket_as_canceled(world: World) -> None:
    plan = plan_delta(
        world.manifest.event_id, world.manifest.entries(), without(world, "T-0001"), SESSIONS, ZONES
    )
    assert isinstance(plan, DeltaPlan)
    tomb = dataclasses.replace(entry(world, "T-0001"), status=Status.CANCELED)
    assert plan.changed == [tomb]
    assert plan.kept_canceled == 1
    assert sorted(e.ticket_id for e in plan.entries) == sorted(t.ticket_id for t in world.tickets)
    assert tomb in plan.entries
    # The tombstone keeps everything else: session, zone, code hash, order and seat.
    assert (tomb.session, tomb.zone, tomb.order_id, tomb.seat) == ("sat", "floor", "O-100", "A1")
    assert tomb.code_hash == entry(world, "T-0001").code_hash


@pytest.mark.parametrize(
    ("ticket_id", "was", "becomes"),
    [
        ("T-0003", Status.PENDING, Status.CANCELED),
        ("T-0007", Status.COMPLETED, Status.CANCELED),
        ("T-0004", Status.CANCELED, Status.CANCELED),
        ("T-0005", Status.REFUNDED, Status.REFUNDED),
        ("T-0006", Status.BLOCKED, Status.BLOCKED),
    ],
)
def test_plan_keeps_a_refusing_status_and_cancels_any_other(
    world: World, ticket_id: str, was: Status, becomes: Status
) -> None:
    assert entry(world, ticket_id).status is was
    plan = plan_delta(
        world.manifest.event_id, world.manifest.entries(), without(world, ticket_id), SESSIONS, ZONES
    )
    [kept] = [e for e in plan.entries if e.ticket_id == ticket_id]
    assert kept.status is becomes
    assert plan.kept_canceled == 1
    # A tombstone identical to its base record is no change and costs no bytes in the delta.
    assert plan.changed == ([] if was is becomes else [kept])


def test_plan_clears_a_session_or_zone_the_new_event_lacks(world: World) -> None:
    plan = plan_delta(
        world.manifest.event_id,
        world.manifest.entries(),
        without(world, "T-SUN", "T-0002"),
        {"sat"},
        {"floor"},
    )
    kept = {e.ticket_id: e for e in plan.entries if e.ticket_id in ("T-SUN", "T-0002")}
    assert (kept["T-SUN"].session, kept["T-SUN"].zone) == ("", "floor")  # sun is gone, floor stays
    assert (kept["T-0002"].session, kept["T-0002"].zone) == ("sat", "")  # balcony is gone
    assert all(e.status is Status.CANCELED for e in kept.values())
    assert plan.kept_canceled == 2


def test_plan_of_listed_tickets_changes_only_what_differs(world: World) -> None:
    paid = dataclasses.replace(entry(world, "T-0003"), status=Status.COMPLETED)
    new = TicketEntry("T-0400", order_id="O-400", seat="N1")
    tickets = [paid if t.ticket_id == "T-0003" else t for t in world.tickets] + [new]
    plan = plan_delta(world.manifest.event_id, world.manifest.entries(), tickets, SESSIONS, ZONES)
    assert plan.changed == [paid, new]
    assert plan.kept_canceled == 0
    assert plan.entries == tickets
    unchanged = plan_delta(world.manifest.event_id, world.manifest.entries(), world.tickets, SESSIONS, ZONES)
    assert (unchanged.changed, unchanged.kept_canceled) == ([], 0)


# ------------------------------------------------------------------ the key case


def test_a_canceled_signed_ticket_dropped_from_the_csv_stays_canceled(world: World) -> None:
    """T-0004 is canceled in v1; v2's tickets.csv no longer lists it. Its signed ticket must stay out."""
    payload = world.sign("T-0004", session="sat")
    here = Checkpoint(session="sat")
    assert evaluate(payload, world.manifest, here, SAT_START).reason is Reason.CANCELED

    delta, v2 = step(world, world.manifest, without(world, "T-0004"))
    assert peek_header(delta)[1].raw["delta"]["kept_canceled"] == 1
    assert v2.find_ticket("T-0004") == entry(world, "T-0004")  # still there, still canceled
    decision = evaluate(payload, v2, here, SAT_START)
    assert (decision.reason, decision.ticket_id) == (Reason.CANCELED, "T-0004")
    # By its order-seat text too.
    assert evaluate("O-102-B2", v2, here, SAT_START).reason is Reason.CANCELED

    # And it stays so through every later version that still lacks it.
    _, v3 = step(world, v2, without(world, "T-0004"))
    assert evaluate(payload, v3, here, SAT_START).reason is Reason.CANCELED


def test_a_sold_signed_ticket_dropped_from_the_csv_is_canceled(world: World) -> None:
    """T-0001 was sold in v1; dropping its row must not turn it into "sold after the last sync"."""
    payload = world.sign("T-0001", session="sat", zone="floor")
    here = Checkpoint(zone="floor", session="sat")
    assert evaluate(payload, world.manifest, here, SAT_START).reason is Reason.OK
    _, v2 = step(world, world.manifest, without(world, "T-0001"))
    assert v2.find_ticket("T-0001").status is Status.CANCELED
    assert evaluate(payload, v2, here, SAT_START).reason is Reason.CANCELED
    assert evaluate("REF-SAT-FLOOR-0001", v2, here, SAT_START).reason is Reason.CANCELED
    # A ticket never listed still opens by its signature: only listed tickets are tombstoned.
    assert evaluate(world.sign("T-NEW", session="sat"), v2, here, SAT_START).reason is Reason.OK


def test_a_dropped_ticket_listed_again_comes_back_as_listed(world: World) -> None:
    _, v2 = step(world, world.manifest, without(world, "T-0001"))
    _, v3 = step(world, v2, world.tickets)
    assert v3.find_ticket("T-0001") == entry(world, "T-0001")
    assert evaluate("REF-SAT-FLOOR-0001", v3, Checkpoint(), SAT_START).reason is Reason.OK


def test_tombstones_lose_a_session_and_zone_the_new_event_drops(world: World) -> None:
    """v2 drops the Sunday show and the balcony, and with them every row that used them."""
    path = world.dir / "event-v2.toml"
    saturday_only = EVENT_TOML[: EVENT_TOML.index('[[sessions]]\nid = "sun"')]
    path.write_text(saturday_only + '[[zones]]\nid = "floor"\nname = "Floor"\n')
    event = load_event(path)
    assert ([s.id for s in event.sessions], [z.id for z in event.zones]) == (["sat"], ["floor"])
    dropped = ("T-0002", "T-0008", "T-SUN")  # balcony, sun, sun + floor
    delta, v2 = step(world, world.manifest, without(world, *dropped), event=event)
    got = {tid: v2.find_ticket(tid) for tid in dropped}
    assert (got["T-0002"].session, got["T-0002"].zone) == ("sat", "")
    assert (got["T-0008"].session, got["T-0008"].zone) == ("", "")
    assert (got["T-SUN"].session, got["T-SUN"].zone) == ("", "floor")
    assert {t.status for t in got.values()} == {Status.CANCELED}
    assert peek_header(delta)[1].raw["delta"]["kept_canceled"] == 3
    # Still refused, though the gate can no longer tell which show they were for.
    assert evaluate("REF-SUNDAY-FLOOR-77", v2, Checkpoint(), SAT_START).reason is Reason.CANCELED
    assert (
        evaluate(world.sign("T-0008", session="sun"), v2, Checkpoint(), SUN_START).reason is Reason.CANCELED
    )


# ------------------------------------------------------------------ the delta file


def test_delta_header_member_has_no_removed_count(world: World) -> None:
    delta = world.build(without(world, "T-0009"), version=2, base=world.manifest)
    member = peek_header(delta)[1].raw["delta"]
    assert set(member) == {
        "base_version",
        "base_sha256",
        "changes_sha256",
        "changes_size",
        "changed",
        "kept_canceled",
    }
    assert (member["changed"], member["kept_canceled"]) == (1, 1)


def test_delta_payload_is_a_count_and_records_sorted_by_ticket_id(world: World) -> None:
    new = TicketEntry("T-0000", order_id="O-000", seat="Z0", session="sun", zone="balcony")
    paid = dataclasses.replace(entry(world, "T-0003"), status=Status.COMPLETED)
    tickets = [paid if t.ticket_id == "T-0003" else t for t in without(world, "T-0007")] + [new]
    delta = world.build(tickets, version=2, base=world.manifest)
    envelope = open_envelope(delta, world.trusted)
    assert envelope.kind == DELTA
    payload = bytes(envelope.payload)
    (count,) = struct.unpack_from("<I", payload)
    sessions = [s.id for s in envelope.header.sessions]
    zones = [z.id for z in envelope.header.zones]
    records, pos = [], 4
    for _ in range(count):
        record, pos = decode_record(payload, pos, sessions, zones)
        records.append(record)
    assert pos == len(payload)  # nothing else: no list of removed ids
    tomb = dataclasses.replace(entry(world, "T-0007"), status=Status.CANCELED)
    assert records == [new, paid, tomb]
    assert envelope.header.raw["delta"]["changed"] == count == 3
    assert encode_changes([tomb, new, paid], envelope.header.raw) == payload


def test_changes_member_describes_the_changes(world: World) -> None:
    plan = plan_delta(
        world.manifest.event_id, world.manifest.entries(), without(world, "T-0009"), SESSIONS, ZONES
    )
    _, header = peek_header(world.manifest_bytes)
    changes = encode_changes(plan.changed, header.raw)
    assert changes_member(world.manifest, changes, plan) == {
        "base_version": 1,
        "base_sha256": world.manifest.body_sha256,
        "changes_sha256": hashlib.sha256(changes).hexdigest(),
        "changes_size": len(changes),
        "changed": 1,
        "kept_canceled": 1,
    }


def test_a_delta_in_the_old_form_with_a_removed_list_is_refused(world: World) -> None:
    """The old payload began with a count of removed ids: read now, those are trailing bytes."""
    delta = world.build(without(world, "T-0009"), version=2, base=world.manifest)
    envelope = open_envelope(delta, world.trusted)
    header = dict(envelope.header.raw)
    old_form = struct.pack("<I", 0) + bytes(envelope.payload)  # "0 removed", then the records
    header["delta"] = dict(
        header["delta"], changes_sha256=hashlib.sha256(old_form).hexdigest(), changes_size=len(old_form)
    )
    forged = seal(header, DELTA, old_form, world.signer)
    with pytest.raises(ManifestRefused) as caught:
        apply_delta(world.manifest, forged, world.trusted)
    assert caught.value.reason == "malformed"


def test_a_delta_cannot_remove_a_ticket(world: World) -> None:
    """Even a signer cannot drop T-0004 with a delta: the signed result keeps every base ticket."""
    delta = world.build(without(world, "T-0004"), version=2, base=world.manifest)
    envelope = open_envelope(delta, world.trusted)
    header = dict(envelope.header.raw)
    # A full build of v2 without T-0004 at all: the body digest the forger would need.
    bare = open_manifest(world.build(without(world, "T-0004"), version=2), world.trusted)
    header["body"] = dict(bare.header.raw["body"])
    forged = seal(header, DELTA, bytes(envelope.payload), world.signer)
    with pytest.raises(ManifestRefused) as caught:
        apply_delta(world.manifest, forged, world.trusted)
    assert caught.value.reason == "wrong_base"
    assert "does not produce the signed result" in str(caught.value)


def test_applied_delta_has_every_base_ticket(world: World) -> None:
    _, v2 = step(world, world.manifest, without(world, "T-0001", "T-0002", "T-0009"))
    assert len(v2) == TICKET_COUNT
    assert {e.ticket_id for e in v2.entries()} == {t.ticket_id for t in world.tickets}
    assert v2.header.by_status == {
        "completed": 4,
        "pending": 1,
        "canceled": 4,
        "refunded": 1,
        "blocked": 1,
    }


def test_delta_to_a_version_without_legacy_codes(world: World) -> None:
    """Turning legacy codes off in v2 empties the ORDER-SEAT index of the applied result."""
    event = dataclasses.replace(world.event, legacy_codes=False)
    delta, v2 = step(world, world.manifest, world.tickets, event=event)
    assert peek_header(delta)[1].raw["delta"]["changed"] == 0  # no ticket changed, only the index
    assert (v2.header.legacy_codes, v2.header.legacy) == (False, 0)
    assert v2.body_sha256 == open_manifest(world.build(event=event, version=2), world.trusted).body_sha256
    assert evaluate("O-100-A2", v2, Checkpoint(), SAT_START).reason is Reason.UNKNOWN_TICKET
    assert evaluate("REF-SAT-FLOOR-0001", v2, Checkpoint(), SAT_START).reason is Reason.OK


def test_a_seat_reissued_under_a_new_id_opens_for_the_new_ticket(world: World) -> None:
    """T-0002 (O-100 seat A2) is reissued as T-0200 and its row dropped: the tombstone
    must not shadow the new ticket's order-seat text."""
    old = entry(world, "T-0002")
    reissued = dataclasses.replace(old, ticket_id="T-0200")
    tickets = [*without(world, "T-0002"), reissued]
    _, v2 = step(world, world.manifest, tickets)
    decision = evaluate("O-100-A2", v2, Checkpoint(), SAT_START)
    assert (decision.reason, decision.ticket_id) == (Reason.OK, "T-0200")
    tomb = v2.find_ticket("T-0002")
    assert tomb is not None
    assert tomb.status is Status.CANCELED
    assert (tomb.order_id, tomb.seat, tomb.code_hash) == ("", "", None)  # found by its id alone


def test_a_tombstone_gives_up_a_code_a_listed_ticket_now_uses(world: World) -> None:
    old = entry(world, "T-0001")
    assert old.code_hash is not None
    moved = dataclasses.replace(old, ticket_id="T-0100")
    _, v2 = step(world, world.manifest, [*without(world, "T-0001"), moved])
    found = v2.find_code("REF-SAT-FLOOR-0001")
    assert found is not None and found[0].ticket_id == "T-0100"
    tomb = v2.find_ticket("T-0001")
    assert tomb is not None and tomb.status is Status.CANCELED and tomb.code_hash is None
