"""The real pretix the pretix tests run against: seeded as promised, answering as PRETIX.md says."""

from __future__ import annotations

import uuid

import pytest

from tests.pretix_server import PretixServer

pytestmark = pytest.mark.pretix


def test_the_seed_has_signed_secrets_two_lists_and_a_device_token(pretix: PretixServer) -> None:
    assert set(pretix.lists) == {"main", "vip"}
    assert pretix.valid_keys, "the event has no pretix_sig1 key"
    assert {"paid", "vip", "pending", "canceled", "blocked", "revoked"} <= set(pretix.positions)
    assert all(p.secret.startswith("=") for p in pretix.positions.values())
    assert pretix.device_init_token
    device = pretix.initialize_device(pretix.new_device_token("harness-check"))
    assert device["api_token"] and device["organizer"] == pretix.organizer


@pytest.mark.parametrize(
    ("name", "reason"),
    [("pending", "unpaid"), ("canceled", "revoked"), ("blocked", "blocked"), ("revoked", "revoked")],
)
def test_seeded_states_are_refused_by_pretix_with_their_reason(
    pretix: PretixServer, name: str, reason: str
) -> None:
    status, answer = pretix.checkin_as_other_device(pretix.positions[name].secret)
    assert (status, answer["status"], answer["reason"]) == (400, "error", reason)


def test_a_product_off_the_list_is_refused_as_product(pretix: PretixServer) -> None:
    status, answer = pretix.checkin_as_other_device(pretix.positions["paid2"].secret, list_name="vip")
    assert (status, answer["reason"]) == (400, "product")


def test_the_same_nonce_twice_stores_one_checkin(pretix: PretixServer) -> None:
    fresh = pretix.make_order(name="Nonce Twice")
    nonce = str(uuid.uuid4())
    first = pretix.checkin_as_other_device(fresh.secret, nonce=nonce)
    again = pretix.checkin_as_other_device(fresh.secret, nonce=nonce)
    assert first[0] == 201 and again[0] == 201
    assert len(pretix.checkins_of(fresh.position_id)) == 1
    assert pretix.checkin_as_other_device(fresh.secret)[1]["reason"] == "already_redeemed"


def test_a_canceled_order_keeps_its_buyers_secret_on_the_revocation_list(pretix: PretixServer) -> None:
    fresh = pretix.make_order(name="Cancel Me")
    pretix.cancel_order(fresh.order)
    revoked = {r["secret"] for r in pretix.event_api("GET", "revokedsecrets/?page_size=50")["results"]}
    assert fresh.secret in revoked
