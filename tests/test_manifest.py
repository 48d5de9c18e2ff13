"""Manifests: full builds, lookups by id / reference code / ORDER-SEAT, and deltas."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gate_daemon.core.delta import apply_delta
from gate_daemon.core.manifest import DELTA, FULL, open_envelope, open_manifest, peek_header
from gate_daemon.core.ticket_record import Status, TicketEntry
from gate_daemon.core.ticket_table import encode_body
from gate_daemon.core.tokens import PayloadFormat
from gate_daemon.provision.build import MAX_VERSION, BuildError
from gate_daemon.provision.event import load_event
from gate_daemon.provision.tickets import load_tickets
from gate_daemon.store.manifest_file import apply_delta_file, read_manifest
from tests.support import (
    BY_STATUS,
    EVENT_TOML,
    EXPIRES,
    ISSUED,
    SAT_END,
    SAT_START,
    SUN_START,
    TICKET_COUNT,
    World,
    entry,
)


def test_header_describes_the_event(world: World) -> None:
    h = world.manifest.header
    assert (h.event_id, h.event_name, h.version) == ("demo-2026", "Demo Night", 1)
    assert (h.issued_at, h.expires_at) == (ISSUED, EXPIRES)
    assert h.signer == world.signer.public.kid
    assert [(s.id, s.starts_at, s.ends_at) for s in h.sessions] == [
        ("sat", SAT_START, SAT_END),
        ("sun", SUN_START, h.sessions[1].ends_at),
    ]
    assert [s.entry_opens_minutes for s in h.sessions] == [60, 30]
    assert [z.id for z in h.zones] == ["floor", "balcony"]
    assert h.ticket_keys == (world.issuer.public,)
    assert [(g.id, g.key) for g in h.gates] == [("north-1", world.gate.public)]
    assert h.revoked == frozenset({"T-REV"})
    assert h.by_status == BY_STATUS
    # 11 tickets; T-0001, T-0005 and T-SUN have reference codes. T-0001 and T-SUN also
    # have an order and seat, but a ticket with a code does not open by its ORDER-SEAT
    # text; T-0005 has no seat and T-0009 no order: 7 order-seat texts are left.
    assert (h.tickets, h.codes, h.legacy) == (TICKET_COUNT, 3, 7)
    assert h.legacy_codes is True
    assert h.raw["legacy_codes"] is True
    assert len(world.manifest) == TICKET_COUNT


def test_every_ticket_is_found_by_id(world: World) -> None:
    for ticket in world.tickets:
        assert world.manifest.find_ticket(ticket.ticket_id) == ticket
    assert world.manifest.find_ticket("T-9999") is None
    assert world.manifest.find_ticket("t-0001") is None
    assert world.manifest.find_ticket("T" * 300) is None


def test_entries_returns_every_ticket_in_id_order(world: World) -> None:
    listed = list(world.manifest.entries())
    assert listed == sorted(world.tickets, key=lambda t: t.ticket_id.encode())
    assert len(listed) == TICKET_COUNT


def test_reference_code_is_found_by_its_raw_text(world: World) -> None:
    found = world.manifest.find_code("REF-SAT-FLOOR-0001")
    assert found == (entry(world, "T-0001"), "reference")
    assert world.manifest.find_code("REF-SUNDAY-FLOOR-77") == (entry(world, "T-SUN"), "reference")
    assert world.manifest.find_code("ref-sat-floor-0001") is None
    assert world.manifest.find_code("REF-SAT-FLOOR-0002") is None


def test_legacy_order_seat_text_is_found(world: World) -> None:
    assert world.manifest.find_code("O-100-A2") == (entry(world, "T-0002"), "legacy")
    assert world.manifest.find_code("O-105-C2") == (entry(world, "T-0007"), "legacy")
    assert world.manifest.find_code("O-100-A3") is None
    # T-0001 (O-100, A1) and T-SUN (O-108, D2) have reference codes: their guessable
    # ORDER-SEAT texts name nothing.
    assert world.manifest.find_code("O-100-A1") is None
    assert world.manifest.find_code("O-108-D2") is None
    assert world.manifest.find_code("O-103-") is None  # T-0005 has no seat: no legacy text
    assert world.manifest.find_code("T-0001") is None  # a ticket id is not a code


def test_the_manifest_holds_no_reference_code_in_clear(world: World) -> None:
    for code in (b"REF-SAT-FLOOR-0001", b"REF-REFUNDED-0005", b"REF-SUNDAY-FLOOR-77"):
        assert code not in world.manifest_bytes
    stored = entry(world, "T-0001").code_hash
    assert stored is not None and len(stored) == 16
    assert stored in world.manifest_bytes


def test_bytes_and_mapped_file_read_alike(world: World) -> None:
    from_bytes = open_manifest(world.manifest_bytes, world.trusted)
    from_file = read_manifest(world.manifest_path, world.trusted)
    assert list(from_bytes.entries()) == list(from_file.entries())
    assert from_bytes.body_sha256 == from_file.body_sha256


def test_build_is_deterministic(world: World) -> None:
    again = load_tickets(world.tickets_path, world.event)
    assert world.build(list(reversed(again))) == world.build(again) == world.manifest_bytes


def test_peek_header_reads_without_keys(world: World) -> None:
    kind, header = peek_header(world.manifest_bytes)
    assert kind == FULL
    assert header.version == 1 and header.event_id == "demo-2026"


def test_a_larger_manifest_finds_everything(world: World) -> None:
    tickets = [
        TicketEntry(
            ticket_id=f"T-{i:06d}",
            order_id=f"O-{i // 4}",
            seat=f"S{i % 4}",
            status=list(Status)[i % 5],
            session=("sat", "sun", "")[i % 3],
            zone=("floor", "balcony", "")[i % 3],
            entries=1 + i % 5,
        )
        for i in range(3000)
    ]
    manifest = open_manifest(world.build(tickets), world.trusted)
    assert len(manifest) == 3000
    for ticket in tickets[::37]:
        assert manifest.find_ticket(ticket.ticket_id) == ticket
        assert manifest.find_code(f"{ticket.order_id}-{ticket.seat}") == (ticket, "legacy")
    assert list(manifest.entries()) == tickets


def test_build_refuses_bad_versions_and_lifetimes(world: World) -> None:
    for version in (0, -1, MAX_VERSION + 1):
        with pytest.raises(BuildError, match=f"version must be 1 to {MAX_VERSION}, got {version}"):
            world.build(version=version)
    assert open_manifest(world.build(version=MAX_VERSION), world.trusted).version == MAX_VERSION
    with pytest.raises(BuildError, match="expired"):
        world.build(expires_at=ISSUED)
    with pytest.raises(BuildError, match="greater than the base"):
        world.build(version=1, base=world.manifest)


# ------------------------------------------------------------------------- deltas

EVENT_V2 = (
    EVENT_TOML.replace('name = "Sunday"', 'name = "Sunday (late show)"')
    .replace("ends_at = 2026-11-22T23:30:00Z", "ends_at = 2026-11-23T00:30:00Z")
    .replace(
        '[[sessions]]\nid = "sat"',
        '[[sessions]]\nid = "fri"\nname = "Friday"\nstarts_at = 2026-11-20T19:00:00Z\n'
        'ends_at = 2026-11-20T23:00:00Z\n\n[[sessions]]\nid = "sat"',
        1,
    )
)


def canceled(world: World, *ticket_ids: str) -> list[TicketEntry]:
    """The tombstones a delta keeps for these v1 tickets missing from a later tickets.csv."""
    return [dataclasses.replace(entry(world, tid), status=Status.CANCELED) for tid in ticket_ids]


@pytest.fixture
def v2(world: World) -> tuple:
    """Version 2 inputs: a new first session, a changed one, and added/dropped/changed tickets.

    T-0009's row is dropped: built with the v1 base, version 2 keeps it as canceled.
    """
    path = world.dir / "event-v2.toml"
    path.write_text(EVENT_V2)
    event = load_event(path)
    assert [s.id for s in event.sessions] == ["fri", "sat", "sun"]
    tickets = [t for t in world.tickets if t.ticket_id != "T-0009"]  # removed
    tickets = [
        dataclasses.replace(t, status=Status.COMPLETED) if t.ticket_id == "T-0003" else t for t in tickets
    ]  # paid now
    tickets = [dataclasses.replace(t, zone="floor") if t.ticket_id == "T-0002" else t for t in tickets]
    tickets.append(TicketEntry("T-0100", order_id="O-200", seat="F1", session="fri", zone="floor"))
    return event, tickets


def test_delta_carries_only_the_changes(world: World, v2: tuple) -> None:
    event, tickets = v2
    delta = world.build(tickets, event=event, version=2, base=world.manifest)
    full = world.build(tickets, event=event, version=2)
    assert delta[8:9] == DELTA
    kind, header = peek_header(delta)
    assert kind == DELTA
    # T-0002 moved, T-0003 paid, T-0100 new, and T-0009 (dropped) now canceled.
    assert header.raw["delta"] == {
        "base_version": 1,
        "base_sha256": world.manifest.body_sha256,
        "changes_sha256": header.changes_sha256,
        "changes_size": header.changes_size,
        "changed": 4,
        "kept_canceled": 1,
    }
    assert header.tickets == TICKET_COUNT + 1  # nothing is removed
    assert header.base_version == 1
    assert header.base_sha256 == world.manifest.body_sha256
    assert len(delta) < len(full)


def test_applied_delta_equals_a_full_build(world: World, v2: tuple) -> None:
    event, tickets = v2
    delta = world.build(tickets, event=event, version=2, base=world.manifest)
    # The full build of what version 2 holds: the listed tickets and T-0009's tombstone.
    full_tickets = [*tickets, *canceled(world, "T-0009")]
    full = open_manifest(world.build(full_tickets, event=event, version=2), world.trusted)

    produced = apply_delta(world.manifest, delta, world.trusted)
    applied = open_manifest(produced, world.trusted)  # verifies on its own

    assert applied.version == 2
    assert applied.body_sha256 == full.body_sha256
    assert bytes(applied.envelope.payload) == bytes(full.envelope.payload)
    assert list(applied.entries()) == list(full.entries())
    header = dict(applied.header.raw)
    assert header.pop("delta")["base_version"] == 1
    assert header == full.header.raw
    assert [s.name for s in applied.header.sessions] == ["Friday", "Saturday", "Sunday (late show)"]

    assert applied.find_ticket("T-0009") == TicketEntry("T-0009", Status.CANCELED)
    assert applied.header.by_status["canceled"] == BY_STATUS["canceled"] + 1
    assert applied.find_ticket("T-0003").status is Status.COMPLETED
    assert applied.find_code("O-100-A2") == (full.find_ticket("T-0002"), "legacy")
    assert applied.find_ticket("T-0002").zone == "floor"
    assert applied.find_ticket("T-0100").session == "fri"
    # Unchanged tickets keep their session although its index moved.
    assert applied.find_ticket("T-0001").session == "sat"
    assert applied.find_ticket("T-SUN").session == "sun"
    assert applied.find_code("REF-SAT-FLOOR-0001") == (full.find_ticket("T-0001"), "reference")


def test_delta_from_a_file_through_the_store(world: World, v2: tuple) -> None:
    event, tickets = v2
    path = world.dir / "v1-to-v2.gdm"
    path.write_bytes(world.build(tickets, event=event, version=2, base=world.manifest))
    produced = apply_delta_file(world.manifest, path, world.trusted)
    out = world.dir / "v2.gdm"
    out.write_bytes(produced)
    applied = read_manifest(out, world.trusted)
    assert applied.version == 2 and len(applied) == TICKET_COUNT + 1
    assert applied.find_ticket("T-0009").status is Status.CANCELED


def test_empty_delta_moves_the_version_only(world: World) -> None:
    delta = world.build(version=2, base=world.manifest)
    assert peek_header(delta)[1].raw["delta"] == {
        "base_version": 1,
        "base_sha256": world.manifest.body_sha256,
        "changes_sha256": peek_header(delta)[1].changes_sha256,
        "changes_size": 4,  # u32 count 0, no records
        "changed": 0,
        "kept_canceled": 0,
    }
    assert bytes(open_envelope(delta, world.trusted).payload) == b"\x00\x00\x00\x00"
    applied = open_manifest(apply_delta(world.manifest, delta, world.trusted), world.trusted)
    assert applied.version == 2
    assert applied.body_sha256 == world.manifest.body_sha256


def test_chained_deltas(world: World, v2: tuple) -> None:
    event, tickets = v2
    v2_file = apply_delta(
        world.manifest, world.build(tickets, event=event, version=2, base=world.manifest), world.trusted
    )
    m2 = open_manifest(v2_file, world.trusted)
    tickets3 = [*tickets, TicketEntry("T-0101", status=Status.PENDING)]
    m3 = open_manifest(
        apply_delta(m2, world.build(tickets3, event=event, version=3, base=m2), world.trusted), world.trusted
    )
    assert m3.version == 3
    assert m3.find_ticket("T-0101").status is Status.PENDING
    # T-0009 is still missing from the list: still canceled, and not a change any more.
    assert m3.find_ticket("T-0009").status is Status.CANCELED
    assert (
        peek_header(world.build(tickets3, event=event, version=3, base=m2))[1].raw["delta"]["kept_canceled"]
        == 1
    )
    full3 = [*tickets3, *canceled(world, "T-0009")]
    assert (
        m3.body_sha256 == open_manifest(world.build(full3, event=event, version=3), world.trusted).body_sha256
    )


def test_delta_envelope_verifies_before_application(world: World) -> None:
    delta = world.build(version=2, base=world.manifest)
    envelope = open_envelope(delta, world.trusted)
    assert envelope.kind == DELTA
    assert envelope.header.changes_size == len(envelope.payload)


def test_build_refuses_a_base_from_another_event(world: World, tmp_path: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text(EVENT_TOML.replace('id = "demo-2026"', 'id = "other-2026"'))
    with pytest.raises(BuildError, match="base manifest is for event demo-2026"):
        world.build(event=load_event(other), version=2, base=world.manifest)


# ------------------------------------------------------------------ legacy ORDER-SEAT codes


def test_without_legacy_codes_no_order_seat_text_opens_anything(world: World) -> None:
    event = dataclasses.replace(world.event, legacy_codes=False)
    manifest = open_manifest(world.build(event=event), world.trusted)
    h = manifest.header
    assert (h.legacy_codes, h.raw["legacy_codes"], h.legacy) == (False, False, 0)
    assert (h.tickets, h.codes) == (TICKET_COUNT, 3)
    for ticket in world.tickets:
        text = f"{ticket.order_id}-{ticket.seat}"
        assert manifest.find_code(text) is None, text
        assert manifest.find_ticket(ticket.ticket_id) == ticket  # the tickets are all there
    assert manifest.find_code("REF-SAT-FLOOR-0001") == (entry(world, "T-0001"), PayloadFormat.REFERENCE)
    # The same tickets and the index alone differ.
    assert list(manifest.entries()) == list(world.manifest.entries())
    assert manifest.body_sha256 != world.manifest.body_sha256


def test_encode_body_takes_legacy_codes_by_keyword_only(world: World) -> None:
    sessions, zones = ["sat", "sun"], ["floor", "balcony"]
    with pytest.raises(TypeError):
        encode_body(world.tickets, sessions, zones)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        encode_body(world.tickets, sessions, zones, True)  # type: ignore[misc]
    on = encode_body(world.tickets, sessions, zones, legacy_codes=True)
    off = encode_body(world.tickets, sessions, zones, legacy_codes=False)
    assert (on.tickets, on.codes, on.legacy) == (TICKET_COUNT, 3, 7)
    assert (off.tickets, off.codes, off.legacy) == (TICKET_COUNT, 3, 0)
    assert on.sha256 == world.manifest.body_sha256
    assert len(off.data) < len(on.data)


def test_find_code_names_the_format_that_matched(world: World) -> None:
    reference = world.manifest.find_code("REF-SAT-FLOOR-0001")
    legacy = world.manifest.find_code("O-100-A2")
    assert reference is not None and legacy is not None
    assert reference[1] is PayloadFormat.REFERENCE
    assert legacy[1] is PayloadFormat.LEGACY
    assert isinstance(reference[1], str) and reference[1] == "reference"  # a StrEnum
