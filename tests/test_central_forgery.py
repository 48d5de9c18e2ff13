"""Forged requests to the central cannot buy more verification work than the challenge rate limit.

A forged request (a roster gate id, a signature by another key) spends its challenge and is
refused ``bad_signature`` *without* a next challenge: the forger must come back to the
rate-limited ``GET /v1/challenge`` for each try, so it cannot chain one fetch into endless
signature checks over large bodies. The real central on 127.0.0.1, real HTTP.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gate_daemon.central.wire import MAX_BODY
from gate_daemon.core.keys import SecretKey
from gate_daemon.errors import WireError
from gate_daemon.net import peer_auth
from gate_daemon.net.peer_auth import HEADER_CHALLENGE, Challenges, sign_request
from tests.central_fixtures import make_central_world, serving

#: Challenges a second per address, as ``[central] rate``: bursts of twice that.
RATE = 5
#: The largest body the central takes: every try that reaches the signature check hashes all of it.
BODY = b"[" + b"0," * (MAX_BODY // 2 - 2) + b"0]"


async def test_a_forged_request_is_not_handed_a_next_challenge(tmp_path: Path) -> None:
    world = make_central_world(tmp_path / "central", extra=f"rate = {RATE}\n")
    async with serving(world) as running:
        north = running.gates["north-1"]
        forged = await north.request("POST", "/v1/checkins", raw=BODY, key=SecretKey.generate())
        assert (forged.status_code, forged.json()["error"]) == (401, "bad_signature")
        assert HEADER_CHALLENGE not in forged.headers
        # A genuine request that fails after its signature verified still gets the next one.
        refused = await north.request("POST", "/v1/checkins", raw=b"not json")
        assert refused.status_code == 400 and refused.headers[HEADER_CHALLENGE]


async def test_forged_requests_cost_no_more_checks_than_the_rate_limit(tmp_path: Path) -> None:
    world = make_central_world(tmp_path / "central", extra=f"rate = {RATE}\n")
    async with serving(world) as running:
        genuine = running.gates["south-1"]
        genuine.challenge = await genuine.fresh_challenge()  # held through the attack
        forger = SecretKey.generate()
        nonce: str | None = None
        checked = refused_challenges = 0
        started = time.monotonic()
        for _ in range(120):
            if nonce is None:
                got = await running.http.get("/v1/challenge")
                if got.status_code == 429:
                    refused_challenges += 1
                    continue
                nonce = got.json()["challenge"]
            headers = sign_request(
                forger, "north-1", "POST", "/v1/checkins", BODY, nonce, int(time.time() * 1000)
            )
            answer = await running.http.post("/v1/checkins", content=BODY, headers=headers)
            assert answer.status_code == 401
            if answer.json()["error"] == "bad_signature":
                checked += 1
            nonce = answer.headers.get(HEADER_CHALLENGE)  # a chain, if the central hands one out
        elapsed = time.monotonic() - started
        # Every signature check cost one challenge from the bucket: its burst plus its refill.
        assert checked <= 2 * RATE + RATE * elapsed + 1
        assert refused_challenges > 0
        # The genuine gate, whose challenge came from its own answers, was never in the way.
        ok = await genuine.request("GET", "/v1/checkins?after=0&limit=1")
        assert ok.status_code == 200


def test_one_client_cannot_fill_the_spent_challenges_for_everyone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peer_auth, "MAX_SPENT_PER_CLIENT", 3)
    now = [1000.0]
    challenges = Challenges(clock=lambda: now[0], ttl=30.0)
    for _ in range(3):
        challenges.spend(challenges.issue(), "10.0.0.9")
    with pytest.raises(WireError) as busy:
        challenges.spend(challenges.issue(), "10.0.0.9")
    assert (busy.value.name, busy.value.status) == ("busy", 503)
    challenges.spend(challenges.issue(), "10.0.0.2")  # another client goes on
    now[0] += 31.0  # the spent ones expire: the client may spend again
    challenges.spend(challenges.issue(), "10.0.0.9")


@pytest.mark.parametrize("variant", ["!{n}", "{n}!", "{n5}.{rest}", "{n}==", " {n}"])
def test_a_spent_challenge_written_another_way_is_not_a_new_one(variant: str) -> None:
    challenges = Challenges()
    nonce = challenges.issue()
    challenges.spend(nonce, "10.0.0.9")
    other = variant.format(n=nonce, n5=nonce[:5], rest=nonce[5:])
    with pytest.raises(WireError) as refused:
        challenges.spend(other, "10.0.0.9")
    assert refused.value.name == "bad_nonce"
