"""The central's signed time: its header, how the reference central signs its answers (real HTTP), and
how the gate's upstream client checks it and hands it on (never an error of the call)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from gate_daemon.core.keys import SecretKey
from gate_daemon.net.central_time import HEADER_CENTRAL_TIME, CentralTimeError, read_signed_time, signed_time
from gate_daemon.net.peer_auth import HEADER_SIGNATURE
from gate_daemon.net.upstream import UpstreamClient, UpstreamError
from gate_daemon.provision.keyfiles import read_public
from tests.central_fixtures import make_central_world, serving
from tests.fake_central import FakeCentral

GATE = "north-1"
KEY = SecretKey.generate()
#: The central's manifest key, which the gate trusts.
MANIFEST_KEY = SecretKey.generate()
T = 1_795_000_000.0


# ------------------------------------------------------------------ the header


def test_a_signed_time_reads_back_for_the_request_it_answers() -> None:
    value = signed_time(MANIFEST_KEY, T + 0.2345, "request-signature")
    assert value.startswith("1795000000234.")
    keys = [SecretKey.generate().public, MANIFEST_KEY.public]
    assert read_signed_time(value, "request-signature", keys) == T + 0.234


@pytest.mark.parametrize(
    ("value", "binding", "keys", "why"),
    [
        (None, "sig", [MANIFEST_KEY], "carry no Central-Time"),
        (signed_time(MANIFEST_KEY, T, "another request's"), "sig", [MANIFEST_KEY], "not signed"),  # replayed
        (signed_time(SecretKey.generate(), T, "sig"), "sig", [MANIFEST_KEY], "not signed"),
        (signed_time(MANIFEST_KEY, T, "sig").replace("1795", "1796", 1), "sig", [MANIFEST_KEY], "not signed"),
        ("1795000000000", "sig", [MANIFEST_KEY], "not signed"),
        ("soon." + "A" * 88, "sig", [MANIFEST_KEY], "not <milliseconds>"),
        ("1" * 17 + ".x", "sig", [MANIFEST_KEY], "not <milliseconds>"),
        ("1795000000000.not base64!", "sig", [MANIFEST_KEY], "not signed"),
        ("1795000000000." + "A" * 300, "sig", [MANIFEST_KEY], "not <milliseconds>"),
        (signed_time(MANIFEST_KEY, T, "sig"), "sig", [], "not signed"),
    ],
)
def test_a_signed_time_that_cannot_be_taken_is_named(
    value: str | None, binding: str, keys: list[SecretKey], why: str
) -> None:
    with pytest.raises(CentralTimeError, match=why):
        read_signed_time(value, binding, [key.public for key in keys])


# ------------------------------------------------------------------ the reference central


async def test_the_central_signs_its_time_into_answers_to_signed_requests(tmp_path: Path) -> None:
    world = make_central_world(tmp_path / "central")
    trusted = [read_public(world.live.signer_pub)]
    async with serving(world) as running:
        gate = running.gates[GATE]
        before = time.time()
        answer = await gate.request("GET", "/v1/checkins?after=0")
        after = time.time()
        assert answer.status_code == 200
        signature = answer.request.headers[HEADER_SIGNATURE]
        central = read_signed_time(answer.headers.get(HEADER_CENTRAL_TIME), signature, trusted)
        assert before - 0.001 <= central <= after
        # A refusal, and the unsigned challenge, carry none: only what the signature vouched for.
        refused = await gate.request("GET", "/v1/checkins?after=x")
        assert refused.status_code == 400 and HEADER_CENTRAL_TIME not in refused.headers
        forged = await gate.request("GET", "/v1/checkins?after=0", key=SecretKey.generate())
        assert forged.status_code == 401 and HEADER_CENTRAL_TIME not in forged.headers
        challenge = await running.http.get("/v1/challenge")
        assert HEADER_CENTRAL_TIME not in challenge.headers


async def test_the_upstream_client_hands_on_the_centrals_signed_time(tmp_path: Path) -> None:
    world = make_central_world(tmp_path / "central")
    signed: list[tuple[float, float, float, float]] = []
    dates: list[tuple[float, float, float]] = []
    unsigned: list[str] = []
    async with serving(world) as running:
        client = UpstreamClient(
            running.url,
            GATE,
            world.keys[GATE],
            client=httpx.AsyncClient(),
            timeout=10.0,
            trusted=[read_public(world.live.signer_pub)],
            on_signed_time=lambda *args: signed.append(args),
            on_date=lambda *args: dates.append(args),
            on_unsigned=unsigned.append,
        )
        try:
            before = time.time()
            await client.pull(0)
            after = time.time()
        finally:
            await client.aclose()
    (central, sent, received, rtt) = signed[-1]
    assert before - 0.001 <= central <= after and before <= sent <= received <= after
    assert 0 <= rtt <= after - before
    assert len(dates) == 1 and unsigned == []  # the challenge's answer (unsigned) gave its Date only


# ------------------------------------------------------------------ answers without a good signed time


@pytest.fixture
async def central() -> AsyncIterator[FakeCentral]:
    fake = await FakeCentral({GATE: KEY.public}).start()
    try:
        yield fake
    finally:
        await fake.close()


Seen = list[tuple[Any, ...]]


@pytest.fixture
async def connect(central: FakeCentral) -> AsyncIterator[Callable[[Seen, Seen, list[str]], UpstreamClient]]:
    """A client of the fake central trusting ``MANIFEST_KEY``, telling what it saw into the lists given."""
    made: list[UpstreamClient] = []

    def make(signed: Seen, dates: Seen, unsigned: list[str]) -> UpstreamClient:
        client = UpstreamClient(
            central.url,
            GATE,
            KEY,
            client=httpx.AsyncClient(),
            timeout=10.0,
            trusted=[MANIFEST_KEY.public],
            on_signed_time=lambda *args: signed.append(args),
            on_date=lambda *args: dates.append(args),
            on_unsigned=unsigned.append,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


def signing(central: FakeCentral, key: SecretKey, binding: Callable[[str], str], at: float = T) -> None:
    """Answer heartbeats with a Central-Time by ``key``, bound to what ``binding`` makes of the request's."""

    @central.route("POST", "/v1/heartbeat")
    async def answer(request: web.Request, _body: bytes) -> web.StreamResponse:
        value = signed_time(key, at, binding(request.headers[HEADER_SIGNATURE]))
        return web.json_response({"cursor": 0}, headers={HEADER_CENTRAL_TIME: value})


async def test_a_good_signed_time_from_the_fake_central_is_taken(central: FakeCentral, connect: Any) -> None:
    signed: Seen = []
    dates: Seen = []
    unsigned: list[str] = []
    signing(central, MANIFEST_KEY, lambda own: own)
    await connect(signed, dates, unsigned).heartbeat({}, {})
    assert [args[0] for args in signed] == [T] and unsigned == []
    assert len(dates) == 1  # the challenge's


@pytest.mark.parametrize(
    ("key", "binding", "why"),
    [
        (MANIFEST_KEY, lambda own: "another request's " + own, "not signed"),  # replayed from elsewhere
        (SecretKey.generate(), lambda own: own, "not signed"),  # not the manifest key
    ],
)
async def test_a_bad_signed_time_is_ignored_for_time_and_the_call_succeeds(
    central: FakeCentral, connect: Any, key: SecretKey, binding: Callable[[str], str], why: str
) -> None:
    signed: Seen = []
    dates: Seen = []
    unsigned: list[str] = []
    signing(central, key, binding)
    assert (await connect(signed, dates, unsigned).heartbeat({}, {}))["cursor"] == 0
    assert signed == [] and len(unsigned) == 1 and why in unsigned[0]
    assert len(dates) == 2  # its Date still estimates the offset, for the warning


async def test_an_answer_without_a_signed_time_is_told_and_its_date_taken(
    central: FakeCentral, connect: Any
) -> None:
    signed: Seen = []
    dates: Seen = []
    unsigned: list[str] = []
    central.answer("POST", "/v1/heartbeat", {"cursor": 4})
    assert (await connect(signed, dates, unsigned).heartbeat({}, {}))["cursor"] == 4
    assert signed == [] and unsigned == ["its answers carry no Central-Time header"] and len(dates) == 2


async def test_an_error_answer_tells_no_time(central: FakeCentral, connect: Any) -> None:
    signed: Seen = []
    dates: Seen = []
    unsigned: list[str] = []
    central.answer("POST", "/v1/heartbeat", {"error": "unavailable", "detail": "down"}, status=503)
    with pytest.raises(UpstreamError, match="down"):
        await connect(signed, dates, unsigned).heartbeat({}, {})
    assert signed == [] and unsigned == [] and len(dates) == 1  # the challenge's only
