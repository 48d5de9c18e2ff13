"""TUF's attack list against manifests: each attack is refused with its own reason, and only so.

``pytest.raises(ManifestRefused)`` lets any other exception fail the test, so each case
also checks that nothing but ``ManifestRefused`` escapes.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import struct
from collections.abc import Callable
from typing import Any

import pytest

from gate_daemon.core.delta import apply_delta, encode_changes
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.manifest import (
    DELTA,
    FULL,
    MAX_HEADER,
    accept_manifest,
    check_fresh,
    check_successor,
    open_manifest,
    peek_header,
    seal,
)
from gate_daemon.core.ticket_record import Status, TicketEntry
from gate_daemon.core.ticket_table import encode_body
from gate_daemon.errors import ManifestRefused
from gate_daemon.provision.event import load_event
from gate_daemon.store.manifest_file import read_manifest
from tests.support import EVENT_TOML, EXPIRES, ISSUED, World, flip

PREAMBLE = 17  # magic 8, kind 1, key id 4, header length 4


def parts(data: bytes) -> tuple[bytes, dict[str, Any], bytes]:
    """Kind, header (as a dict) and payload of a manifest file."""
    (hlen,) = struct.unpack_from("<I", data, 13)
    kind, header = peek_header(data)
    return kind, copy.deepcopy(header.raw), data[PREAMBLE + hlen + 64 :]


def header_span(data: bytes) -> range:
    (hlen,) = struct.unpack_from("<I", data, 13)
    return range(PREAMBLE, PREAMBLE + hlen)


def refused(reason: str, call: Callable[..., object], *args: object) -> ManifestRefused:
    with pytest.raises(ManifestRefused) as caught:
        call(*args)
    assert caught.value.reason == reason, str(caught.value)
    return caught.value


# ------------------------------------------------------------------ tampering


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_tampered_header_byte(world: World, where: str) -> None:
    span = header_span(world.manifest_bytes)
    index = {"first": span.start, "middle": (span.start + span.stop) // 2, "last": span.stop - 1}[where]
    refused("bad_signature", open_manifest, flip(world.manifest_bytes, index), world.trusted)


def test_every_header_byte_is_covered_by_the_signature(world: World) -> None:
    for index in header_span(world.manifest_bytes):
        refused("bad_signature", open_manifest, flip(world.manifest_bytes, index, 0x20), world.trusted)


def test_tampered_signature_byte(world: World) -> None:
    index = header_span(world.manifest_bytes).stop + 10
    refused("bad_signature", open_manifest, flip(world.manifest_bytes, index), world.trusted)


@pytest.mark.parametrize("offset", [0, 1, 100, 500, -1])
def test_tampered_body_byte(world: World, offset: int) -> None:
    body_start = header_span(world.manifest_bytes).stop + 64
    index = body_start + offset if offset >= 0 else len(world.manifest_bytes) + offset
    err = refused("tampered", open_manifest, flip(world.manifest_bytes, index), world.trusted)
    assert "does not match the signed digest" in str(err)


def test_tampered_body_on_disk_is_refused_by_read_manifest(world: World) -> None:
    world.manifest_path.write_bytes(flip(world.manifest_bytes, len(world.manifest_bytes) - 3))
    refused("tampered", read_manifest, world.manifest_path, world.trusted)


@pytest.mark.parametrize(
    ("cut", "reason"),
    [(0, "malformed"), (5, "malformed"), (PREAMBLE, "malformed"), (200, "malformed"), (-64, "tampered")],
)
def test_truncated_file(world: World, cut: int, reason: str) -> None:
    data = world.manifest_bytes[:cut]
    refused(reason, open_manifest, data, world.trusted)


def test_truncated_by_one_byte(world: World) -> None:
    refused("tampered", open_manifest, world.manifest_bytes[:-1], world.trusted)


def test_empty_file_on_disk(world: World) -> None:
    world.manifest_path.write_bytes(b"")
    refused("malformed", read_manifest, world.manifest_path, world.trusted)


def test_missing_file_is_unreadable(world: World) -> None:
    err = refused("unreadable", read_manifest, world.dir / "nope.gdm", world.trusted)
    assert "nope.gdm" in str(err)


@pytest.mark.parametrize("extra", [b"\x00", b"more bytes", b"\x00" * 4096])
def test_extra_bytes_appended(world: World, extra: bytes) -> None:
    refused("tampered", open_manifest, world.manifest_bytes + extra, world.trusted)


def test_not_a_manifest_at_all(world: World) -> None:
    refused("malformed", open_manifest, b"GDMANIF2" + world.manifest_bytes[8:], world.trusted)
    refused("malformed", open_manifest, b"%PDF-1.7\n" + b"\x00" * 200, world.trusted)


def test_unknown_kind_byte(world: World) -> None:
    data = world.manifest_bytes[:8] + b"X" + world.manifest_bytes[9:]
    refused("malformed", open_manifest, data, world.trusted)


def test_oversized_header_length(world: World) -> None:
    data = world.manifest_bytes[:13] + struct.pack("<I", MAX_HEADER + 1) + world.manifest_bytes[17:]
    refused("malformed", open_manifest, data, world.trusted)


@pytest.mark.parametrize("delta", [-1, 1])
def test_header_length_off_by_one(world: World, delta: int) -> None:
    (hlen,) = struct.unpack_from("<I", world.manifest_bytes, 13)
    data = world.manifest_bytes[:13] + struct.pack("<I", hlen + delta) + world.manifest_bytes[17:]
    refused("bad_signature", open_manifest, data, world.trusted)


# ------------------------------------------------------------------ keys


def test_verified_with_the_wrong_key(world: World) -> None:
    refused("unknown_key", open_manifest, world.manifest_bytes, [world.issuer.public])
    refused("unknown_key", open_manifest, world.manifest_bytes, [])


def test_signed_by_an_untrusted_key(world: World) -> None:
    data = world.build(key=SecretKey.generate())
    err = refused("unknown_key", open_manifest, data, world.trusted)
    assert "not trusted" in str(err)


def test_trusted_among_several_keys(world: World) -> None:
    keys = [SecretKey.generate().public, world.signer.public, SecretKey.generate().public]
    assert open_manifest(world.manifest_bytes, keys).version == 1


def test_untrusted_signature_with_the_trusted_key_id_forged(world: World) -> None:
    attacker = SecretKey.generate()
    _, header, body = parts(world.manifest_bytes)
    header["signer"] = world.signer.public.kid  # claims to be the trusted signer throughout
    header["revoked"] = []
    forged = seal(header, FULL, body, attacker)
    forged = forged[:9] + world.signer.public.kid_bytes + forged[13:]
    refused("bad_signature", open_manifest, forged, world.trusted)


def test_signer_named_in_header_must_match_the_file(world: World) -> None:
    _, header, body = parts(world.manifest_bytes)
    header["signer"] = "00000000"
    data = seal(header, FULL, body, world.signer)
    err = refused("malformed", open_manifest, data, world.trusted)
    assert "different signer" in str(err)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda h: h.update(format=2),
        lambda h: h.pop("body"),
        lambda h: h.update(version=-1),
        lambda h: h.update(version=True),
        lambda h: h.update(event=["demo-2026"]),
        lambda h: h.update(by_status=[]),
        lambda h: h.update(ticket_keys=["ed25519:not-base64!"]),
        lambda h: h["sessions"][0].pop("starts_at"),
        lambda h: h["body"].update(tickets=h["body"]["tickets"] + 1),
        lambda h: h["body"].update(blob=h["body"]["blob"] - 8),
        lambda h: h.pop("legacy_codes"),  # required: no default that could turn them back on
        lambda h: h.update(legacy_codes=1),
        lambda h: h.update(legacy_codes="false"),
        lambda h: h.update(legacy_codes=None),
    ],
)
def test_signed_but_malformed_header(world: World, breakage: Callable[[dict[str, Any]], object]) -> None:
    _, header, body = parts(world.manifest_bytes)
    breakage(header)
    refused("malformed", open_manifest, seal(header, FULL, body, world.signer), world.trusted)


# ------------------------------------------------------------------ freshness and rollback


def test_expired(world: World) -> None:
    check_fresh(world.manifest, EXPIRES)  # still good at the very second
    err = refused("expired", check_fresh, world.manifest, EXPIRES + 1)
    assert "2026-11-23T23:30:00Z" in str(err)
    refused("expired", check_fresh, world.manifest.header, EXPIRES + 86400)


def test_rollback_to_a_lower_version(world: World) -> None:
    refused("rollback", check_successor, world.manifest, 2)
    refused("rollback", check_successor, world.manifest.header, 7, world.manifest.body_sha256)


def test_same_version_with_different_content(world: World) -> None:
    other = open_manifest(world.build(world.tickets[:-1]), world.trusted)
    assert other.version == world.manifest.version
    err = refused("rollback", check_successor, other, 1, world.manifest.body_sha256)
    assert "reused" in str(err)


def test_same_version_same_content_and_newer_versions_pass(world: World) -> None:
    check_successor(world.manifest, 1, world.manifest.body_sha256)
    check_successor(world.manifest, 1)
    check_successor(world.manifest, 0)
    newer = open_manifest(world.build(version=5), world.trusted)
    check_successor(newer, 1, world.manifest.body_sha256)


# ------------------------------------------------------------------ accept_manifest: all of it in one call


def test_accept_manifest_returns_the_verified_manifest(world: World) -> None:
    accepted = accept_manifest(world.manifest_bytes, world.trusted, now=ISSUED)
    assert accepted.version == 1
    assert accepted.body_sha256 == world.manifest.body_sha256
    assert accepted.find_ticket("T-0001") == world.manifest.find_ticket("T-0001")
    # The very same manifest again (a restart), and a newer one.
    again = accept_manifest(
        world.manifest_bytes,
        world.trusted,
        now=EXPIRES,
        last_version=1,
        last_sha256=world.manifest.body_sha256,
    )
    assert again.version == 1
    newer = accept_manifest(
        world.build(version=3),
        world.trusted,
        now=ISSUED,
        last_version=1,
        last_sha256=world.manifest.body_sha256,
    )
    assert newer.version == 3


def test_accept_manifest_refuses_an_expired_one(world: World) -> None:
    err = refused("expired", lambda: accept_manifest(world.manifest_bytes, world.trusted, now=EXPIRES + 1))
    assert "2026-11-23T23:30:00Z" in str(err)


def test_accept_manifest_refuses_a_rollback(world: World) -> None:
    err = refused(
        "rollback", lambda: accept_manifest(world.manifest_bytes, world.trusted, now=ISSUED, last_version=2)
    )
    assert "older than accepted version 2" in str(err)


def test_accept_manifest_refuses_the_same_version_with_other_content(world: World) -> None:
    other = world.build(world.tickets[:-1])
    err = refused(
        "rollback",
        lambda: accept_manifest(
            other, world.trusted, now=ISSUED, last_version=1, last_sha256=world.manifest.body_sha256
        ),
    )
    assert "reused" in str(err)


def test_accept_manifest_verifies_before_anything_else(world: World) -> None:
    tampered = flip(world.manifest_bytes, len(world.manifest_bytes) - 3)
    refused("tampered", lambda: accept_manifest(tampered, world.trusted, now=ISSUED))
    refused("unknown_key", lambda: accept_manifest(world.manifest_bytes, [world.issuer.public], now=ISSUED))
    # A forged file is refused as forged, even when it would also be stale or old.
    refused(
        "bad_signature",
        lambda: accept_manifest(
            flip(world.manifest_bytes, PREAMBLE + 3), world.trusted, now=EXPIRES + 1, last_version=9
        ),
    )
    delta = world.build(version=2, base=world.manifest)
    refused("malformed", lambda: accept_manifest(delta, world.trusted, now=ISSUED))


# ------------------------------------------------------------------ a corrupt record from a trusted signer


def _corrupt_body(world: World, ticket_id: str, at: int, value: bytes) -> bytes:
    """The world's manifest with bytes of one record replaced, re-signed by the trusted signer.

    Only a faulty builder with the real key can make this: the signature and digests are good.
    """
    tickets = sorted(world.tickets, key=lambda t: t.ticket_id.encode())
    number = [t.ticket_id for t in tickets].index(ticket_id)
    body = encode_body(tickets, ["sat", "sun"], ["floor", "balcony"], legacy_codes=True)
    n = body.tickets
    (offset,) = struct.unpack_from("<I", body.data, 4 * number)
    record = 4 * n + (-4 * n) % 8 + offset
    data = bytearray(body.data)
    data[record + at : record + at + len(value)] = value
    _, header, _ = parts(world.manifest_bytes)
    assert header["body"]["sha256"] == body.sha256
    header["body"]["sha256"] = hashlib.sha256(data).hexdigest()
    return seal(header, FULL, bytes(data), world.signer)


SESSION_INDEX = 3  # record: u8 status, u8 entries, u8 flags, u16 session index, u16 zone index
STATUS = 0


@pytest.mark.parametrize(
    ("at", "value"),
    [
        (SESSION_INDEX, struct.pack("<H", 7)),
        (SESSION_INDEX + 2, struct.pack("<H", 0x1234)),
        (STATUS, b"\x09"),
    ],
    ids=["session-index", "zone-index", "status"],
)
def test_corrupt_record_is_refused_as_malformed_on_lookup(world: World, at: int, value: bytes) -> None:
    manifest = open_manifest(_corrupt_body(world, "T-0002", at, value), world.trusted)  # verifies
    err = refused("malformed", manifest.find_ticket, "T-0002")
    assert "corrupt" in str(err)
    refused("malformed", manifest.find_code, "O-100-A2")  # T-0002's order-seat text
    with pytest.raises(ManifestRefused) as caught:
        list(manifest.entries())
    assert caught.value.reason == "malformed"
    # The other records still read.
    assert manifest.find_ticket("T-0001") == world.manifest.find_ticket("T-0001")
    assert manifest.find_code("REF-SAT-FLOOR-0001") is not None


def test_corrupt_record_of_a_reference_code(world: World) -> None:
    manifest = open_manifest(_corrupt_body(world, "T-0001", SESSION_INDEX, b"\xfe\xff"), world.trusted)
    refused("malformed", manifest.find_code, "REF-SAT-FLOOR-0001")
    refused("malformed", manifest.find_ticket, "T-0001")


# ------------------------------------------------------------------ deltas


@pytest.fixture
def delta(world: World) -> bytes:
    """A real delta from version 1 to 2: one ticket's row dropped (kept, canceled), one added."""
    tickets = [*world.tickets[1:], TicketEntry("T-0200", order_id="O-300", seat="X1")]
    return world.build(tickets, version=2, base=world.manifest)


def test_delta_applied_to_a_base_with_another_version(world: World, delta: bytes) -> None:
    v2 = open_manifest(world.build(version=2), world.trusted)
    err = refused("wrong_base", apply_delta, v2, delta, world.trusted)
    assert "version 1" in str(err)


def test_delta_applied_to_the_same_version_with_other_content(world: World, delta: bytes) -> None:
    other_v1 = open_manifest(world.build(world.tickets[:-2]), world.trusted)
    refused("wrong_base", apply_delta, other_v1, delta, world.trusted)


def test_delta_applied_to_another_event(world: World, delta: bytes) -> None:
    path = world.dir / "other.toml"
    path.write_text(EVENT_TOML.replace('id = "demo-2026"', 'id = "other-2026"'))
    other = open_manifest(world.build(event=load_event(path)), world.trusted)
    err = refused("wrong_base", apply_delta, other, delta, world.trusted)
    assert "other-2026" in str(err)


def test_delta_whose_changes_do_not_produce_the_signed_result(world: World, delta: bytes) -> None:
    _, header, _ = parts(delta)
    # A well-formed change, but not the one the signed body needs.
    wrong = encode_changes([dataclasses.replace(world.tickets[1], status=Status.CANCELED)], header)
    header["delta"]["changes_sha256"] = hashlib.sha256(wrong).hexdigest()
    header["delta"]["changes_size"] = len(wrong)
    forged = seal(header, DELTA, wrong, world.signer)
    refused("wrong_base", apply_delta, world.manifest, forged, world.trusted)


def test_delta_that_goes_back_a_version(world: World, delta: bytes) -> None:
    _, header, changes = parts(delta)
    header["version"] = 1
    replay = seal(header, DELTA, changes, world.signer)
    refused("rollback", apply_delta, world.manifest, replay, world.trusted)


def test_delta_with_tampered_changes(world: World, delta: bytes) -> None:
    refused("tampered", apply_delta, world.manifest, flip(delta, len(delta) - 2), world.trusted)
    refused("tampered", apply_delta, world.manifest, delta + b"\x00", world.trusted)


def test_delta_with_tampered_header(world: World, delta: bytes) -> None:
    index = header_span(delta).start + 30
    refused("bad_signature", apply_delta, world.manifest, flip(delta, index), world.trusted)


def test_delta_signed_by_an_untrusted_key(world: World, delta: bytes) -> None:
    refused("unknown_key", apply_delta, world.manifest, delta, [world.issuer.public])


def test_delta_where_a_full_manifest_is_expected(world: World, delta: bytes) -> None:
    err = refused("malformed", open_manifest, delta, world.trusted)
    assert "delta" in str(err)
    path = world.dir / "delta.gdm"
    path.write_bytes(delta)
    refused("malformed", read_manifest, path, world.trusted)


def test_full_manifest_where_a_delta_is_expected(world: World) -> None:
    full_v2 = world.build(version=2)
    err = refused("malformed", apply_delta, world.manifest, full_v2, world.trusted)
    assert "not a delta" in str(err)


def test_kind_byte_flipped_between_full_and_delta(world: World, delta: bytes) -> None:
    as_delta = world.manifest_bytes[:8] + DELTA + world.manifest_bytes[9:]
    refused("malformed", apply_delta, world.manifest, as_delta, world.trusted)
    # A delta relabelled as full: its changes do not match the signed body.
    as_full = delta[:8] + FULL + delta[9:]
    refused("tampered", open_manifest, as_full, world.trusted)
