"""Signed ticket payloads: encoding, parsing, size, QR alphabet, and what tampering gets."""

from __future__ import annotations

import base64

import pytest

from gate_daemon.core.decision import Checkpoint, evaluate
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.reasons import Reason
from gate_daemon.core.tokens import (
    REENTRY,
    SIGNED_PREFIX,
    OpaqueCode,
    PayloadError,
    PayloadFormat,
    SignedTicket,
    TicketClaims,
    encode_signed,
    event_tag,
    parse_entries,
    parse_payload,
)
from tests.support import EVENT_ID, QR_ALPHANUMERIC, SAT_END, SAT_OPENS, SAT_START, World

B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def test_round_trip_with_every_optional_field() -> None:
    key = SecretKey.generate()
    claims = TicketClaims(
        ticket_id="T-000123",
        event_tag=event_tag(EVENT_ID),
        entries=3,
        session="sat",
        zone="balcony",
        valid_from=SAT_OPENS,
        valid_until=SAT_END,
    )
    parsed = parse_payload(encode_signed(claims, key))
    assert isinstance(parsed, SignedTicket)
    assert parsed.claims == claims
    assert parsed.kid == key.public.kid_bytes
    assert parsed.verify(key.public)
    assert not parsed.verify(SecretKey.generate().public)


def test_round_trip_with_no_optional_field() -> None:
    key = SecretKey.generate()
    claims = TicketClaims(ticket_id="Z", event_tag=event_tag(EVENT_ID))
    parsed = parse_payload(encode_signed(claims, key))
    assert isinstance(parsed, SignedTicket)
    assert parsed.claims == claims
    assert (parsed.claims.session, parsed.claims.zone) == ("", "")
    assert parsed.claims.valid_from is None and parsed.claims.valid_until is None


def test_re_entry_and_unicode_ids_round_trip() -> None:
    key = SecretKey.generate()
    claims = TicketClaims(ticket_id="Ticket-Ω-7", event_tag=event_tag(EVENT_ID), entries=0, zone="zoné")
    parsed = parse_payload(encode_signed(claims, key))
    assert isinstance(parsed, SignedTicket)
    assert parsed.claims == claims


def test_typical_payload_is_short_and_qr_alphanumeric(shared_world: World) -> None:
    typical = shared_world.sign("T-000123", session="sat", zone="floor")
    assert typical.startswith(SIGNED_PREFIX)
    assert len(typical) <= 160
    assert set(typical) <= QR_ALPHANUMERIC


def test_payload_with_every_field_stays_near_the_budget(shared_world: World) -> None:
    full = shared_world.sign(
        "T-000123", session="sat", zone="floor", entries=2, valid_from=SAT_OPENS, valid_until=SAT_END
    )
    # DESIGN.md: "at most ~160 characters"; both validity instants cost 13 more.
    assert len(full) <= 170
    assert set(full) <= QR_ALPHANUMERIC


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("ticket_id", "", "ticket id must be 1 to 64 bytes"),
        ("ticket_id", "x" * 65, "ticket id must be 1 to 64 bytes"),
        ("session", "s" * 17, "session must be 1 to 16 bytes"),
        ("zone", "z" * 17, "zone must be 1 to 16 bytes"),
        ("entries", 256, "entries must be 0"),
        ("entries", -1, "entries must be 0"),
        ("valid_from", -1, "valid_from is outside"),
        ("valid_until", 2**32, "valid_until is outside"),
    ],
)
def test_encode_refuses_claims_that_do_not_fit(field: str, value: object, message: str) -> None:
    claims = {"ticket_id": "T-1", "event_tag": event_tag(EVENT_ID), field: value}
    with pytest.raises(ValueError, match=message):
        encode_signed(TicketClaims(**claims), SecretKey.generate())  # type: ignore[arg-type]


def test_lowercase_payload_reads_the_same(shared_world: World) -> None:
    payload = shared_world.sign("T-0001")
    upper, lower = parse_payload(payload), parse_payload(payload.lower())
    assert isinstance(upper, SignedTicket) and isinstance(lower, SignedTicket)
    assert lower.claims == upper.claims and lower.signature == upper.signature


def test_non_signed_text_is_an_opaque_code() -> None:
    assert parse_payload("O-100-A1") == OpaqueCode("O-100-A1")
    assert parse_payload("REF-SAT-FLOOR-0001") == OpaqueCode("REF-SAT-FLOOR-0001")
    # Looks like the family but has no version digit: an ordinary code.
    assert parse_payload("GDX:ABC") == OpaqueCode("GDX:ABC")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "x" * 513,
        "caf\u00e9",
        "tab\tinside",
        "line\nbreak",
        "GD1:",
        "GD1:AAAA",
        "GD1:!!!!",
        "GD1:" + "A" * 9,
        "GD2:" + "A" * 140,
        "GD9:ANYTHING",
        "gd2:lower",
    ],
)
def test_unreadable_payloads_raise_payload_error(text: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_payload(text)
    assert caught.value.detail
    if len(text) > 8:
        assert text not in caught.value.detail  # never echo the payload


def test_unsupported_version_is_named(shared_world: World) -> None:
    payload = "GD2:" + shared_world.sign("T-0001")[len(SIGNED_PREFIX) :]
    with pytest.raises(PayloadError, match="unsupported signed ticket version 'GD2'"):
        parse_payload(payload)
    decision = evaluate(payload, shared_world.manifest, Checkpoint(), SAT_START)
    assert decision.reason is Reason.INVALID_PAYLOAD


def _raw(payload: str) -> bytes:
    body = payload[len(SIGNED_PREFIX) :]
    return base64.b32decode(body + "=" * (-len(body) % 8))


def _reencode(raw: bytes) -> str:
    return SIGNED_PREFIX + base64.b32encode(raw).decode().rstrip("=")


def test_unknown_flag_bits_are_refused(shared_world: World) -> None:
    raw = bytearray(_raw(shared_world.sign("T-0001")))
    raw[0] |= 0x80
    with pytest.raises(PayloadError, match="unknown flags"):
        parse_payload(_reencode(bytes(raw)))


def test_trailing_bytes_are_refused(shared_world: World) -> None:
    raw = _raw(shared_world.sign("T-0001"))
    signed, signature = raw[:-64], raw[-64:]
    with pytest.raises(PayloadError, match="trailing bytes"):
        parse_payload(_reencode(signed + b"\x00" + signature))


def test_non_utf8_ticket_id_is_refused(shared_world: World) -> None:
    raw = bytearray(_raw(shared_world.sign("T-0001")))
    raw[11] = 0xFF  # first byte of the ticket id (after the 10-byte head and its length)
    with pytest.raises(PayloadError, match="not UTF-8"):
        parse_payload(_reencode(bytes(raw)))


def test_signature_does_not_verify_after_a_byte_change(shared_world: World) -> None:
    parsed = parse_payload(shared_world.sign("T-0001"))
    assert isinstance(parsed, SignedTicket)
    for index in range(len(parsed.signed)):
        changed = bytearray(parsed.signed)
        changed[index] ^= 0x10
        forged = SignedTicket(parsed.claims, parsed.kid, bytes(changed), parsed.signature)
        assert not forged.verify(shared_world.issuer.public)


def test_tampering_any_character_is_denied(shared_world: World) -> None:
    """Replace every character of a real payload by every other QR character: never allowed."""
    world = shared_world
    payload = world.sign("T-7777", session="sat", zone="floor")
    assert evaluate(payload, world.manifest, Checkpoint(zone="floor"), SAT_START).reason is Reason.OK
    body_reasons: set[Reason] = set()
    for index, original in enumerate(payload):
        alphabet = B32 if index >= len(SIGNED_PREFIX) else "".join(sorted(QR_ALPHANUMERIC))
        for replacement in alphabet:
            if replacement == original:
                continue
            tampered = payload[:index] + replacement + payload[index + 1 :]
            decision = evaluate(tampered, world.manifest, Checkpoint(zone="floor"), SAT_START)
            if index < len(SIGNED_PREFIX):
                # A changed prefix is either an unsupported version or an unknown plain code.
                assert decision.reason in {Reason.INVALID_PAYLOAD, Reason.UNKNOWN_TICKET}, tampered
            else:
                # A changed key id byte cannot pick the key, so it is unknown_key.
                assert decision.reason in {
                    Reason.BAD_SIGNATURE,
                    Reason.INVALID_PAYLOAD,
                    Reason.UNKNOWN_KEY,
                }, (index, replacement, decision.reason)
                body_reasons.add(decision.reason)
    assert Reason.BAD_SIGNATURE in body_reasons
    assert Reason.INVALID_PAYLOAD in body_reasons


def test_ticket_from_a_key_the_event_does_not_list(shared_world: World) -> None:
    stranger = SecretKey.generate()
    payload = shared_world.sign("T-0001", key=stranger)
    decision = evaluate(payload, shared_world.manifest, Checkpoint(), SAT_START)
    assert decision.reason is Reason.UNKNOWN_KEY
    assert decision.format is PayloadFormat.SIGNED


def test_ticket_for_another_event(shared_world: World) -> None:
    payload = shared_world.sign("T-0001", event="other-event")
    decision = evaluate(payload, shared_world.manifest, Checkpoint(), SAT_START)
    assert decision.reason is Reason.WRONG_EVENT
    assert decision.ticket_id == "T-0001"


def test_only_the_canonical_base32_spelling_is_accepted(shared_world: World) -> None:
    payload = shared_world.sign("T-0001")
    raw = _raw(payload)
    assert len(raw) * 8 % 5, "this payload's last character must carry spare bits"
    twins = []
    for c in B32:
        text = payload[:-1] + c
        body = text[len(SIGNED_PREFIX) :]
        try:
            same = base64.b32decode(body + "=" * (-len(body) % 8)) == raw
        except ValueError:
            same = False
        if same and text != payload:
            twins.append(text)
    assert twins, "expected other spellings of the same bytes"
    for text in twins:
        with pytest.raises(PayloadError, match="canonical"):
            parse_payload(text)
    padded = payload + "=" * (-len(payload[len(SIGNED_PREFIX) :]) % 8)
    assert padded != payload
    with pytest.raises(PayloadError):
        parse_payload(padded)


# ------------------------------------------------------------------ entry policies and formats


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1),
        ("3", 3),
        ("255", 255),
        ("007", 7),
        (" 3 ", 3),
        ("reentry", REENTRY),
        ("REENTRY", REENTRY),
        ("ReEntry", REENTRY),
        ("", 1),  # the default
        ("  ", 1),
        ("0", None),
        ("256", None),
        ("-1", None),
        ("+1", None),
        ("1.0", None),
        ("many", None),
        ("re-entry", None),
        ("\u00b2", None),  # isdigit() but not a digit int() reads
        ("\u0663", None),  # an Arabic-Indic three: int() reads it, the policy does not
        ("1 0", None),
    ],
)
def test_parse_entries(text: str, value: int | None) -> None:
    assert parse_entries(text) == value
    assert REENTRY == 0


def test_payload_format_is_a_str_enum() -> None:
    assert [f.value for f in PayloadFormat] == ["signed", "reference", "legacy", "rotating", "pretix"]
    assert isinstance(PayloadFormat.SIGNED, str)
    assert PayloadFormat("legacy") is PayloadFormat.LEGACY
    assert f"{PayloadFormat.REFERENCE}" == "reference"
