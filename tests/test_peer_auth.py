"""Signed peer requests: challenges used once, within their time, only where issued; signatures that
cover the whole request; a named ``AuthError`` for everything that does not authenticate, and a named
``WireError`` for a refusal that is not about who sent the request."""

from __future__ import annotations

import base64
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gate_daemon.core.keys import PublicKey, SecretKey
from gate_daemon.errors import WireError
from gate_daemon.net import peer_auth
from gate_daemon.net.peer_auth import (
    HEADER_GATE,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIME,
    MAX_SPENT,
    TTL,
    AuthError,
    Caller,
    Challenges,
    admit,
    sign_request,
    signing_bytes,
)

KEY_B = SecretKey.generate()
KEY_C = SecretKey.generate()
ROSTER = {"gate-b": KEY_B.public, "gate-c": KEY_C.public}
PATH = "/v1/redemptions"
BODY = b'{"records":[]}'
TIME_MS = 1_795_000_000_123


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def signed(
    challenges: Challenges,
    *,
    key: SecretKey = KEY_B,
    gate: str = "gate-b",
    method: str = "POST",
    path: str = PATH,
    body: bytes = BODY,
    nonce: str | None = None,
) -> dict[str, str]:
    return sign_request(key, gate, method, path, body, nonce or challenges.issue(), TIME_MS)


def authenticate(
    challenges: Challenges,
    roster: Mapping[str, PublicKey] | None,
    method: str,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
) -> Caller:
    """Both checks, as a receiver runs them: ``admit`` on the headers, then ``verify`` on the body."""
    return admit(challenges, roster, headers).verify(method, path, body)


def refusal(
    challenges: Challenges,
    headers: dict[str, str],
    *,
    roster: dict | None = ROSTER,  # type: ignore[type-arg]
    method: str = "POST",
    path: str = PATH,
    body: bytes = BODY,
) -> WireError:
    with pytest.raises(WireError) as caught:
        authenticate(challenges, roster, method, path, body, headers)
    return caught.value


# ------------------------------------------------------------------ challenges


def test_a_fresh_challenge_is_accepted_once() -> None:
    challenges = Challenges()
    nonce = challenges.issue()
    challenges.spend(nonce)
    with pytest.raises(AuthError) as caught:
        challenges.spend(nonce)
    assert (caught.value.name, caught.value.status) == ("replayed", 401)


def test_challenges_are_all_different() -> None:
    challenges = Challenges(clock=Clock())
    issued = {challenges.issue() for _ in range(200)}
    assert len(issued) == 200
    assert all(len(n) <= 64 and n.isascii() for n in issued)


def test_a_challenge_expires_by_the_receivers_clock() -> None:
    clock = Clock()
    challenges = Challenges(clock=clock)
    fresh, old = challenges.issue(), challenges.issue()
    clock.now += TTL
    challenges.spend(fresh)  # exactly TTL old: still good
    clock.now += 0.001
    with pytest.raises(AuthError) as caught:
        challenges.spend(old)
    assert caught.value.name == "stale_nonce"


def test_a_used_challenge_stays_refused_until_it_would_be_stale_anyway() -> None:
    clock = Clock()
    challenges = Challenges(clock=clock, ttl=10)
    nonce = challenges.issue()
    challenges.spend(nonce)
    for step in (1, 5, 9.9):
        clock.now = 1000 + step
        with pytest.raises(AuthError, match="already used") as caught:
            challenges.spend(nonce)
        assert caught.value.name == "replayed"
    clock.now = 1010.5
    with pytest.raises(AuthError) as caught:
        challenges.spend(nonce)
    assert caught.value.name == "stale_nonce"


def test_another_instances_challenge_is_refused() -> None:
    before_restart, after_restart = Challenges(clock=Clock()), Challenges(clock=Clock())
    with pytest.raises(AuthError) as caught:
        after_restart.spend(before_restart.issue())
    assert caught.value.name == "bad_nonce"
    assert "restarted" in caught.value.detail


def _tamper(nonce: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4)))
    raw[0] ^= 0x80  # the issue time: an attempt to make an old challenge young
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


@pytest.mark.parametrize(
    "garbage",
    ["", "x", "=" * 48, "é" * 48, "\x00" * 48, "A" * 48, "A" * 1000, "not/base64!", "😀" * 12],
)
def test_garbage_is_not_a_challenge(garbage: str) -> None:
    with pytest.raises(AuthError) as caught:
        Challenges().spend(garbage)
    assert caught.value.name == "bad_nonce"


def test_a_challenge_with_its_time_changed_is_not_a_challenge() -> None:
    challenges = Challenges(clock=Clock())
    nonce = challenges.issue()
    with pytest.raises(AuthError) as caught:
        challenges.spend(_tamper(nonce))
    assert caught.value.name == "bad_nonce"
    challenges.spend(nonce)  # the genuine one was not spent by that


def test_too_many_challenges_in_flight_is_busy_until_some_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    assert MAX_SPENT >= 4096  # the real bound; a smaller one keeps this test fast
    monkeypatch.setattr(peer_auth, "MAX_SPENT", 50)
    clock = Clock()
    challenges = Challenges(clock=clock)
    nonces = [challenges.issue() for _ in range(51)]
    for nonce in nonces[:50]:
        challenges.spend(nonce)
    with pytest.raises(WireError) as caught:
        challenges.spend(nonces[-1])
    assert (caught.value.name, caught.value.status) == ("busy", 503)
    assert not isinstance(caught.value, AuthError)  # a server too busy is no failure to authenticate
    clock.now += TTL + 1
    challenges.spend(challenges.issue())  # the spent ones expired and were forgotten


# ------------------------------------------------------------------ authenticate


def test_a_correctly_signed_request_names_its_caller() -> None:
    challenges = Challenges()
    headers = signed(challenges)
    assert authenticate(challenges, ROSTER, "POST", PATH, BODY, headers) == Caller("gate-b", TIME_MS)
    assert refusal(challenges, headers).name == "replayed"  # the very same request again


def test_the_method_is_signed_case_insensitively() -> None:
    challenges = Challenges()
    assert signing_bytes("post", PATH, BODY, "1", "n", "g") == signing_bytes(
        "POST", PATH, BODY, "1", "n", "g"
    )
    headers = signed(challenges, method="post")
    assert authenticate(challenges, ROSTER, "POST", PATH, BODY, headers).gate_id == "gate-b"


@pytest.mark.parametrize("missing", [HEADER_GATE, HEADER_TIME, HEADER_NONCE, HEADER_SIGNATURE])
def test_a_missing_header_is_unsigned(missing: str) -> None:
    challenges = Challenges()
    headers = signed(challenges)
    del headers[missing]
    error = refusal(challenges, headers)
    assert (error.name, error.status) == ("unsigned", 401)
    assert isinstance(error, AuthError)
    assert missing in error.detail


def test_no_headers_at_all_is_unsigned() -> None:
    assert refusal(Challenges(), {}).name == "unsigned"


def test_an_unknown_gate_is_forbidden_and_spends_nothing() -> None:
    challenges = Challenges()
    nonce = challenges.issue()
    error = refusal(challenges, signed(challenges, gate="gate-x", nonce=nonce))
    assert (error.name, error.status) == ("unknown_gate", 403)
    assert isinstance(error, AuthError)
    assert "gate-x" in error.detail
    # Refused before the challenge was looked at: it is still good.
    authenticate(challenges, ROSTER, "POST", PATH, BODY, signed(challenges, nonce=nonce))


def test_without_a_roster_no_peer_is_known() -> None:
    challenges = Challenges()
    error = refusal(challenges, signed(challenges), roster=None)
    assert (error.name, error.status) == ("no_roster", 503)
    assert not isinstance(error, AuthError)  # this gate's own want, not the caller's failure


@pytest.mark.parametrize("stamp", ["", "-1", "1.5", "12a", "１２３", "1" * 17, " 1"])
def test_a_time_that_is_not_milliseconds_is_a_bad_request(stamp: str) -> None:
    challenges = Challenges()
    headers = signed(challenges)
    headers[HEADER_TIME] = stamp
    error = refusal(challenges, headers)
    assert (error.name, error.status) == ("bad_request", 400)
    assert not isinstance(error, AuthError)


def test_another_gates_key_is_a_bad_signature() -> None:
    challenges = Challenges()
    # gate-c's key, claiming to be gate-b; and a key in no roster at all.
    for key in (KEY_C, SecretKey.generate()):
        error = refusal(challenges, signed(challenges, key=key))
        assert (error.name, error.status) == ("bad_signature", 401)
        assert isinstance(error, AuthError)


@pytest.mark.parametrize(
    ("what", "changes"),
    [
        ("body", {"body": BODY + b" "}),
        ("empty body", {"body": b""}),
        ("path", {"path": "/v1/redemptions/pull"}),
        ("query", {"path": PATH + "?x=1"}),
        ("method", {"method": "PUT"}),
    ],
)
def test_a_tampered_request_is_a_bad_signature(what: str, changes: dict[str, object]) -> None:
    challenges = Challenges()
    headers = signed(challenges)
    error = refusal(challenges, headers, **changes)  # type: ignore[arg-type]
    assert error.name == "bad_signature", what


@pytest.mark.parametrize("header", [HEADER_TIME, HEADER_GATE])
def test_a_tampered_header_is_a_bad_signature(header: str) -> None:
    challenges = Challenges()
    headers = signed(challenges)
    headers[header] = {HEADER_TIME: str(TIME_MS + 1), HEADER_GATE: "gate-c"}[header]
    assert refusal(challenges, headers).name == "bad_signature"


def test_a_signature_made_over_another_challenge_does_not_fit() -> None:
    challenges = Challenges()
    headers = signed(challenges)
    headers[HEADER_NONCE] = challenges.issue()  # a fresh, genuine challenge; the signature is not over it
    assert refusal(challenges, headers).name == "bad_signature"


@pytest.mark.parametrize("signature", ["", "!!!", "é", "A" * 88, base64.b64encode(b"x" * 65).decode()])
def test_a_garbage_signature_is_a_bad_signature(signature: str) -> None:
    challenges = Challenges()
    headers = signed(challenges)
    headers[HEADER_SIGNATURE] = signature
    assert refusal(challenges, headers).name == "bad_signature"


def test_a_forged_request_spends_its_challenge() -> None:
    challenges = Challenges()
    nonce = challenges.issue()
    assert refusal(challenges, signed(challenges, key=KEY_C, nonce=nonce)).name == "bad_signature"
    # The genuine gate cannot use that challenge any more (and neither can the forger retry).
    assert refusal(challenges, signed(challenges, nonce=nonce)).name == "replayed"


def test_a_request_for_another_gate_finds_a_foreign_challenge() -> None:
    here, there = Challenges(), Challenges()
    headers = signed(here)
    authenticate(here, ROSTER, "POST", PATH, BODY, headers)
    assert refusal(there, headers).name == "bad_nonce"


# ------------------------------------------------------------------ fuzz

_text = st.text(max_size=120)
_garbage = st.one_of(
    _text,
    st.sampled_from(["gate-b", "gate-c", str(TIME_MS), "0", "A" * 88]),
    st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
)


@given(
    st.dictionaries(
        st.sampled_from([HEADER_GATE, HEADER_TIME, HEADER_NONCE, HEADER_SIGNATURE, "Other"]), _garbage
    ),
    st.booleans(),
    st.binary(max_size=64),
)
def test_fuzz_header_garbage_raises_only_named_refusals(
    headers: dict[str, str], fresh: bool, body: bytes
) -> None:
    challenges = Challenges()
    if fresh:  # a real challenge, so the signature check is reached too
        headers[HEADER_NONCE] = challenges.issue()
    try:
        authenticate(challenges, ROSTER, "POST", PATH, body, headers)
    except AuthError as exc:
        assert exc.name in {"unsigned", "unknown_gate", "bad_nonce", "bad_signature"}
        assert exc.status in {401, 403}
    except WireError as exc:
        assert (exc.name, exc.status) == ("bad_request", 400)
    else:
        raise AssertionError("garbage was accepted")


@given(_text)
def test_fuzz_any_text_as_a_challenge_is_bad_nonce(nonce: str) -> None:
    with pytest.raises(AuthError) as caught:
        Challenges().spend(nonce)
    assert caught.value.name == "bad_nonce"
