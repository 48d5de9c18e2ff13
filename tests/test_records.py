"""Redemption records: the wire form round-trips, the origin's signature covers every field,
and ``parse_record`` answers anything else with a ``RecordError`` naming the field."""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import uuid as uuidlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gate_daemon.core.hlc import MAX_STAMP, Stamp
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.records import (
    DOMAIN,
    KINDS,
    MAX_SEQ,
    MAX_TEXT,
    MODES,
    RecordError,
    Redemption,
    parse_record,
)

#: The fields of the wire form, in the order ``Redemption`` declares them, and the signature.
FIELDS = tuple(f.name for f in dataclasses.fields(Redemption))
WIRE = (*FIELDS, "sig")
KEY = SecretKey.generate()
OTHER = SecretKey.generate()
WALL = 1_795_000_000.25


def record(**changes: Any) -> Redemption:
    """A valid entry record of gate-b, with ``changes``."""
    base = Redemption(
        uuid="0b7a3c2e-5d1f-4a8b-9c6d-7e8f9a0b1c2d",
        ticket_id="T-0001",
        kind="entry",
        slot=1,
        origin="gate-b",
        epoch="5f0c1d2e-aaaa-4bbb-8ccc-123456789abc",
        seq=7,
        hlc=Stamp(int(WALL * 1000), 3).packed,
        wall=WALL,
        operator="anna",
        mode="offline",
    )
    return dataclasses.replace(base, **changes)


def void(**changes: Any) -> Redemption:
    """A valid void record of gate-b."""
    values: dict[str, Any] = {"kind": "void", "slot": None, "voids": str(uuidlib.uuid4()), "seq": 8}
    return record(**{**values, **changes})


def wire(value: Redemption | None = None, **changes: Any) -> dict[str, Any]:
    """The wire form of ``value`` (signed by KEY), with raw ``changes`` applied to it."""
    value = value or record()
    out = value.wire(value.sign(KEY))
    out.update(changes)
    return out


def refused(value: object) -> RecordError:
    with pytest.raises(RecordError) as caught:
        parse_record(value)
    return caught.value


# ------------------------------------------------------------------ round trip


@pytest.mark.parametrize(
    "value",
    [
        record(),
        record(operator=None, mode="online"),
        record(kind="exit", slot=3),
        record(forced=True),
        void(),
        record(hlc=0, seq=MAX_SEQ, slot=MAX_SEQ, wall=0.0),
        record(ticket_id="é" * 32, origin="g" * MAX_TEXT, hlc=MAX_STAMP),
    ],
    ids=["entry", "online", "exit", "forced-with-slot", "void", "extremes-low", "extremes-high"],
)
def test_the_wire_form_round_trips_through_json(value: Redemption) -> None:
    signature = value.sign(KEY)
    sent = json.loads(json.dumps(value.wire(signature)))
    assert set(sent) == set(WIRE)
    back, sig = parse_record(sent)
    assert (back, sig) == (value, signature)
    assert back.signing_bytes() == value.signing_bytes()
    assert back.signed_by(KEY.public, sig)


def test_a_forced_entry_may_carry_no_slot() -> None:
    # docs/FORMATS.md: slot is "null for a void (and for a forced entry)".
    forced = record(forced=True, slot=None)
    back, sig = parse_record(json.loads(json.dumps(wire(forced))))
    assert back == forced and back.slot is None
    assert back.signed_by(KEY.public, sig)


def test_a_whole_number_wall_time_is_read_as_seconds() -> None:
    back, _ = parse_record(wire(wall=1_795_000_000))
    assert back.wall == 1_795_000_000.0 and isinstance(back.wall, float)


def test_signatures_are_deterministic() -> None:
    assert record().sign(KEY) == record().sign(KEY)
    assert len(base64.b64decode(record().sign(KEY))) == 64


# ------------------------------------------------------------------ what the signature covers


#: Another valid value for every field (kept valid so only the signature can tell).
CHANGED: dict[str, Any] = {
    "uuid": "0b7a3c2e-5d1f-4a8b-9c6d-7e8f9a0b1c2e",
    "ticket_id": "T-0002",
    "kind": "exit",
    "slot": 2,
    "origin": "gate-c",
    "epoch": "another-epoch",
    "seq": 8,
    "hlc": record().hlc + 1,
    "wall": WALL + 0.001,
    "operator": None,
    "mode": "online",
    "forced": True,
    "voids": None,
}


def test_every_field_has_a_changed_value_here() -> None:
    assert set(CHANGED) == set(FIELDS)


@pytest.mark.parametrize("field", FIELDS)
def test_the_signature_covers_every_field(field: str) -> None:
    original = record() if field != "voids" else void()
    signature = original.sign(KEY)
    new = CHANGED[field] if field != "voids" else str(uuidlib.uuid4())
    changed = dataclasses.replace(original, **{field: new})
    assert changed != original
    assert original.signed_by(KEY.public, signature)
    assert not changed.signed_by(KEY.public, signature)
    # And through the wire: the receiver parses the changed record fine, the signature fails.
    back, sig = parse_record(wire(original, **{field: new}))
    assert back == changed and not back.signed_by(KEY.public, sig)


def test_a_signature_is_only_the_origins_and_only_for_records() -> None:
    value = record()
    assert not value.signed_by(OTHER.public, value.sign(KEY))
    # The same bytes signed for another purpose (no domain, another domain) are not a record signature.
    plain = base64.b64encode(KEY.sign(b"", value.signing_bytes())).decode()
    other = base64.b64encode(KEY.sign(b"gate-daemon/peer-request/v1\x00", value.signing_bytes())).decode()
    assert not value.signed_by(KEY.public, plain)
    assert not value.signed_by(KEY.public, other)
    assert value.signed_by(KEY.public, base64.b64encode(KEY.sign(DOMAIN, value.signing_bytes())).decode())


@pytest.mark.parametrize(
    "signature",
    ["", "not base64!", "é" * 10, "A" * 87, "A" * 88, base64.b64encode(b"\0" * 63).decode(), "=" * 88],
)
def test_a_garbage_signature_is_just_not_the_origins(signature: str) -> None:
    assert record().signed_by(KEY.public, signature) is False


# ------------------------------------------------------------------ every refusal, named


@pytest.mark.parametrize("value", [None, [], "record", 3, 1.5, True, [wire()]])
def test_a_record_must_be_an_object(value: object) -> None:
    assert refused(value).field == "record"


def test_an_unknown_field_is_named() -> None:
    error = refused(wire(extra=1, another=2))
    assert error.field == "another" and "not a field" in error.detail


@pytest.mark.parametrize("field", WIRE)
def test_a_missing_field_is_named(field: str) -> None:
    value = wire()
    del value[field]
    assert refused(value).field == field


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kind": "enter"}, "kind"),
        ({"kind": None}, "kind"),
        ({"kind": ["entry"]}, "kind"),
        ({"mode": "Offline"}, "mode"),
        ({"mode": 1}, "mode"),
        # slots: a whole number from 1 for entries and exits
        ({"slot": 0}, "slot"),
        ({"slot": -1}, "slot"),
        ({"slot": 1.0}, "slot"),
        ({"slot": True}, "slot"),
        ({"slot": "1"}, "slot"),
        ({"slot": MAX_SEQ + 1}, "slot"),
        ({"slot": None}, "slot"),  # only a forced entry may have none
        ({"slot": None, "kind": "exit", "forced": True}, "slot"),
        # voids: only on a void
        ({"voids": str(uuidlib.uuid4())}, "voids"),
        ({"kind": "exit", "voids": str(uuidlib.uuid4())}, "voids"),
        # forced: a real boolean
        ({"forced": 1}, "forced"),
        ({"forced": "true"}, "forced"),
        ({"forced": None}, "forced"),
        # uuid: canonical form only
        ({"uuid": "0B7A3C2E-5D1F-4A8B-9C6D-7E8F9A0B1C2D"}, "uuid"),
        ({"uuid": "{0b7a3c2e-5d1f-4a8b-9c6d-7e8f9a0b1c2d}"}, "uuid"),
        ({"uuid": "urn:uuid:0b7a3c2e-5d1f-4a8b-9c6d-7e8f9a0b1c2d"}, "uuid"),
        ({"uuid": "0b7a3c2e5d1f4a8b9c6d7e8f9a0b1c2d"}, "uuid"),
        ({"uuid": "not-a-uuid"}, "uuid"),
        ({"uuid": ""}, "uuid"),
        ({"uuid": 12345}, "uuid"),
        ({"uuid": None}, "uuid"),
        # text: 1 to 64 bytes of printable text
        ({"ticket_id": ""}, "ticket_id"),
        ({"ticket_id": "T" * (MAX_TEXT + 1)}, "ticket_id"),
        ({"ticket_id": "é" * 33}, "ticket_id"),  # 33 characters, 66 bytes
        ({"ticket_id": "T-1\n"}, "ticket_id"),
        ({"ticket_id": "T\x00"}, "ticket_id"),
        ({"ticket_id": "T\ud800"}, "ticket_id"),  # a lone surrogate (from a "\ud800" escape)
        ({"ticket_id": 1}, "ticket_id"),
        ({"origin": ""}, "origin"),
        ({"origin": None}, "origin"),
        ({"origin": "gate\tb"}, "origin"),
        ({"epoch": "e" * (MAX_TEXT + 1)}, "epoch"),
        ({"epoch": []}, "epoch"),
        ({"operator": ""}, "operator"),
        ({"operator": "\x1b[31m"}, "operator"),
        ({"operator": False}, "operator"),
        # numbers in range
        ({"seq": 0}, "seq"),
        ({"seq": MAX_SEQ + 1}, "seq"),
        ({"seq": True}, "seq"),
        ({"seq": 1.0}, "seq"),
        ({"seq": None}, "seq"),
        ({"hlc": -1}, "hlc"),
        ({"hlc": MAX_STAMP + 1}, "hlc"),
        ({"hlc": "1"}, "hlc"),
        # wall: finite seconds since 1970
        ({"wall": math.nan}, "wall"),
        ({"wall": math.inf}, "wall"),
        ({"wall": -math.inf}, "wall"),
        ({"wall": -1.0}, "wall"),
        ({"wall": 1e11}, "wall"),
        ({"wall": 10**400}, "wall"),  # a JSON integer too large for a float
        ({"wall": -(10**400)}, "wall"),
        ({"wall": "1795000000"}, "wall"),
        ({"wall": True}, "wall"),
        ({"wall": None}, "wall"),
        # the signature: a string of at most a signature's base64
        ({"sig": None}, "sig"),
        ({"sig": 5}, "sig"),
        ({"sig": "A" * 129}, "sig"),
    ],
)
def test_each_refusal_names_its_field(changes: dict[str, Any], field: str) -> None:
    error = refused(wire(**changes))
    assert error.field == field
    assert str(error).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"slot": 1}, "slot"),  # a void takes no slot
        ({"voids": None}, "voids"),  # and names what it voids
        ({"voids": "0B7A3C2E-5D1F-4A8B-9C6D-7E8F9A0B1C2D"}, "voids"),
        ({"voids": 7}, "voids"),
    ],
)
def test_a_void_needs_voids_and_no_slot(changes: dict[str, Any], field: str) -> None:
    assert refused(wire(void(), **changes)).field == field


def test_text_limits_are_bytes_and_inclusive() -> None:
    back, _ = parse_record(wire(ticket_id="T" * MAX_TEXT, operator="é" * 32, epoch="€" * 21))
    assert (len(back.ticket_id), back.operator, back.epoch) == (MAX_TEXT, "é" * 32, "€" * 21)
    assert refused(wire(epoch="€" * 22)).field == "epoch"  # 66 bytes


# ------------------------------------------------------------------ fuzz

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.sampled_from([10**400, -(10**400), 2**63, 2**62, 10**11, 0, -1])  # at and past the bounds
    | st.floats()
    | st.text(max_size=80)
    | st.sampled_from([*KINDS, *MODES, "", str(uuidlib.uuid4()), "A" * 88])
)
_json = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def _near_records(draw: st.DrawFn) -> dict[str, Any]:
    """A valid wire record (entry or void) with some fields replaced, dropped or added."""
    value = wire(draw(st.sampled_from([record(), void(), record(kind="exit"), record(forced=True)])))
    for field in draw(st.lists(st.sampled_from(WIRE), max_size=4, unique=True)):
        action = draw(st.integers(0, 9))
        if action == 0:
            del value[field]
        else:
            value[field] = draw(_json)
    if draw(st.integers(0, 9)) == 0:
        value[draw(st.text(max_size=8))] = draw(_json)
    return value


def _check(value: object) -> None:
    try:
        parsed, signature = parse_record(value)
    except RecordError as exc:
        if exc.field not in set(WIRE) | {"record"}:  # an unknown field: one of the value's own keys
            assert isinstance(value, dict) and exc.field in {str(k) for k in value}, exc.field
        return
    # Whatever parses is a well-formed record whose signing bytes can be made.
    assert parsed.kind in KINDS and parsed.mode in MODES
    assert math.isfinite(parsed.wall) and isinstance(signature, str)
    assert (parsed.kind == "void") == (parsed.voids is not None)
    assert parsed.slot is not None or parsed.kind == "void" or parsed.forced
    parsed.signing_bytes()
    parsed.signed_by(KEY.public, signature)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(_near_records())
def test_fuzz_near_records_raise_only_record_errors(value: dict[str, Any]) -> None:
    _check(value)


@pytest.mark.parametrize("field", WIRE)
@settings(max_examples=100)
@given(base=st.sampled_from([record(), void(), record(forced=True)]), value=_json_scalars | _json)
def test_fuzz_one_field_replaced_raises_only_record_errors(
    field: str, base: Redemption, value: object
) -> None:
    _check(wire(base, **{field: value}))


@given(_json)
def test_fuzz_any_json_raises_only_record_errors(value: object) -> None:
    _check(value)


@given(st.dictionaries(st.sampled_from(WIRE), _json_scalars, min_size=len(WIRE) - 1))
def test_fuzz_objects_with_the_right_keys_raise_only_record_errors(value: dict[str, Any]) -> None:
    _check(value)


@given(
    st.builds(
        Redemption,
        uuid=st.uuids().map(str),
        ticket_id=st.text(st.characters(codec="utf-8", categories=["L", "N", "P"]), min_size=1, max_size=16),
        kind=st.sampled_from(["entry", "exit"]),
        slot=st.integers(1, MAX_SEQ),
        origin=st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True),
        epoch=st.uuids().map(str),
        seq=st.integers(1, MAX_SEQ),
        hlc=st.integers(0, MAX_STAMP),
        wall=st.floats(0, 1e11, exclude_max=True),
        operator=st.none() | st.text(st.characters(codec="ascii", categories=["L"]), min_size=1, max_size=10),
        mode=st.sampled_from(MODES),
        forced=st.booleans(),
    )
)
def test_fuzz_valid_records_round_trip(value: Redemption) -> None:
    signature = value.sign(KEY)
    back, sig = parse_record(json.loads(json.dumps(value.wire(signature))))
    assert back == value and back.signed_by(KEY.public, sig)
