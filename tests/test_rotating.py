"""Rotating holder-bound codes (``GDR1:``): the format, the gate's checks, revocation, issuing.

The codes are made the way the holder's page makes them (``core.rotating.encode_code`` is
the same algorithm as the page's script; tests/test_rotating_page.py runs the page itself)
and decided against the demo world's real manifest.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gate_daemon.cli.gatectl import main
from gate_daemon.core import base32
from gate_daemon.core.decision import Checkpoint, LedgerFacts, evaluate
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.manifest import Manifest, open_manifest
from gate_daemon.core.reasons import Reason
from gate_daemon.core.rotating import (
    DEFAULT_PERIOD,
    RotatingCode,
    certificate_id,
    encode_code,
    issue_certificate,
    step_of,
)
from gate_daemon.core.tokens import (
    OpaqueCode,
    PayloadError,
    PayloadFormat,
    TicketClaims,
    event_tag,
    parse_payload,
)
from gate_daemon.errors import SourceError
from gate_daemon.provision.event import load_event
from tests.support import CLI_EXPIRES, EVENT_ID, SAT_START, SUN_START, World
from tests.test_fuzz_parsers import mutate

HOLDER = SecretKey.generate()
FLOOR = Checkpoint(zone="floor")
FUZZ = settings(suppress_health_check=[HealthCheck.too_slow])


def certificate(
    world: World, ticket_id: str = "T-ROT-1", *, event: str = EVENT_ID, **claims: object
) -> bytes:
    body = TicketClaims(ticket_id, event_tag(event), **{"session": "sat", "zone": "floor", **claims})  # type: ignore[arg-type]
    return issue_certificate(body, HOLDER.public, world.issuer, DEFAULT_PERIOD)


def code_at(cert: bytes, moment: float, holder: SecretKey = HOLDER) -> str:
    return encode_code(cert, step_of(moment, DEFAULT_PERIOD), holder)


def with_event(world: World, **changes: object) -> Manifest:
    data = world.build(event=dataclasses.replace(world.event, **changes))  # type: ignore[arg-type]
    return open_manifest(data, world.trusted)


# ------------------------------------------------------------------ the format


def test_a_code_parses_back_to_its_claims_step_and_certificate(shared_world: World) -> None:
    cert = certificate(shared_world, valid_from=SAT_START - 3600, valid_until=SAT_START + 3600, entries=2)
    payload = code_at(cert, SAT_START)
    parsed = parse_payload(payload)
    assert isinstance(parsed, RotatingCode)
    assert parsed.claims == TicketClaims(
        "T-ROT-1", event_tag(EVENT_ID), 2, "sat", "floor", SAT_START - 3600, SAT_START + 3600
    )
    assert parsed.step == step_of(SAT_START, 15)
    assert parsed.period == DEFAULT_PERIOD
    assert parsed.holder == HOLDER.public.raw
    assert parsed.certificate == cert
    assert parsed.certificate_id == certificate_id(cert)
    assert re.fullmatch(r"[0-9a-f]{16}", parsed.certificate_id)


def test_a_code_is_qr_alphanumeric_and_fits_the_payload_limit(shared_world: World) -> None:
    payload = code_at(certificate(shared_world, "T-" + "9" * 62, valid_from=1, valid_until=2), SAT_START)
    assert payload.startswith("GDR1:")
    assert set(payload) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567:1")
    assert len(payload) <= 512
    parse_payload(payload)  # the longest ticket id still parses


def test_consecutive_steps_make_different_codes_of_one_certificate(shared_world: World) -> None:
    cert = certificate(shared_world)
    first, second = code_at(cert, SAT_START), code_at(cert, SAT_START + 15)
    assert first != second
    a, b = parse_payload(first), parse_payload(second)
    assert isinstance(a, RotatingCode) and isinstance(b, RotatingCode)
    assert a.certificate == b.certificate and b.step == a.step + 1


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("GDR1:", "too short"),
        ("GDR1:AAAA", "too short"),
        ("GDR1:" + "A" * 6, "whole number of bytes"),
        ("GDR1:" + "0" * 300, "not canonical base32"),
    ],
)
def test_broken_codes_are_named_not_thrown(text: str, detail: str) -> None:
    with pytest.raises(PayloadError, match=detail):
        parse_payload(text)


def test_unknown_flags_and_trailing_bytes_are_named(shared_world: World) -> None:
    raw = bytearray(base32.decode(code_at(certificate(shared_world), SAT_START)[5:]))
    flagged = bytes([raw[0] | 0x80]) + raw[1:]
    with pytest.raises(PayloadError, match="unknown flags"):
        parse_payload("GDR1:" + base32.encode(flagged))
    zero_period = raw[:10] + b"\x00" + raw[11:]
    with pytest.raises(PayloadError, match="period of 0"):
        parse_payload("GDR1:" + base32.encode(bytes(zero_period)))


# ------------------------------------------------------------------ the gate's checks


def test_the_live_code_admits_in_its_step_and_within_one_step_either_side(shared_world: World) -> None:
    payload = code_at(certificate(shared_world), SAT_START)
    for now in (SAT_START, SAT_START - 15, SAT_START + 15):
        decision = evaluate(payload, shared_world.manifest, FLOOR, now)
        assert decision.reason is Reason.OK, (now, decision)
        assert decision.ticket_id == "T-ROT-1"
        assert decision.format is PayloadFormat.ROTATING


def test_a_screenshot_a_minute_later_is_expired_whether_or_not_the_ticket_was_used(
    shared_world: World,
) -> None:
    payload = code_at(certificate(shared_world), SAT_START)
    for facts in (LedgerFacts(), LedgerFacts(entries=1, entry_slots=1, inside=True)):
        decision = evaluate(payload, shared_world.manifest, FLOOR, SAT_START + 60, facts)
        assert decision.reason is Reason.EXPIRED_CODE
        assert decision.outcome.value == "deny"
        assert decision.ticket_id == "T-ROT-1"
        assert "expired" in decision.message and "screenshot" in decision.message


def test_a_step_from_the_future_beyond_the_tolerance_is_refused_as_a_clock_ahead(shared_world: World) -> None:
    payload = code_at(certificate(shared_world), SAT_START + 120)
    decision = evaluate(payload, shared_world.manifest, FLOOR, SAT_START)
    assert decision.reason is Reason.EXPIRED_CODE
    assert "in the future" in decision.message and "clock is ahead" in decision.message


def test_a_certificate_for_another_event_is_wrong_event(shared_world: World) -> None:
    payload = code_at(certificate(shared_world, event="elsewhere"), SAT_START)
    decision = evaluate(payload, shared_world.manifest, FLOOR, SAT_START)
    assert decision.reason is Reason.WRONG_EVENT
    assert decision.ticket_id == "T-ROT-1"


def test_a_holder_signature_by_another_key_is_bad_signature(shared_world: World) -> None:
    thief = SecretKey.generate()
    payload = code_at(certificate(shared_world), SAT_START, holder=thief)
    decision = evaluate(payload, shared_world.manifest, FLOOR, SAT_START)
    assert decision.reason is Reason.BAD_SIGNATURE
    assert "holder key" in decision.message
    assert decision.ticket_id is None


def test_a_certificate_by_a_key_the_event_does_not_accept_is_unknown_key(shared_world: World) -> None:
    claims = TicketClaims("T-ROT-1", event_tag(EVENT_ID))
    cert = issue_certificate(claims, HOLDER.public, SecretKey.generate(), DEFAULT_PERIOD)
    decision = evaluate(code_at(cert, SAT_START), shared_world.manifest, FLOOR, SAT_START)
    assert decision.reason is Reason.UNKNOWN_KEY


def test_a_tampered_certificate_is_bad_signature(shared_world: World) -> None:
    raw = bytearray(base32.decode(code_at(certificate(shared_world), SAT_START)[5:]))
    raw[11] ^= 0x01  # a byte of the holder key inside the certificate
    decision = evaluate("GDR1:" + base32.encode(bytes(raw)), shared_world.manifest, FLOOR, SAT_START)
    assert decision.reason is Reason.BAD_SIGNATURE
    assert "Ticket signature" in decision.message


def test_the_claims_are_weighed_like_a_signed_tickets(shared_world: World) -> None:
    # Zone, session and the manifest's word on a listed ticket apply as to GD1.
    cert = certificate(shared_world, zone="balcony")
    assert (
        evaluate(code_at(cert, SAT_START), shared_world.manifest, FLOOR, SAT_START).reason
        is Reason.WRONG_ZONE
    )
    revoked = certificate(shared_world, "T-REV")
    decision = evaluate(code_at(revoked, SAT_START), shared_world.manifest, FLOOR, SAT_START)
    assert decision.reason is Reason.REVOKED
    sun = certificate(shared_world, session="sun")
    assert evaluate(code_at(sun, SUN_START), shared_world.manifest, FLOOR, SUN_START).reason is Reason.OK


def test_a_revoked_certificate_is_refused_and_its_reissue_admits(shared_world: World) -> None:
    old = certificate(shared_world)
    new = issue_certificate(
        TicketClaims("T-ROT-1", event_tag(EVENT_ID), session="sat", zone="floor"),
        SecretKey.generate().public,
        shared_world.issuer,
        DEFAULT_PERIOD,
    )
    manifest = with_event(shared_world, revoked_holders=(certificate_id(old),))
    assert manifest.header.revoked_holders == {certificate_id(old)}
    decision = evaluate(code_at(old, SAT_START), manifest, FLOOR, SAT_START)
    assert decision.reason is Reason.REVOKED
    assert "another phone" in decision.message
    new_holder = parse_payload(code_at(new, SAT_START))
    assert isinstance(new_holder, RotatingCode)
    assert new_holder.certificate_id != certificate_id(old)


def test_gatectl_builds_and_shows_a_manifest_with_revoked_holders(
    shared_world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = tmp_path / "event.toml"
    text = shared_world.event_path.read_text()
    event.write_text(
        text.replace('revoked = ["T-REV"]', 'revoked = ["T-REV"]\nrevoked_holders = ["0123456789abcdef"]')
    )
    for name in ("issuer.pub", "north-1.pub"):
        (tmp_path / name).write_bytes((shared_world.dir / name).read_bytes())
    out = tmp_path / "m.gdm"
    build = ["manifest", "build", "--event", str(event), "--tickets", str(shared_world.tickets_path)]
    key = ["--key", str(shared_world.signer_key), "--expires", CLI_EXPIRES]
    assert main([*build, *key, "--version", "1", "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["manifest", "show", str(out), "--pub", str(shared_world.signer_pub)]) == 0
    assert "revoked    1, 1 rotating certificates" in capsys.readouterr().out
    manifest = open_manifest(out.read_bytes(), shared_world.trusted)
    assert manifest.header.revoked_holders == {"0123456789abcdef"}


def test_the_tolerance_comes_from_the_manifest(shared_world: World) -> None:
    payload = code_at(certificate(shared_world), SAT_START)
    strict = with_event(shared_world, rotating_tolerance=0)
    assert strict.header.rotating_tolerance == 0
    assert evaluate(payload, strict, FLOOR, SAT_START + 15).reason is Reason.EXPIRED_CODE
    lax = with_event(shared_world, rotating_tolerance=4)
    assert evaluate(payload, lax, FLOOR, SAT_START + 60).reason is Reason.OK
    # At their defaults the keys are left out, so older gates read such manifests as before.
    assert "revoked_holders" not in shared_world.manifest.header.raw
    assert "rotating_tolerance" not in shared_world.manifest.header.raw


def test_event_toml_names_bad_rotating_keys_by_key_and_line(shared_world: World, tmp_path: Path) -> None:
    text = shared_world.event_path.read_text()
    text = text.replace('revoked = ["T-REV"]', 'revoked = ["T-REV"]\nrevoked_holders = ["not-an-id"]')
    text = text.replace('name = "Demo Night"', 'name = "Demo Night"\nrotating_tolerance = 99')
    bad = tmp_path / "event.toml"
    bad.write_text(text)
    for name in ("issuer.pub", "north-1.pub"):
        (tmp_path / name).write_bytes((shared_world.dir / name).read_bytes())
    with pytest.raises(SourceError) as caught:
        load_event(bad)
    shown = str(caught.value)
    assert "revoked_holders" in shown and "16 lower-case hex digits" in shown
    assert "rotating_tolerance" in shown and "outside 0..20" in shown
    good = tmp_path / "good.toml"
    good.write_text(text.replace("not-an-id", "0123456789abcdef").replace("= 99", "= 2"))
    event = load_event(good)
    assert event.revoked_holders == ("0123456789abcdef",)
    assert event.rotating_tolerance == 2


# ------------------------------------------------------------------ issuing


def test_gatectl_issues_a_page_and_prints_only_the_certificate_id(
    shared_world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "ticket.html"
    args = [
        "ticket",
        "issue",
        "--key",
        str(shared_world.issuer_key),
        "--event",
        EVENT_ID,
        "--ticket-id",
        "T-ROT-9",
    ]
    code = main([*args, "--zone", "floor", "--rotating", "--html", str(page), "--seat", "Row 4 Seat 12"])
    out, err = capsys.readouterr()
    assert code == 0, err
    cid = out.strip().removeprefix("certificate ")
    assert re.fullmatch(r"[0-9a-f]{16}", cid)
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    ticket = page_ticket(page)
    assert ticket["seat"] == "Row 4 Seat 12"
    assert certificate_id(base64.b64decode(ticket["certificate"])) == cid
    assert ticket["holder_seed"] not in out + err
    # The page needs nothing from the network: no src= or href= to anywhere.
    html = page.read_text()
    assert not re.search(r"\b(src|href)\s*=", html)
    assert "Kazuhiko Arase" in html  # the bundled libraries keep their licence headers
    assert "noble-ed25519 - MIT License (c) 2019 Paul Miller" in html

    assert main([*args, "--rotating"]) == 1
    assert "--html" in capsys.readouterr().err
    assert (
        main([*args, "--rotating", "--html", str(tmp_path / "x.html"), "--png", str(tmp_path / "x.png")]) == 1
    )
    assert "no fixed image" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main([*args, "--rotating", "--html", str(tmp_path / "y.html"), "--period", "256"])
    assert usage.value.code == 2
    assert "longer than 255" in capsys.readouterr().err
    assert not (tmp_path / "y.html").exists()


def page_ticket(page: Path) -> dict[str, object]:
    """The ticket data inside a holder's page."""
    found = re.search(r'<script type="application/json" id="ticket">(.*?)</script>', page.read_text(), re.S)
    assert found is not None
    data: dict[str, object] = json.loads(found.group(1))
    return data


def test_an_event_name_cannot_break_out_of_the_page(
    shared_world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "t.html"
    nasty = "</script><script>alert(1)</script>"
    args = [
        "ticket",
        "issue",
        "--key",
        str(shared_world.issuer_key),
        "--event",
        EVENT_ID,
        "--ticket-id",
        "T-X",
    ]
    assert main([*args, "--rotating", "--html", str(page), "--event-name", nasty]) == 0
    capsys.readouterr()
    html = page.read_text()
    assert nasty not in html
    assert page_ticket(page)["event"] == nasty


# ------------------------------------------------------------------ fuzzing

rotating_like = st.builds(
    lambda prefix, body: prefix + body,
    st.sampled_from(["GDR1:", "gdr1:", "GDR1", "GDR2:"]),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ234567=ab01:", max_size=400),
)


@FUZZ
@given(text=rotating_like)
@example(text="GDR1:" + "A" * 300)
@example(text="GDR1:" + "7" * 320)
def test_parse_rotating_raises_only_payload_error(text: str) -> None:
    try:
        parsed = parse_payload(text)
    except PayloadError as exc:
        assert exc.detail
    else:
        assert isinstance(parsed, RotatingCode | OpaqueCode)


@FUZZ
@given(data=st.data(), now=st.integers(SAT_START - 120, SAT_START + 120))
def test_mutated_codes_never_admit_unless_unchanged(
    shared_world: World, data: st.DataObject, now: int
) -> None:
    original = code_at(certificate(shared_world), SAT_START)
    tampered = mutate(data, original)
    decision = evaluate(tampered, shared_world.manifest, FLOOR, now)
    if decision.reason is Reason.OK:
        assert tampered.upper() == original
    shown = decision.as_dict()
    assert all(tampered not in str(value) for value in shown.values())
