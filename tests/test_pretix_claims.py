"""A pretix secret's signed claims at the gate, without a pretix: product, date, validity, policy."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from gate_daemon.core.decision import Checkpoint, LedgerFacts, evaluate
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.manifest import Manifest, canonical_json, open_manifest, peek_header
from gate_daemon.core.manifest_header import Session, Zone, parse_header
from gate_daemon.core.pretix_sig import parse_pretix_header, ticket_id_for
from gate_daemon.core.reasons import Reason
from gate_daemon.core.ticket_record import Status
from gate_daemon.errors import ManifestRefused
from gate_daemon.provision.build import build_manifest
from gate_daemon.provision.event import EventSpec
from gate_daemon.provision.pretix_manifest import (
    MULTIPLE_ENTRIES,
    PretixMappingError,
    list_entries,
    position_entry,
    pretix_header,
)
from tests.test_pretix_sig import sig1

NOW = int(time.time())
PRETIX_KEY = SigningKey.generate()
EVENT = "px-claims"
DAY, LOUNGE = 1, 2
SAT, SUN = 11, 12


def _pem(key: SigningKey) -> str:
    der = bytes.fromhex("302a300506032b6570032100") + bytes(key.verify_key)
    pem = "-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(der).decode() + "\n-----END PUBLIC KEY-----\n"
    return base64.b64encode(pem.encode()).decode()


LISTS = {
    "main": {"id": 1, "all_products": True, "limit_products": [], "subevent": None},
    "lounge": {"id": 2, "all_products": False, "limit_products": [LOUNGE], "allow_entry_after_exit": False},
}
ITEMS = [{"id": DAY, "name": {"en": "Day pass"}}, {"id": LOUNGE, "name": {"en": "Lounge pass"}}]


def _header(revoked: tuple[str, ...] = (), blocked: tuple[str, ...] = ()) -> dict[str, object]:
    return pretix_header(EVENT, [_pem(PRETIX_KEY)], LISTS, ITEMS, {SAT: "sat", SUN: "sun"}, revoked, blocked)


@pytest.fixture(scope="module")
def revoked_secret() -> str:
    return sig1(PRETIX_KEY, seed="revokedrevoked00", item=DAY)


@pytest.fixture(scope="module")
def manifest(revoked_secret: str) -> Iterator[Manifest]:
    key = SecretKey.generate()
    sessions = (
        Session("sat", "Saturday", NOW - 3600, NOW + 3600, 60),
        Session("sun", "Sunday", NOW + 86400, NOW + 90000, 60),
    )
    event = EventSpec(
        EVENT, "Claims", sessions, (Zone("main", "Main"), Zone("lounge", "Lounge")), (), False, (), ()
    )
    header = _header(revoked=(revoked_secret,))
    rules = parse_pretix_header(header)
    assert rules is not None
    listed = sig1(PRETIX_KEY, seed="listedpending000", item=DAY, subevent=SAT)
    order = {"code": "ABC12", "status": "n"}
    position = {"secret": listed, "item": DAY, "subevent": SAT, "positionid": 1}
    pending = position_entry(EVENT, position, order, rules, {SAT: "sat"})
    assert pending is not None and pending.status is Status.PENDING
    data = build_manifest(event, [pending], key, version=1, issued_at=NOW - 60, extra_header=header)
    opened = open_manifest(data, [key.public])
    yield opened
    opened.release()


def _base_header() -> dict[str, object]:
    key = SecretKey.generate()
    event = EventSpec(EVENT, "Claims", (), (Zone("main", "Main"),), (), False, (), ())
    data = build_manifest(event, [], key, version=1, issued_at=NOW - 60, extra_header=_header())
    return dict(peek_header(data)[1].raw)


_BASE_HEADER = _base_header()


def _reason(manifest: Manifest, secret: str, zone: str = "main", facts: LedgerFacts | None = None) -> Reason:
    return evaluate(secret, manifest, Checkpoint(zone=zone), NOW, facts or LedgerFacts()).reason


def test_validity_bounds_are_too_early_and_too_late(manifest: Manifest) -> None:
    assert _reason(manifest, sig1(PRETIX_KEY, item=DAY, valid_from=NOW + 600)) is Reason.TOO_EARLY
    assert _reason(manifest, sig1(PRETIX_KEY, item=DAY, valid_until=NOW - 600)) is Reason.TOO_LATE
    assert (
        _reason(manifest, sig1(PRETIX_KEY, item=DAY, valid_from=NOW - 600, valid_until=NOW + 600))
        is Reason.OK
    )


def test_a_subevent_is_a_session(manifest: Manifest) -> None:
    assert _reason(manifest, sig1(PRETIX_KEY, item=DAY, subevent=SAT)) is Reason.OK
    assert _reason(manifest, sig1(PRETIX_KEY, item=DAY, subevent=SUN)) is Reason.WRONG_SESSION
    assert _reason(manifest, sig1(PRETIX_KEY, item=DAY, subevent=99)) is Reason.WRONG_SESSION


def test_a_product_off_the_zones_list_is_wrong_zone_by_its_name(manifest: Manifest) -> None:
    decision = evaluate(sig1(PRETIX_KEY, item=DAY), manifest, Checkpoint(zone="lounge"), NOW, LedgerFacts())
    assert decision.reason is Reason.WRONG_ZONE and "Day pass" in decision.message
    assert _reason(manifest, sig1(PRETIX_KEY, item=LOUNGE), "lounge") is Reason.OK
    assert _reason(manifest, sig1(PRETIX_KEY, item=77), "main") is Reason.OK  # main admits all products
    assert _reason(manifest, sig1(PRETIX_KEY, item=77), "lounge") is Reason.WRONG_ZONE


def test_the_lists_entry_policy_applies_to_an_unlisted_secret(manifest: Manifest) -> None:
    inside_left = LedgerFacts(entries=1, exits=1, inside=False)
    assert _reason(manifest, sig1(PRETIX_KEY, item=DAY), "main", inside_left) is Reason.OK  # re-entry
    assert _reason(manifest, sig1(PRETIX_KEY, item=LOUNGE), "lounge", inside_left) is Reason.ALREADY_USED


def test_the_listed_position_is_the_fresher_word(manifest: Manifest) -> None:
    listed = sig1(PRETIX_KEY, seed="listedpending000", item=DAY, subevent=SAT)
    decision = evaluate(listed, manifest, Checkpoint(zone="main"), NOW, LedgerFacts())
    assert decision.reason is Reason.UNPAID
    assert decision.ticket_id == ticket_id_for(EVENT, listed)


def test_a_revoked_secret_is_refused_and_its_list_holds_no_secret(
    manifest: Manifest, revoked_secret: str
) -> None:
    assert _reason(manifest, revoked_secret) is Reason.REVOKED
    assert revoked_secret not in manifest.envelope.header_bytes.decode()


def test_a_random_secret_is_a_reference_code(manifest: Manifest) -> None:
    assert _reason(manifest, "k3p9xw2mq8r7t6v5") is Reason.UNKNOWN_TICKET


def test_list_policies_and_refusals_of_the_builder() -> None:
    assert list_entries({"allow_multiple_entries": True}) == MULTIPLE_ENTRIES
    assert list_entries({"allow_entry_after_exit": True}) == 0
    assert list_entries({"allow_entry_after_exit": False}) == 1
    with pytest.raises(PretixMappingError, match="custom rules"):
        pretix_header(EVENT, [_pem(PRETIX_KEY)], {"main": {"id": 1, "rules": {"and": []}}}, [], {}, [], [])
    with pytest.raises(PretixMappingError, match="valid_keys"):
        pretix_header(EVENT, ["bm90IGEga2V5"], LISTS, [], {}, [], [])


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 2**40) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@given(st.sampled_from(sorted(_header())), _JSON)
def test_any_pretix_header_value_is_read_or_refused_by_name(key: str, value: object) -> None:
    raw = json.loads(canonical_json({**_BASE_HEADER, key: value}))
    try:
        parse_header(canonical_json(raw))
    except ManifestRefused as exc:
        assert exc.reason == "malformed"
