"""Staff badges: the format, its checks, and a badge scanned at a gate on real parts."""

from __future__ import annotations

from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory
from hypothesis import given, settings
from hypothesis import strategies as st

from gate_daemon.cli.gatectl import main as gatectl
from gate_daemon.config.sections import GpioPins
from gate_daemon.core import base32
from gate_daemon.core.badges import (
    BADGE_PREFIX,
    MAX_BADGE,
    MAX_NAME,
    MAX_OPERATOR,
    Badge,
    BadgeError,
    BadgeRefusal,
    Role,
    check_badge,
    parse_badge,
)
from gate_daemon.core.decision import Decision
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.reasons import Outcome, Reason
from gate_daemon.core.times import parse_instant
from gate_daemon.core.tokens import SIGNED_PREFIX, event_tag
from gate_daemon.hardware.gpio_signals import STAFF_BLINKS, GpioSignals
from gate_daemon.provision.event import load_event
from gate_daemon.store.manifest_file import read_manifest
from gate_daemon.store.scans import new_scan_id
from tests.gate_fixtures import gate_rig
from tests.staff_fixtures import Staff, staff_world
from tests.support import EVENT_ID, QR_ALPHANUMERIC, SAT_START, World
from tests.test_qr_roundtrip import read_both
from tests.waiting import eventually

REF_T0001 = "REF-SAT-FLOOR-0001"
PINS = GpioPins(green="GPIO17", red="GPIO27", yellow="GPIO22", buzzer="GPIO23")
TAG = event_tag(EVENT_ID)


def refusal(staff: Staff, payload: str, *, now: float = SAT_START) -> BadgeRefusal:
    with pytest.raises(BadgeError) as caught:
        check_badge(payload, staff_keys=[staff.key.public], revoked={"gone"}, event_tag=TAG, now=now)
    return caught.value.refusal


def test_a_badge_round_trips_and_stays_qr_alphanumeric(world: World) -> None:
    staff = staff_world(world)
    text = staff.badge("op-1", Role.SUPERVISOR, name="Sam Lee", valid_from=100, valid_until=SAT_START + 3600)
    assert text.startswith(BADGE_PREFIX) and len(text) <= MAX_BADGE
    assert set(text[len(BADGE_PREFIX) :]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    assert set(text) <= QR_ALPHANUMERIC
    claims = check_badge(text, staff_keys=[staff.key.public], revoked=(), event_tag=TAG, now=SAT_START)
    assert (claims.operator, claims.name, claims.role) == ("op-1", "Sam Lee", Role.SUPERVISOR)
    assert (claims.valid_from, claims.valid_until) == (100, SAT_START + 3600)


def test_every_refusal_is_named(world: World) -> None:
    staff = staff_world(world)
    assert refusal(staff, staff.badge("op-1", key=SecretKey.generate())) is BadgeRefusal.UNKNOWN_KEY
    assert refusal(staff, staff.badge("op-1", event="other-event")) is BadgeRefusal.WRONG_EVENT
    assert refusal(staff, staff.badge("gone")) is BadgeRefusal.REVOKED
    assert refusal(staff, staff.badge("op-1", valid_until=SAT_START)) is BadgeRefusal.EXPIRED
    assert refusal(staff, staff.badge("op-1", valid_from=SAT_START + 1)) is BadgeRefusal.NOT_YET_VALID
    assert refusal(staff, "GDS1:AAAA") is BadgeRefusal.INVALID
    good = base32.decode(staff.badge("op-1")[len(BADGE_PREFIX) :])
    forged = good[:-1] + bytes([good[-1] ^ 1])
    assert refusal(staff, BADGE_PREFIX + base32.encode(forged)) is BadgeRefusal.BAD_SIGNATURE
    tampered = good[:10] + b"x" + good[11:]  # the role byte's neighbour: still well formed
    assert refusal(staff, BADGE_PREFIX + base32.encode(tampered)) in (
        BadgeRefusal.BAD_SIGNATURE,
        BadgeRefusal.INVALID,
    )


def test_a_ticket_key_cannot_sign_a_badge_nor_a_staff_key_a_ticket(world: World) -> None:
    staff = staff_world(world)
    # The ticket issuer's key signing a badge: not a staff key.
    assert refusal(staff, staff.badge("op-1", key=world.issuer)) is BadgeRefusal.UNKNOWN_KEY
    # Even listed as a staff key, a ticket's signature is no badge's (the domains differ).
    ticket = world.sign("T-0001")
    body = ticket[len(SIGNED_PREFIX) :]
    with pytest.raises(BadgeError) as caught:
        check_badge(
            BADGE_PREFIX + body, staff_keys=[world.issuer.public], revoked=(), event_tag=TAG, now=SAT_START
        )
    assert caught.value.refusal in (BadgeRefusal.BAD_SIGNATURE, BadgeRefusal.INVALID)


async def test_a_staff_key_signing_a_ticket_is_an_unknown_key_at_the_gate(
    world: World, tmp_path: Path
) -> None:
    staff = staff_world(world)
    async with gate_rig(world, tmp_path / "gate", manifest=staff.manifest) as rig:
        result = await rig.gate.scan(world.sign("T-0001", key=staff.key), device="test")
        assert result.decision.reason is Reason.UNKNOWN_KEY
        assert rig.rows("SELECT COUNT(*) FROM redemptions") == [(0,)]


def test_event_toml_refuses_a_key_that_is_both_ticket_and_staff_key(world: World) -> None:
    text = world.event_path.read_text().replace(
        'ticket_keys = ["issuer.pub"]', 'ticket_keys = ["issuer.pub"]\nstaff_keys = ["issuer.pub"]'
    )
    assert "staff_keys" in text
    world.event_path.write_text(text)
    with pytest.raises(Exception, match=r"staff_keys.*also a ticket key"):
        load_event(world.event_path)


def test_staff_keys_and_revoked_staff_reach_the_signed_manifest(world: World) -> None:
    staff = staff_world(world, revoked=("op-9",))
    path = world.dir / "staff.gdm"
    path.write_bytes(staff.manifest)
    header = read_manifest(path, world.trusted).header
    assert header.staff_keys == (staff.key.public,)
    assert header.revoked_staff == frozenset({"op-9"})
    assert world.manifest.header.staff_keys == ()  # a manifest without them still opens


def assert_sane(badge: Badge) -> None:
    """What parses is a badge a gate can show and record: printable names in bounds, a known role."""
    claims = badge.claims
    assert claims.operator.isprintable() and 0 < len(claims.operator.encode()) <= MAX_OPERATOR
    assert claims.name.isprintable() and 0 < len(claims.name.encode()) <= MAX_NAME
    assert claims.role in (Role.STEWARD, Role.SUPERVISOR)
    assert len(badge.kid) == 4 and len(claims.event_tag) == 4
    for moment in (claims.valid_from, claims.valid_until):
        assert moment is None or 0 <= moment < 2**32


@st.composite
def badge_bodies(draw: st.DrawFn) -> bytes:
    """Bytes shaped like a badge, each part drawn near its bounds (so many parse, and many do not)."""
    flags = draw(st.sampled_from([0, 1, 2, 3] * 3 + [4, 0x83]))
    role = draw(st.sampled_from([1, 2] * 4 + [0, 3]))
    head = bytes([flags]) + draw(st.binary(min_size=8, max_size=8)) + bytes([role])
    moments = draw(st.binary(min_size=4, max_size=4)) * bin(flags & 3).count("1")
    moments = moments[: draw(st.sampled_from([len(moments)] * 4 + [len(moments) - 1, 0]))]
    labels = b""
    for _ in range(draw(st.sampled_from([2, 2, 2, 2, 1, 3]))):
        printable = st.text(st.characters(codec="utf-8", exclude_categories=["C"]), max_size=30)
        chunk = draw(
            printable.map(str.encode) | st.text(max_size=70).map(str.encode) | st.binary(max_size=70)
        )
        size = draw(st.sampled_from([len(chunk)] * 6 + [len(chunk) + 1, 0, 33, 65]))
        labels += bytes([size % 256]) + chunk
    return head + moments + labels + draw(st.binary(min_size=64, max_size=64))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | badge_bodies())
def test_the_badge_parser_names_any_garbage(raw: bytes) -> None:
    for text in (BADGE_PREFIX + base32.encode(raw), BADGE_PREFIX + raw.decode("latin-1")):
        try:
            badge = parse_badge(text)
        except BadgeError as exc:
            assert exc.refusal is BadgeRefusal.INVALID
            assert exc.detail.startswith("Badge refused: ")
        else:
            assert_sane(badge)


@settings(max_examples=300, deadline=None)
@given(badge_bodies())
def test_badge_shaped_bytes_parse_sane_or_are_named(raw: bytes) -> None:
    text = BADGE_PREFIX + base32.encode(raw)
    if len(text) > MAX_BADGE:
        return
    try:
        badge = parse_badge(text)
    except BadgeError as exc:
        assert exc.refusal is BadgeRefusal.INVALID
        return
    assert_sane(badge)
    assert badge.signed + badge.signature == raw  # nothing dropped or added


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_the_gate_never_takes_garbage_for_a_badge(text: str) -> None:
    try:
        badge = parse_badge(text)
    except BadgeError as exc:
        assert exc.refusal is BadgeRefusal.INVALID
    else:
        assert_sane(badge)


# ---------------------------------------------------------------- at the gate


async def test_a_badge_signs_in_and_every_scan_after_is_recorded_with_its_holder(
    world: World, tmp_path: Path
) -> None:
    staff = staff_world(world)
    async with gate_rig(world, tmp_path / "gate", manifest=staff.manifest) as rig:
        before = await rig.gate.sighted(REF_T0001, device="cam")
        assert before is not None and before.decision.reason is Reason.OK
        rig.mono.now += 10
        signed = await rig.gate.sighted(staff.badge("anna", name="Anna K"), device="cam")
        assert signed is not None
        assert signed.decision.reason is Reason.STAFF_SIGNED_IN
        assert signed.decision.outcome is Outcome.STAFF
        assert signed.decision.message == "Signed in: Anna K"
        assert rig.gate.shift.on_duty is not None and rig.gate.shift.on_duty.name == "Anna K"
        rig.mono.now += 10
        await rig.gate.sighted(world.sign("T-0007"), device="cam")
        rows = rig.rows("SELECT operator, outcome, reason, resolution, ticket_id FROM scans ORDER BY hlc")
        assert rows == [
            (None, "allow", "ok", "admitted", "T-0001"),
            ("anna", "staff", "staff_signed_in", "signed_in", None),
            ("anna", "allow", "ok", "admitted", "T-0007"),
        ]
        assert rig.rows("SELECT operator FROM redemptions ORDER BY seq") == [(None,), ("anna",)]
        assert [d.outcome for d in rig.signals.shown] == [Outcome.ALLOW, Outcome.STAFF, Outcome.ALLOW]
        counters = await rig.ledger.counters()
        assert counters["outcome:staff"] == 1 and counters["resolution:signed_in"] == 1


async def test_the_same_badge_signs_out_another_takes_over_and_idleness_ends_it(
    world: World, tmp_path: Path
) -> None:
    staff = staff_world(world)
    async with gate_rig(world, tmp_path / "gate", manifest=staff.manifest) as rig:
        gate, anna, ben = rig.gate, staff.badge("anna"), staff.badge("ben")
        await gate.scan(anna, device="cam")
        out = await gate.scan(anna, device="cam")
        assert out.decision.reason is Reason.STAFF_SIGNED_OUT
        assert gate.shift.on_duty is None
        await gate.scan(anna, device="cam")
        took_over = await gate.scan(ben, device="cam")
        assert took_over.decision.reason is Reason.STAFF_SIGNED_IN
        assert gate.shift.on_duty is not None and gate.shift.on_duty.operator == "ben"
        rig.mono.now += gate.shift.idle_s + 1
        assert gate.shift.on_duty is None
        await gate.scan(REF_T0001, device="cam")
        assert rig.rows("SELECT operator FROM scans WHERE ticket_id = 'T-0001'") == [(None,)]


async def test_a_badge_never_opens_anything(world: World, tmp_path: Path) -> None:
    staff = staff_world(world)
    async with gate_rig(world, tmp_path / "gate", manifest=staff.manifest) as rig:
        for payload in (staff.badge("anna"), staff.badge("sam", Role.SUPERVISOR), staff.badge("gone")):
            result = await rig.gate.scan(payload, device="test", scan_id=new_scan_id())
            assert result.decision.outcome is Outcome.STAFF
            assert result.decision.ticket_id is None
        assert rig.rows("SELECT COUNT(*) FROM redemptions") == [(0,)]
        assert rig.rows("SELECT reason FROM scans ORDER BY hlc") == [
            ("staff_signed_in",),
            ("staff_signed_in",),
            ("badge_revoked",),
        ]


@pytest.mark.parametrize(
    ("badge_args", "reason"),
    [
        ({"operator": "gone"}, Reason.BADGE_REVOKED),
        ({"operator": "anna", "valid_until": int(SAT_START) - 1}, Reason.BADGE_EXPIRED),
        ({"operator": "anna", "valid_from": int(SAT_START) + 60}, Reason.BADGE_NOT_YET_VALID),
        ({"operator": "anna", "event": "other-event"}, Reason.BADGE_WRONG_EVENT),
    ],
)
async def test_a_refused_badge_is_recorded_by_name_and_signs_nobody_in(
    world: World, tmp_path: Path, badge_args: dict[str, object], reason: Reason
) -> None:
    staff = staff_world(world)
    async with gate_rig(world, tmp_path / "gate", manifest=staff.manifest) as rig:
        result = await rig.gate.scan(staff.badge(**badge_args), device="test")  # type: ignore[arg-type]
        assert result.decision.reason is reason
        assert rig.gate.shift.on_duty is None
        assert rig.rows("SELECT reason, resolution FROM scans") == [(reason.value, "refused")]


async def test_a_badge_for_a_key_the_manifest_does_not_list_is_refused(world: World, tmp_path: Path) -> None:
    staff = staff_world(world)
    async with gate_rig(world, tmp_path / "gate", manifest=staff.manifest) as rig:
        wrong = await rig.gate.scan(staff.badge("anna", key=world.issuer), device="test")
        assert wrong.decision.reason is Reason.BADGE_UNKNOWN_KEY
    async with gate_rig(world, tmp_path / "old") as rig:  # a manifest with no staff keys at all
        none = await rig.gate.scan(staff.badge("anna"), device="test")
        assert none.decision.reason is Reason.BADGE_UNKNOWN_KEY


# ---------------------------------------------------------------- the lights


async def test_a_badge_has_a_light_pattern_of_its_own() -> None:
    factory = MockFactory()
    signals = GpioSignals(PINS, hold=30, pin_factory=factory)
    try:
        green, red, yellow, buzzer = (factory.pin(n) for n in (17, 27, 22, 23))
        for pin in (green, yellow, buzzer):
            pin.clear_states()
        signals.show(Decision(Reason.STAFF_SIGNED_IN, "Signed in: Anna"))

        def done() -> bool:
            rises = [sum(1 for change in p.states[1:] if change.state) for p in (green, yellow, buzzer)]
            return rises == [STAFF_BLINKS, STAFF_BLINKS, 3] and not green.state and not buzzer.state

        await eventually(done)
        assert not red.state  # never a refusal's red
        # Green and yellow blink together: each rise of one is a rise of the other.
        together = zip(green.states[1:], yellow.states[1:], strict=False)
        assert all(abs(g.timestamp - y.timestamp) < 0.1 for g, y in together if g.state and y.state)
    finally:
        await signals.aclose()
        factory.close()


# ---------------------------------------------------------------- gatectl badge issue


def test_badge_issue_prints_a_badge_and_writes_a_qr_both_readers_read(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    staff = staff_world(world)
    png = tmp_path / "sam.png"
    args = ["badge", "issue", "--key", str(staff.key_path), "--event", EVENT_ID, "--operator", "op-3"]
    args += ["--name", "Sam Lee", "--role", "supervisor", "--valid-until", "2026-11-23T06:00:00Z"]
    assert gatectl([*args, "--png", str(png)]) == 0
    captured = capsys.readouterr()
    payload = captured.out.strip()
    assert "QR alphanumeric mode" in captured.err
    assert read_both(png) == payload
    claims = check_badge(payload, staff_keys=[staff.key.public], revoked=(), event_tag=TAG, now=SAT_START)
    assert (claims.operator, claims.name, claims.role) == ("op-3", "Sam Lee", Role.SUPERVISOR)
    assert claims.valid_until == parse_instant("2026-11-23T06:00:00Z")


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--operator", "x" * 33, "--role", "steward"], "operator id must be 1 to 32 bytes"),
        (["--operator", "op", "--role", "steward", "--valid-from", "2026-11-23T06:00:00Z",
          "--valid-until", "2026-11-22T06:00:00Z"], "--valid-from is not before --valid-until"),
    ],
)  # fmt: skip
def test_badge_issue_names_bad_input(
    world: World, capsys: pytest.CaptureFixture[str], extra: list[str], words: str
) -> None:
    staff = staff_world(world)
    args = ["badge", "issue", "--key", str(staff.key_path), "--event", EVENT_ID, "--name", "N", *extra]
    assert gatectl(args) == 1
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
