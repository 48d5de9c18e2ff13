"""Garbage in, a named answer out: every parser raises only its own error (hypothesis).

Each property lets any exception other than the named one fail the test, so a traceback
anywhere in the parsing path shows up here as a falsifying example.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gate_daemon.core.decision import Checkpoint, Decision, LedgerFacts, evaluate
from gate_daemon.core.delta import apply_delta
from gate_daemon.core.keys import KeyFormatError, PublicKey, SecretKey
from gate_daemon.core.manifest import Manifest, open_manifest, peek_header
from gate_daemon.core.reasons import Reason
from gate_daemon.core.ticket_record import TicketEntry
from gate_daemon.core.times import TimeFormatError, parse_instant
from gate_daemon.core.tokens import OpaqueCode, PayloadError, SignedTicket, parse_payload
from gate_daemon.errors import ManifestRefused, SourceError
from gate_daemon.provision.event import EventSpec, load_event
from gate_daemon.provision.tickets import load_tickets
from tests.support import EVENT_TOML, SAT_OPENS, SAT_START, SUN_END, TICKETS_CSV, World

# max_examples (300) and deadline=None come from the profile loaded in conftest.py.
FUZZ = settings(suppress_health_check=[HealthCheck.too_slow])
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
MANIFEST_REASONS = {"malformed", "bad_signature", "unknown_key", "tampered"}

signed_like = st.builds(
    lambda prefix, body: prefix + body,
    st.sampled_from(["GD1:", "gd1:", "GD2:", "GD0:", "GD12:", "GD1"]),
    st.text(alphabet=B32 + "=ab01:", max_size=220),
)
payloads = st.one_of(
    st.text(max_size=600),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=200),
    signed_like,
    st.sampled_from(["REF-SAT-FLOOR-0001", "O-100-A1", "O-105-C2", "O-106-C3", "T-0001"]),
)


@pytest.fixture(scope="module")
def fuzz_dir(shared_world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for generated files, with the public keys event.toml refers to."""
    folder = tmp_path_factory.mktemp("fuzz")
    for name in ("issuer.pub", "north-1.pub"):
        shutil.copy(shared_world.dir / name, folder / name)
    return folder


def mutate(data: st.DataObject, text: str) -> str:
    """``text`` with a few characters replaced, dropped or inserted."""
    chars = list(text)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["replace", "drop", "insert"]))
        i = data.draw(st.integers(0, max(0, len(chars) - 1)))
        char = data.draw(st.sampled_from(B32 + "0189:-=a "))
        if op == "replace" and chars:
            chars[i] = char
        elif op == "drop" and chars:
            del chars[i]
        else:
            chars.insert(i, char)
    return "".join(chars)


# ------------------------------------------------------------------ payloads


@FUZZ
@given(text=payloads)
@example(text="GD1:" + "A" * 130)
@example(text="GD1:====")
@example(text="GD1:" + "7" * 200)
def test_parse_payload_raises_only_payload_error(text: str) -> None:
    try:
        parsed = parse_payload(text)
    except PayloadError as exc:
        assert exc.detail
    else:
        assert isinstance(parsed, SignedTicket | OpaqueCode)


@FUZZ
@given(data=st.data())
def test_mutated_real_payloads_parse_or_raise_payload_error(shared_world: World, data: st.DataObject) -> None:
    payload = shared_world.sign("T-0001", session="sat", zone="floor", valid_from=SAT_OPENS)
    try:
        parsed = parse_payload(mutate(data, payload))
    except PayloadError:
        return
    assert isinstance(parsed, SignedTicket | OpaqueCode)


checkpoints = st.builds(
    Checkpoint,
    zone=st.sampled_from([None, "floor", "balcony", "attic"]),
    session=st.sampled_from([None, "sat", "sun", "mon"]),
)
ledger = st.builds(
    LedgerFacts,
    entries=st.integers(0, 300),
    inside=st.booleans(),
    last_entry_at=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    last_entry_gate=st.one_of(st.none(), st.text(max_size=10)),
)
moments = st.one_of(st.integers(0, 2**32 - 1), st.integers(SAT_OPENS - 7200, SUN_END + 7200))


@FUZZ
@given(text=payloads, where=checkpoints, facts=ledger, now=moments, missing=st.booleans())
def test_evaluate_never_raises(
    shared_world: World, text: str, where: Checkpoint, facts: LedgerFacts, now: int, missing: bool
) -> None:
    manifest = None if missing else shared_world.manifest
    decision = evaluate(text, manifest, where, now, facts)
    assert isinstance(decision, Decision)
    assert decision.reason in set(Reason)
    shown = decision.as_dict()
    assert shown["outcome"] == decision.reason.outcome.value
    if len(text) >= 12:
        assert all(text not in str(value) for value in shown.values())


@FUZZ
@given(data=st.data(), where=checkpoints, facts=ledger, now=moments)
def test_evaluate_of_mutated_signed_tickets_never_allows_a_forgery(
    shared_world: World, data: st.DataObject, where: Checkpoint, facts: LedgerFacts, now: int
) -> None:
    original = shared_world.sign("T-0001", session="sat", zone="floor")
    tampered = mutate(data, original)
    decision = evaluate(tampered, shared_world.manifest, where, now, facts)
    assert isinstance(decision, Decision)
    if decision.reason is Reason.OK:
        # Only an unchanged ticket (or its lowercase/other-case twin) can be allowed.
        assert tampered.upper() == original


# ------------------------------------------------------------------ manifests


def _open(data: bytes, trusted: list[PublicKey]) -> Manifest | None:
    try:
        return open_manifest(data, trusted)
    except ManifestRefused as exc:
        assert exc.reason in MANIFEST_REASONS, exc
        return None


@FUZZ
@given(data=st.binary(max_size=2048))
@example(data=b"GDMANIF1F\x00\x00\x00\x00\xff\xff\xff\xff")
@example(data=b"GDMANIF1D\x00\x00\x00\x00\x02\x00\x00\x00{}" + b"\x00" * 64)
def test_open_manifest_on_arbitrary_bytes(shared_world: World, data: bytes) -> None:
    assert _open(data, shared_world.trusted) is None


@FUZZ
@given(tail=st.binary(max_size=400), kind=st.sampled_from([b"F", b"D", b"X"]), hlen=st.integers(0, 2**32 - 1))
def test_open_manifest_on_plausible_preambles(
    shared_world: World, tail: bytes, kind: bytes, hlen: int
) -> None:
    data = b"GDMANIF1" + kind + shared_world.signer.public.kid_bytes + hlen.to_bytes(4, "little") + tail
    assert _open(data, shared_world.trusted) is None


@FUZZ
@given(data=st.data())
def test_open_manifest_on_damaged_real_files(shared_world: World, data: st.DataObject) -> None:
    blob = bytearray(shared_world.manifest_bytes)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(blob))))
    damaged = bytes(blob[:cut] if cut is not None else blob) + data.draw(st.binary(max_size=8))
    if damaged == shared_world.manifest_bytes:
        return
    assert _open(damaged, shared_world.trusted) is None
    try:
        peek_header(damaged)
    except ManifestRefused as exc:
        assert exc.reason == "malformed"


_DELTAS: dict[str, bytes] = {}


def _delta(world: World) -> bytes:
    if "v2" not in _DELTAS:
        tickets = [*world.tickets[2:], TicketEntry("T-0500", order_id="O-500", seat="Q1", session="sun")]
        _DELTAS["v2"] = world.build(tickets, version=2, base=world.manifest)
    return _DELTAS["v2"]


@FUZZ
@given(data=st.data())
def test_apply_delta_on_damaged_deltas(shared_world: World, data: st.DataObject) -> None:
    delta = _delta(shared_world)
    blob = bytearray(delta)
    i = data.draw(st.integers(0, len(blob) - 1))
    blob[i] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(blob)))
    damaged = bytes(blob[:cut])
    try:
        apply_delta(shared_world.manifest, damaged, shared_world.trusted)
    except ManifestRefused as exc:
        assert exc.reason in MANIFEST_REASONS | {"wrong_base"}
    else:
        pytest.fail("a damaged delta was applied")


# ------------------------------------------------------------------ tickets.csv

CSV_TOKENS = st.sampled_from(
    [
        "ticket_id", "order_id", "seat", "status", "session", "zone", "entries", "code",
        "completed", "PENDING", "canceled", "refunded", "blocked", "sold",
        "sat", "sun", "mon", "floor", "balcony", "reentry", "1", "3", "255", "256", "0", "\u00b2",
        "T-1", "T-2", "O-1", "A1", "REF-SAT-FLOOR-0001", "GD1:AAAA", "x" * 70,
        ",", ",", ",", "\n", "\n", "\r\n", '"', '""', " ", "\t", "\x00", "\u00e9", "\ufeff",
    ]
)  # fmt: skip
csv_texts = st.builds(
    lambda head, body: head + body,
    st.sampled_from(["", "ticket_id,status\n", "ticket_id,order_id,seat,status,session,zone,entries,code\n"]),
    st.lists(CSV_TOKENS, max_size=120).map("".join),
)


FIELDS = st.sampled_from(
    [
        "", "T-1", "T-2", "O-1", "A1", "completed", "Pending", "sold", "sat", "mon", "floor", "attic",
        "1", "255", "0", "reentry", "\u00b2", "\u0663", "REF-SAT-FLOOR-0001", "SHORT", "GD1:AAAA", "GD2:X",
        "O-1-A1", "x" * 70, "\u00e9", "\x7f", '"a,b"', " 3 ",
    ]
)  # fmt: skip
csv_rows = st.builds(
    lambda rows: (
        "ticket_id,order_id,seat,status,session,zone,entries,code\n"
        + "".join(",".join(row) + "\n" for row in rows)
    ),
    st.lists(st.lists(FIELDS, min_size=7, max_size=9), max_size=12),
)


def _load_tickets(folder: Path, event: EventSpec, raw: bytes) -> None:
    path = folder / "fuzz.csv"
    path.write_bytes(raw)
    try:
        entries = load_tickets(path, event)
    except SourceError as exc:
        assert exc.problems
        assert all(p.line is None or p.line >= 1 for p in exc.problems)
    else:
        assert all(isinstance(e, TicketEntry) for e in entries)


@FUZZ
@given(raw=st.binary(max_size=1024))
def test_load_tickets_on_arbitrary_bytes(shared_world: World, fuzz_dir: Path, raw: bytes) -> None:
    _load_tickets(fuzz_dir, shared_world.event, raw)


@FUZZ
@given(text=csv_rows)
def test_load_tickets_on_rows_of_plausible_fields(shared_world: World, fuzz_dir: Path, text: str) -> None:
    _load_tickets(fuzz_dir, shared_world.event, text.encode())


@FUZZ
@given(text=csv_texts)
@example(text=TICKETS_CSV)
def test_load_tickets_on_csv_like_text(shared_world: World, fuzz_dir: Path, text: str) -> None:
    _load_tickets(fuzz_dir, shared_world.event, text.encode("utf-8", "surrogatepass"))


# ------------------------------------------------------------------ event.toml

TOML_LINES = st.sampled_from(
    [
        "[event]", 'id = "demo"', 'id = "bad id"', 'name = "N"', "name = 3",
        "[[sessions]]", "starts_at = 2026-11-21T19:00:00Z", "starts_at = 2026-11-21T19:00:00",
        'ends_at = "2026-11-21T23:00:00+01:00"', "ends_at = 1979-01-01", "ends_at = 23:00:00",
        "entry_opens_minutes = 30", "entry_opens_minutes = -1", "entry_opens_minutes = true",
        "[[zones]]", "[zones]", 'revoked = ["T-1"]', "revoked = [[1]]", 'ticket_keys = ["issuer.pub"]',
        'ticket_keys = ["nope.pub"]', 'ticket_keys = ["ed25519:AAAA"]', 'ticket_keys = ["\\u0000"]',
        "[[gates]]", 'pub = "north-1.pub"', 'pub = "."', "strats_at = 1", "x = {a = [1, {b = 2}]}",
        "= broken", '"quoted key" = 1', "[event.sub]", "[sessions.0]", "# comment", "",
    ]
)  # fmt: skip
toml_texts = st.lists(TOML_LINES, max_size=30).map("\n".join)


def _load_event(folder: Path, raw: bytes) -> None:
    path = folder / "fuzz.toml"
    path.write_bytes(raw)
    try:
        event = load_event(path)
    except SourceError as exc:
        assert exc.problems
        assert str(exc).startswith(f"{len(exc.problems)} problem")
    else:
        assert isinstance(event, EventSpec)


@FUZZ
@given(raw=st.binary(max_size=1024))
def test_load_event_on_arbitrary_bytes(fuzz_dir: Path, raw: bytes) -> None:
    _load_event(fuzz_dir, raw)


@FUZZ
@given(text=toml_texts)
@example(text=EVENT_TOML)
def test_load_event_on_toml_like_text(fuzz_dir: Path, text: str) -> None:
    _load_event(fuzz_dir, text.encode())


# ------------------------------------------------------------------ keys and times


@FUZZ
@given(
    text=st.one_of(
        st.text(max_size=120),
        st.builds(lambda p, b: p + b, st.sampled_from(["ed25519:", "ed25519-secret:"]), st.text(max_size=60)),
        st.builds(
            lambda p, b: p + b,
            st.sampled_from(["ed25519:", "ed25519-secret:"]),
            st.text(
                alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", max_size=48
            ),
        ),
    )
)
def test_key_parsers_raise_only_key_format_error(text: str) -> None:
    for parse in (PublicKey.parse, SecretKey.parse):
        try:
            key = parse(text)
        except KeyFormatError:
            continue
        assert isinstance(key, PublicKey | SecretKey)


@FUZZ
@given(value=st.one_of(st.text(max_size=40), st.datetimes(), st.integers(), st.none(), st.floats()))
@example(value="0001-01-01T00:00:00+14:00")
@example(value="9999-12-31T23:59:59-14:00")
def test_parse_instant_raises_only_time_format_error(value: object) -> None:
    try:
        seconds = parse_instant(value)
    except TimeFormatError:
        return
    assert 0 <= seconds <= 2**32 - 1


def test_decide_reference_still_allows(shared_world: World) -> None:
    """The fuzzed manifest is the real one: a good code still gets in (the properties are not vacuous)."""
    decision = evaluate("REF-SAT-FLOOR-0001", shared_world.manifest, Checkpoint(), SAT_START)
    assert decision.reason is Reason.OK
