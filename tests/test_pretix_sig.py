"""pretix's signed secrets at the gate: parsed, verified and decided offline (core.pretix_sig)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from gate_daemon.bench.pretix_manifest import gate_manifest
from gate_daemon.core.decision import Checkpoint, LedgerFacts, ScanKind, evaluate
from gate_daemon.core.keys import PublicKey, SecretKey
from gate_daemon.core.manifest import FULL, Manifest, open_manifest, seal
from gate_daemon.core.pretix_sig import key_from_pem, parse_sig1, ticket_id_for
from gate_daemon.core.reasons import Reason
from gate_daemon.core.tokens import PayloadError, PayloadFormat
from tests.pretix_server import PretixServer

MAIN, VIP = Checkpoint(zone="main"), Checkpoint(zone="vip")


def _varint(value: int) -> bytes:
    value &= 2**64 - 1
    out = b""
    while True:
        low, value = value & 0x7F, value >> 7
        out += bytes([low | (0x80 if value else 0)])
        if not value:
            return out


def sig1(key: SigningKey, seed: str = "abcdefgh12345678", item: int = 1, **more: int) -> str:
    """A pretix_sig1 secret made as pretix makes them (the test's own encoder)."""
    seed_raw = seed.encode()
    payload = b"\x0a" + _varint(len(seed_raw)) + seed_raw + b"\x10" + _varint(item)
    for number, name in ((3, "variation"), (4, "subevent"), (5, "valid_from"), (6, "valid_until")):
        if more.get(name):
            payload += bytes([number << 3]) + _varint(more[name])
    sig = key.sign(payload).signature
    blob = b"\x01" + len(payload).to_bytes(2, "big") + len(sig).to_bytes(2, "big") + payload + sig
    return base64.b64encode(blob).decode()[::-1]


# ---------------------------------------------------------------- the format, without pretix


def test_a_secret_made_as_pretix_does_reads_back_its_claims() -> None:
    key = SigningKey.generate()
    ticket = parse_sig1(sig1(key, item=7, subevent=3, valid_from=100, valid_until=200))
    claims = ticket.claims
    assert (claims.seed, claims.item, claims.subevent, claims.valid_from, claims.valid_until) == (
        "abcdefgh12345678",
        7,
        3,
        100,
        200,
    )
    assert ticket.verify((PublicKey(bytes(key.verify_key)),))
    assert not ticket.verify((PublicKey(bytes(SigningKey.generate().verify_key)),))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("=ab", "not base64"),
        ("=cba", "no version 1 header"),
        (base64.b64encode(b"\x02\x00\x01\x00\x40" + b"x" * 65).decode()[::-1], "version 1"),
        (base64.b64encode(b"\x01\x00\x09\x00\x40" + b"x" * 65).decode()[::-1], "inconsistent lengths"),
        ("plain-random-secret", "not base64"),
    ],
)
def test_what_is_not_a_signed_secret_is_named(text: str, why: str) -> None:
    with pytest.raises(PayloadError, match=why):
        parse_sig1(text)


@given(st.text(max_size=300))
def test_any_text_is_a_signed_secret_or_a_named_payload_error(text: str) -> None:
    try:
        parse_sig1(text)
    except PayloadError as exc:
        assert exc.detail


@given(st.binary(max_size=200), st.binary(min_size=64, max_size=64))
def test_any_payload_bytes_in_a_well_framed_blob_read_or_fail_by_name(payload: bytes, sig: bytes) -> None:
    blob = b"\x01" + len(payload).to_bytes(2, "big") + b"\x00\x40" + payload + sig
    try:
        ticket = parse_sig1(base64.b64encode(blob).decode()[::-1])
    except PayloadError as exc:
        assert exc.detail.startswith("pretix_sig1")
    else:
        assert ticket.claims.seed and ticket.claims.item >= 0


def test_a_pretix_pem_key_gives_its_raw_ed25519_key() -> None:
    raw = bytes(SigningKey.generate().verify_key)
    der = bytes.fromhex("302a300506032b6570032100") + raw
    pem = "-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(der).decode() + "\n-----END PUBLIC KEY-----\n"
    assert key_from_pem(base64.b64encode(pem.encode()).decode()).raw == raw
    with pytest.raises(ValueError, match="not an Ed25519"):
        key_from_pem(base64.b64encode(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END").decode())


# ---------------------------------------------------------------- against a real pretix


@pytest.fixture(scope="module")
def manifest(pretix: PretixServer) -> Iterator[Manifest]:
    built = gate_manifest(pretix, SecretKey.generate())
    yield built
    built.release()


def _decide(manifest: Manifest, secret: str, where: Checkpoint = MAIN) -> Reason:
    return evaluate(secret, manifest, where, time.time(), LedgerFacts()).reason


@pytest.mark.pretix
def test_secrets_pretix_made_verify_offline_against_the_events_valid_keys(pretix: PretixServer) -> None:
    keys = tuple(key_from_pem(k) for k in pretix.valid_keys)
    for seeded in pretix.positions.values():
        ticket = parse_sig1(seeded.secret)
        assert ticket.verify(keys), seeded.name
        assert ticket.claims.item == pretix.items[seeded.item]


@pytest.mark.pretix
@pytest.mark.parametrize(
    ("name", "where", "reason"),
    [
        ("paid", MAIN, Reason.OK),
        ("vip", VIP, Reason.OK),
        ("vip", MAIN, Reason.OK),
        ("paid", VIP, Reason.WRONG_ZONE),
        ("pending", MAIN, Reason.UNPAID),
        ("canceled", MAIN, Reason.REVOKED),
        ("blocked", MAIN, Reason.BLOCKED),
        ("revoked", MAIN, Reason.REVOKED),
    ],
)
def test_the_gate_decides_pretix_positions_as_pretix_does(
    pretix: PretixServer, manifest: Manifest, name: str, where: Checkpoint, reason: Reason
) -> None:
    decision = evaluate(pretix.positions[name].secret, manifest, where, time.time(), LedgerFacts())
    assert decision.reason is reason, decision.message
    assert decision.format is PayloadFormat.PRETIX


@pytest.mark.pretix
def test_a_rekeyed_positions_new_secret_is_the_same_ticket(pretix: PretixServer, manifest: Manifest) -> None:
    revoked = pretix.positions["revoked"]
    decision = evaluate(revoked.current_secret, manifest, MAIN, time.time(), LedgerFacts())
    assert decision.reason is Reason.OK
    assert decision.ticket_id == ticket_id_for(pretix.event, revoked.current_secret)


@pytest.mark.pretix
def test_a_signed_secret_sold_after_the_manifest_is_admitted_offline(
    pretix: PretixServer, manifest: Manifest
) -> None:
    later = pretix.make_order(name="Sold Later")
    assert manifest.find_ticket(ticket_id_for(pretix.event, later.secret)) is None
    assert _decide(manifest, later.secret) is Reason.OK
    assert _decide(manifest, later.secret, VIP) is Reason.WRONG_ZONE
    used = evaluate(later.secret, manifest, MAIN, time.time(), LedgerFacts(entries=1, inside=True))
    assert used.reason is Reason.ALREADY_USED


@pytest.mark.pretix
def test_a_flipped_byte_or_a_foreign_key_is_refused_by_name(pretix: PretixServer, manifest: Manifest) -> None:
    secret = pretix.positions["paid"].secret
    blob = bytearray(base64.b64decode(secret[::-1]))
    blob[-5] ^= 0x01
    flipped = base64.b64encode(bytes(blob)).decode()[::-1]
    assert _decide(manifest, flipped) is Reason.BAD_SIGNATURE
    foreign = sig1(SigningKey.generate(), item=pretix.items["ticket"])
    assert _decide(manifest, foreign) is Reason.BAD_SIGNATURE


@pytest.mark.pretix
def test_an_event_that_accepts_no_pretix_keys_names_the_key(pretix: PretixServer) -> None:
    key = SecretKey.generate()
    built = gate_manifest(pretix, key)
    raw = dict(built.header.raw)
    assert raw["pretix_keys"]
    raw["pretix_keys"] = []
    data = seal(raw, FULL, bytes(built.envelope.payload), key)
    keyless = open_manifest(data, [key.public])
    assert _decide(keyless, pretix.positions["paid"].secret) is Reason.UNKNOWN_KEY
    built.release()
    keyless.release()


@pytest.mark.pretix
def test_an_exit_is_recorded_for_a_revoked_secret_of_someone_inside(
    pretix: PretixServer, manifest: Manifest
) -> None:
    facts = LedgerFacts(entries=1, inside=True)
    secret = pretix.positions["canceled"].secret
    assert evaluate(secret, manifest, MAIN, time.time(), facts, ScanKind.EXIT).reason is Reason.OK


@pytest.mark.pretix
@given(
    st.text(min_size=1, max_size=200)
    | st.binary(min_size=5, max_size=120).map(lambda b: base64.b64encode(b"\x01" + b).decode()[::-1])
)
def test_any_scan_at_a_pretix_gate_gets_a_named_reason(manifest: Manifest, text: str) -> None:
    decision = evaluate(text, manifest, MAIN, time.time(), LedgerFacts())
    assert decision.reason in Reason and decision.message
