"""The supervisor command format (``gate_daemon.core.commands``): parse, canonical bytes, sign, verify, order.

Pure, except the last test: a command signed in a real Chromium with WebCrypto, as the
fleet page signs one, verifies here byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from playwright.sync_api import Page

from gate_daemon.core.commands import (
    DOMAIN,
    EXPIRY_MS,
    FUTURE_MS,
    Applied,
    Command,
    CommandRefused,
    LaneState,
    canonical,
    ordering,
    parse_command,
    parse_envelope,
    sign,
    verify,
)
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.manifest_header import RosterSupervisor

SAM = SecretKey(bytes(range(32)))
KIM = SecretKey(bytes(range(1, 33)))
ROSTER = (RosterSupervisor("sam", SAM.public), RosterSupervisor("kim", KIM.public))
NOW_MS = 1_767_222_000_000
BODY: dict[str, Any] = {
    "v": 1,
    "event": "demo-2026",
    "gate": "north-1",
    "kind": "lane",
    "value": "closed",
    "supervisor": "sam",
    "issued_ms": NOW_MS,
    "nonce": "0123456789abcdef0123456789abcdef",
}


def envelope(key: SecretKey = SAM, **changes: Any) -> dict[str, Any]:
    return sign(parse_command({**BODY, **changes}), key).envelope()


def refusal(call: Any) -> tuple[str, str]:
    with pytest.raises(CommandRefused) as caught:
        call()
    return caught.value.name, caught.value.detail


def test_the_signed_bytes_are_sorted_compact_ascii_json_after_the_domain() -> None:
    command = parse_command({**BODY, "kind": "message", "value": "Café → north"})
    expected = (
        b'{"event":"demo-2026","gate":"north-1","issued_ms":1767222000000,"kind":"message",'
        b'"nonce":"0123456789abcdef0123456789abcdef","supervisor":"sam","v":1,'
        b'"value":"Caf\\u00e9 \\u2192 north"}'
    )
    assert command.signed_bytes() == expected == canonical(command.body())
    signed = sign(command, SAM)
    assert SAM.public.verify(DOMAIN, expected, signed.signature)
    assert command.digest() == hashlib.sha256(expected).hexdigest()


def test_an_envelope_round_trips_and_verifies() -> None:
    signed = parse_envelope(json.loads(json.dumps(envelope())))
    command = verify(signed, ROSTER, event="demo-2026", gate="north-1", now_ms=NOW_MS)
    assert command == parse_command(BODY)
    assert verify(signed, ROSTER, event="demo-2026", gate=None, now_ms=NOW_MS) == command  # the central's


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"v": 2}, "command.v"),
        ({"v": True}, "command.v"),
        ({"v": 1.5}, "command.v"),
        ({"event": ""}, "command.event"),
        ({"gate": "north 1"}, "command.gate"),
        ({"gate": "x" * 65}, "command.gate"),
        ({"supervisor": 7}, "command.supervisor"),
        ({"kind": "reboot"}, "command.kind"),
        ({"value": "shut"}, "command.value"),
        ({"value": None}, "command.value"),
        ({"kind": "mode", "value": "closed"}, "command.value"),
        ({"kind": "message", "value": "x" * 141}, "command.value"),
        ({"kind": "message", "value": "two\nlines"}, "command.value"),
        ({"kind": "message", "value": "bell\x07"}, "command.value"),
        ({"kind": "message", "value": "sep\u2028"}, "command.value"),
        ({"issued_ms": 1.5}, "command.issued_ms"),
        ({"issued_ms": float("inf")}, "command.issued_ms"),
        ({"issued_ms": -1}, "command.issued_ms"),
        ({"issued_ms": 2**53}, "command.issued_ms"),
        ({"issued_ms": "1767222000000"}, "command.issued_ms"),
        ({"nonce": "0123456789ABCDEF0123456789ABCDEF"}, "command.nonce"),
        ({"nonce": "abc"}, "command.nonce"),
        ({"extra": 1}, "command: unknown field 'extra'"),
    ],
)
def test_each_bad_field_is_named(change: dict[str, Any], where: str) -> None:
    name, detail = refusal(lambda: parse_command({**BODY, **change}))
    assert name == "bad_command" and detail.startswith(where), detail


def test_an_unknown_field_name_is_quoted_and_cut_short() -> None:
    name, detail = refusal(lambda: parse_command({**BODY, "x\n" * 50_000: 1}))
    assert name == "bad_command" and "\n" not in detail and len(detail) <= 200, detail[:300]
    name, detail = refusal(lambda: parse_envelope({**envelope(), "y\n" * 50_000: 1}))
    assert name == "bad_command" and "\n" not in detail and len(detail) <= 200, detail[:300]


def test_a_command_dated_ahead_is_taken_only_within_minutes() -> None:
    parsed = parse_envelope(envelope())
    verify(parsed, ROSTER, event="demo-2026", gate="north-1", now_ms=NOW_MS - FUTURE_MS)
    name, detail = refusal(
        lambda: verify(parsed, ROSTER, event="demo-2026", gate="north-1", now_ms=NOW_MS - FUTURE_MS - 1)
    )
    assert name == "expired" and "ahead" in detail
    with pytest.raises(CommandRefused) as caught:
        verify(parsed, ROSTER, event="demo-2026", gate="north-1", now_ms=NOW_MS - FUTURE_MS - 1)
    assert caught.value.ahead
    # Into the past, a day still.
    verify(parsed, ROSTER, event="demo-2026", gate="north-1", now_ms=NOW_MS + EXPIRY_MS)


def test_a_newer_command_by_a_revoked_supervisor_does_not_make_one_stale() -> None:
    command = parse_command(BODY)
    ahead = Applied("open", "mallory", NOW_MS + 1, "f" * 32, NOW_MS)
    ordering(command, None, ahead, frozenset({"sam", "kim"}))
    assert refusal(lambda: ordering(command, None, ahead, frozenset({"sam", "kim", "mallory"})))[0] == "stale"


def test_a_missing_field_is_named() -> None:
    for key in BODY:
        body = {k: v for k, v in BODY.items() if k != key}
        assert refusal(lambda body=body: parse_command(body)) == ("bad_command", f"command.{key}: missing")


def test_a_message_may_be_empty_or_140_characters_of_any_script() -> None:
    assert parse_command({**BODY, "kind": "message", "value": ""}).value == ""
    text = "北" * 140
    assert parse_command({**BODY, "kind": "message", "value": text}).value == text


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: {**envelope(), "sig": None}, "bad_signature"),
        (lambda: {"command": BODY}, "bad_signature"),
        (lambda: {**envelope(), "sig": "not base64!"}, "bad_signature"),
        (lambda: {**envelope(), "sig": base64.b64encode(b"x" * 63).decode()}, "bad_signature"),
        (lambda: {**envelope(), "sig": 42}, "bad_signature"),
        (lambda: {"sig": envelope()["sig"]}, "bad_command"),
        (lambda: {**envelope(), "by": "sam"}, "bad_command"),
        (lambda: "lane closed", "bad_command"),
    ],
)
def test_a_bad_envelope_is_named(make: Any, name: str) -> None:
    assert refusal(lambda: parse_envelope(make()))[0] == name


@pytest.mark.parametrize(
    ("signed", "event", "gate", "now_ms", "name"),
    [
        (lambda: envelope(KIM), "demo-2026", "north-1", NOW_MS, "bad_signature"),  # kim's key, says sam
        (lambda: envelope(KIM, supervisor="mallory"), "demo-2026", "north-1", NOW_MS, "unknown_supervisor"),
        (lambda: envelope(), "other-2026", "north-1", NOW_MS, "wrong_event"),
        (lambda: envelope(), "demo-2026", "south-1", NOW_MS, "wrong_gate"),
        (lambda: envelope(), "demo-2026", "north-1", NOW_MS + EXPIRY_MS + 1, "expired"),
        (lambda: envelope(), "demo-2026", "north-1", NOW_MS - EXPIRY_MS - 1, "expired"),
    ],
)
def test_verification_names_each_refusal(signed: Any, event: str, gate: str, now_ms: int, name: str) -> None:
    parsed = parse_envelope(signed())
    assert refusal(lambda: verify(parsed, ROSTER, event=event, gate=gate, now_ms=now_ms))[0] == name
    # Within a day either way it is fine.
    if name != "expired":
        return
    verify(parsed, ROSTER, event=event, gate=gate, now_ms=NOW_MS + EXPIRY_MS)


def test_a_roster_without_the_supervisor_refuses_them() -> None:
    parsed = parse_envelope(envelope())
    assert refusal(lambda: verify(parsed, ROSTER[1:], event="demo-2026", gate="north-1", now_ms=NOW_MS))[
        0
    ] == ("unknown_supervisor")
    assert refusal(lambda: verify(parsed, (), event="demo-2026", gate="north-1", now_ms=NOW_MS))[0] == (
        "unknown_supervisor"
    )


def test_ordering_refuses_a_nonce_again_and_anything_older_of_its_kind() -> None:
    command = parse_command(BODY)
    ordering(command, None, None)
    with pytest.raises(CommandRefused) as same:
        ordering(command, command.digest(), None)
    assert same.value.name == "replayed" and same.value.duplicate
    with pytest.raises(CommandRefused) as other:
        ordering(command, "0" * 64, None)
    assert other.value.name == "replayed" and not other.value.duplicate
    last = Applied("open", "kim", NOW_MS + 1, "f" * 32, NOW_MS + 2)
    assert refusal(lambda: ordering(command, None, last))[0] == "stale"
    # The same millisecond: ordered by nonce, the same way at every gate.
    tie_low = Applied("open", "kim", NOW_MS, "0" * 32, NOW_MS)
    ordering(command, None, tie_low)
    tie_high = Applied("open", "kim", NOW_MS, "f" * 32, NOW_MS)
    assert refusal(lambda: ordering(command, None, tie_high))[0] == "stale"


def test_the_lane_state_follows_the_commands_applied() -> None:
    state = LaneState()
    assert (state.state, state.mode_forced, state.text) == ("open", None, None)
    state = state.applying(parse_command({**BODY, "value": "supervised"}), NOW_MS)
    state = state.applying(parse_command({**BODY, "kind": "mode", "value": "offline"}), NOW_MS)
    state = state.applying(parse_command({**BODY, "kind": "message", "value": "hello"}), NOW_MS)
    assert (state.state, state.mode_forced, state.text) == ("supervised", "offline", "hello")
    state = state.applying(parse_command({**BODY, "kind": "mode", "value": "auto"}), NOW_MS)
    state = state.applying(parse_command({**BODY, "kind": "message", "value": ""}), NOW_MS)
    assert (state.mode_forced, state.text) == (None, None)
    assert state.last("lane") == Applied("supervised", "sam", NOW_MS, BODY["nonce"], NOW_MS)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
near_bodies = st.fixed_dictionaries(
    {},
    optional={
        key: st.one_of(st.just(value), json_values)
        for key, value in {**BODY, "kind": "message", "value": "hi"}.items()
    },
)


@given(
    st.one_of(
        json_values, near_bodies, st.builds(lambda b, s: {"command": b, "sig": s}, near_bodies, json_values)
    )
)
def test_any_json_is_a_command_or_a_named_refusal(value: Any) -> None:
    try:
        parsed = parse_envelope(value)
    except CommandRefused as exc:
        assert exc.name in ("bad_command", "bad_signature")
        assert exc.status in (400, 403)
        return
    with pytest.raises(CommandRefused):  # nothing random carries a good signature
        verify(parsed, ROSTER, event="demo-2026", gate="north-1", now_ms=NOW_MS)


@given(near_bodies)
def test_a_parsed_body_signs_and_verifies_as_itself(body: dict[str, Any]) -> None:
    try:
        command = parse_command(body)
    except CommandRefused as exc:
        assert exc.name == "bad_command"
        return
    assert parse_command(json.loads(command.signed_bytes())) == command
    assert isinstance(command, Command)


SIGN_IN_BROWSER = """
async ([seedB64, body]) => {
  // The fleet page's way: canonical JSON (keys sorted, no spaces, non-ASCII as \\uXXXX),
  // the domain before it, an Ed25519 key imported as PKCS#8 from the 32-byte seed.
  const canonical = (value) => {
    if (value === null || typeof value !== "object") {
      return JSON.stringify(value).replace(/[\\u007f-\\uffff]/g,
        (c) => "\\\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
    }
    const keys = Object.keys(value).sort();
    return "{" + keys.map((k) => canonical(k) + ":" + canonical(value[k])).join(",") + "}";
  };
  const seed = Uint8Array.from(atob(seedB64), (c) => c.charCodeAt(0));
  const prefix = [0x30,0x2e,0x02,0x01,0x00,0x30,0x05,0x06,0x03,0x2b,0x65,0x70,0x04,0x22,0x04,0x20];
  const pkcs8 = new Uint8Array([...prefix, ...seed]);
  const key = await crypto.subtle.importKey("pkcs8", pkcs8, {name: "Ed25519"}, false, ["sign"]);
  const text = canonical(body);
  const domain = new TextEncoder().encode("gate-daemon/command/v1\\u0000");
  const message = new Uint8Array([...domain, ...new TextEncoder().encode(text)]);
  const sig = new Uint8Array(await crypto.subtle.sign({name: "Ed25519"}, key, message));
  return {text, sig: btoa(String.fromCharCode(...sig))};
}
"""


def test_a_command_signed_in_chromium_verifies_here(page: Page) -> None:
    body = {**BODY, "kind": "message", "value": "Café → north gate, ½ queue"}
    seed = SAM.text().removeprefix("ed25519-secret:")
    # WebCrypto exists only in a secure context: a page from 127.0.0.1 is one (about:blank is not).
    origin = "http://127.0.0.1:9/"
    page.route(
        origin,
        lambda route: route.fulfill(body="<!doctype html><title>sign</title>", content_type="text/html"),
    )
    page.goto(origin)
    signed = page.evaluate(SIGN_IN_BROWSER, [seed, body])
    command = parse_command(body)
    assert signed["text"].encode() == command.signed_bytes()
    parsed = parse_envelope({"command": body, "sig": signed["sig"]})
    assert verify(parsed, ROSTER, event="demo-2026", gate="north-1", now_ms=NOW_MS) == command
