"""The upstream client against a central a test controls (real HTTP on 127.0.0.1): signed requests,
challenges, and a name for every way a central can fail or lie."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import socket
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gate_daemon.core.decision import Decision
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.reasons import Reason
from gate_daemon.net.peer_auth import Challenges
from gate_daemon.net.upstream import MAX_REPLY, ItemResult, UpstreamClient, UpstreamError
from tests.fake_central import FakeCentral
from tests.loop_thread import LoopThread

GATE = "north-1"
KEY = SecretKey.generate()
#: Bounds a failing test only (a hang the client should have cut): never a timing assertion.
GUARD = 20.0
DECISION_OK = Decision(Reason.OK, "Welcome", ticket_id="T-0001").as_dict()


@pytest.fixture
async def central() -> AsyncIterator[FakeCentral]:
    fake = await FakeCentral({GATE: KEY.public}).start()
    try:
        yield fake
    finally:
        await fake.close()


Factory = Callable[..., UpstreamClient]


@pytest.fixture
async def connect(central: FakeCentral) -> AsyncIterator[Factory]:
    """Make clients (to the fake central unless ``url`` says otherwise); all closed at the end."""
    made: list[UpstreamClient] = []

    def make(
        url: str | None = None,
        *,
        gate: str = GATE,
        key: SecretKey = KEY,
        timeout: float = 5.0,
        **kwargs: Any,
    ) -> UpstreamClient:
        client = UpstreamClient(
            url or central.url, gate, key, client=httpx.AsyncClient(), timeout=timeout, **kwargs
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


async def failure(call: Any) -> UpstreamError:
    """The ``UpstreamError`` an awaitable raises (and nothing else)."""
    with pytest.raises(UpstreamError) as caught:
        async with asyncio.timeout(GUARD):
            await call
    return caught.value


def record(n: int) -> dict[str, Any]:
    """Something shaped like a record's wire form (the fake central does not parse it)."""
    return {"uuid": str(uuidlib.UUID(int=n)), "seq": n}


def push_answer(records: list[dict[str, Any]], status: str = "applied", cursor: int = 7) -> dict[str, Any]:
    return {"results": [{"uuid": r["uuid"], "status": status} for r in records], "cursor": cursor}


# ------------------------------------------------------------------ signed requests


async def test_a_push_is_signed_verified_and_answered_per_record(
    central: FakeCentral, connect: Factory
) -> None:
    records = [record(1), record(2), record(3)]

    @central.route("POST", "/v1/checkins")
    async def checkins(_request: web.Request, body: bytes) -> web.StreamResponse:
        sent = json.loads(body)["records"]
        return web.json_response(
            {
                "results": [
                    {"uuid": sent[0]["uuid"], "status": "applied"},
                    {"uuid": sent[1]["uuid"], "status": "conflict", "reason": "double_entry", "winner": "x"},
                    {"uuid": None, "status": "rejected", "reason": "bad_record", "detail": "records[2]: seq"},
                ],
                "cursor": 12,
            }
        )

    answer = await connect().push(records)
    assert answer.cursor == 12
    assert answer.results == (
        ItemResult(records[0]["uuid"], "applied"),
        ItemResult(records[1]["uuid"], "conflict", "double_entry"),
        ItemResult(None, "rejected", "bad_record", "records[2]: seq"),
    )
    # The fake central verified the signature (admit + verify) over exactly this body, as this gate.
    [seen] = central.signed("POST", "/v1/checkins")
    assert seen.gate == GATE and seen.json() == {"records": records}
    assert central.refused == []


async def test_every_call_verifies_at_the_central(central: FakeCentral, connect: Factory) -> None:
    central.answer("GET", "/v1/checkins", {"records": [], "cursor": 4, "more": False})
    central.answer("GET", "/v1/participants", {"query": "A-1", "results": [{"ticket_id": "T-0001"}]})
    central.answer("POST", "/v1/heartbeat", {"cursor": 4, "manifest_version": 1, "received_at": 1.0})
    central.answer("POST", "/v1/validate", {"uuid": "u-1", "decision": DECISION_OK})
    client = connect()
    page = await client.pull(4, limit=10)
    assert (page.records, page.cursor, page.more) == ((), 4, False)
    assert await client.search("A-1 b/é?&", limit=5) == [{"ticket_id": "T-0001"}]
    assert (await client.heartbeat({"scans": 3}, {"mode": "online"}))["cursor"] == 4
    decision = await client.validate("u-1", "PAYLOAD", kind="entry", zone="floor", session=None, timeout=2)
    assert decision == Decision.from_dict(DECISION_OK)
    assert [s.path_qs for s in central.seen] == [
        "/v1/checkins?after=4&limit=10",
        "/v1/participants?q=A-1+b%2F%C3%A9%3F%26&limit=5",
        "/v1/heartbeat",
        "/v1/validate",
    ]
    assert central.seen[2].json()["counters"] == {"scans": 3}
    assert central.seen[3].json() == {
        "uuid": "u-1",
        "payload": "PAYLOAD",
        "kind": "entry",
        "zone": "floor",
        "session": None,
    }
    assert central.refused == []


async def test_one_challenge_serves_a_steady_client(central: FakeCentral, connect: Factory) -> None:
    central.answer("POST", "/v1/heartbeat", {"cursor": 0})
    client = connect()
    for _ in range(5):
        await client.heartbeat({}, {})
    # The first call fetched a challenge; each answer carried the next one.
    assert central.challenge_gets == 1
    assert len(central.seen) == 5 and central.refused == []


async def test_without_challenges_in_answers_each_call_fetches_one(
    central: FakeCentral, connect: Factory
) -> None:
    central.hand_out_challenges = False
    central.answer("POST", "/v1/heartbeat", {"cursor": 0})
    client = connect()
    for _ in range(3):
        await client.heartbeat({}, {})
    assert central.challenge_gets == 3 and len(central.seen) == 3


async def test_a_stale_challenge_is_replaced_once_and_the_call_succeeds(
    central: FakeCentral, connect: Factory
) -> None:
    central.answer("POST", "/v1/heartbeat", {"cursor": 0})
    client = connect()
    await client.heartbeat({}, {})
    # The challenge the client now holds ages past the central's TTL (the client still trusts it).
    central.skew += 31.0
    central.answer("POST", "/v1/heartbeat", {"cursor": 1})
    assert (await client.heartbeat({}, {}))["cursor"] == 1
    assert central.refused == ["stale_nonce"]
    # The refusal carried a fresh challenge: no extra fetch.
    assert central.challenge_gets == 1
    assert len(central.signed("POST", "/v1/heartbeat")) == 2


async def test_a_restarted_central_refuses_the_old_challenge_and_a_new_one_is_fetched(
    central: FakeCentral, connect: Factory
) -> None:
    central.answer("POST", "/v1/heartbeat", {"cursor": 0})
    client = connect()
    await client.heartbeat({}, {})
    central.challenges = Challenges(clock=central.challenges._clock)  # a new secret: a restart
    central.hand_out_challenges = False
    await client.heartbeat({}, {})
    assert central.refused == ["bad_nonce"]
    assert central.challenge_gets == 2
    assert len(central.signed("POST", "/v1/heartbeat")) == 2


async def test_a_challenge_refused_twice_is_named_and_not_retried_again(
    central: FakeCentral, connect: Factory
) -> None:
    central.challenges = Challenges(ttl=-1.0)  # every challenge stale on arrival
    central.answer("POST", "/v1/heartbeat", {"cursor": 0})
    error = await failure(connect().heartbeat({}, {}))
    assert (error.name, error.status) == ("stale_nonce", 401)
    assert central.refused == ["stale_nonce", "stale_nonce"]


async def test_an_old_challenge_is_not_used_by_the_client(central: FakeCentral, connect: Factory) -> None:
    central.answer("POST", "/v1/heartbeat", {"cursor": 0})
    now = [1000.0]
    client = connect(monotonic=lambda: now[0])
    await client.heartbeat({}, {})
    now[0] += 25.0  # past CHALLENGE_AGE on the client's own clock
    await client.heartbeat({}, {})
    assert central.challenge_gets == 2 and central.refused == []


async def test_a_gate_not_in_the_roster_gets_the_centrals_name(
    central: FakeCentral, connect: Factory
) -> None:
    error = await failure(connect(gate="south-9").heartbeat({}, {}))
    assert (error.name, error.status) == ("unknown_gate", 403)
    assert "south-9" in error.detail


async def test_a_wrong_key_gets_bad_signature(central: FakeCentral, connect: Factory) -> None:
    central.answer("POST", "/v1/heartbeat", {"cursor": 0})
    error = await failure(connect(key=SecretKey.generate()).heartbeat({}, {}))
    assert (error.name, error.status) == ("bad_signature", 401)
    assert central.seen == []


# ------------------------------------------------------------------ failures, each named


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connection_refused_is_unreachable(connect: Factory) -> None:
    error = await failure(connect(f"http://127.0.0.1:{free_port()}").heartbeat({}, {}))
    assert error.name == "unreachable"
    assert str(error).startswith("unreachable: ")


async def test_a_central_that_hangs_is_a_timeout(central: FakeCentral, connect: Factory) -> None:
    central.hang("POST", "/v1/heartbeat")
    error = await failure(connect(timeout=0.3).heartbeat({}, {}))
    assert error.name == "timeout"
    assert len(central.seen) == 1  # it got there, and no answer came


async def test_a_challenge_that_hangs_is_a_timeout(central: FakeCentral, connect: Factory) -> None:
    async def hang(_request: web.Request, _body: bytes) -> web.StreamResponse:
        await central.release.wait()
        return web.Response()

    central.challenge_route = hang
    assert (await failure(connect(timeout=0.3).heartbeat({}, {}))).name == "timeout"
    assert (await failure(connect(timeout=0.3).ping(0.3))).name == "timeout"


async def test_validate_keeps_its_own_deadline(central: FakeCentral, connect: Factory) -> None:
    central.hang("POST", "/v1/validate")
    client = connect(timeout=600.0)  # the client's default would outlast the guard
    call = client.validate("u-1", "P", kind="entry", zone=None, session=None, timeout=0.3)
    assert (await failure(call)).name == "timeout"


async def test_a_body_dripping_past_the_deadline_is_a_timeout(central: FakeCentral, connect: Factory) -> None:
    @central.route("GET", "/v1/checkins")
    async def drip(request: web.Request, _body: bytes) -> web.StreamResponse:
        response = web.StreamResponse(headers=central.fresh())
        response.content_type = "application/json"
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            await response.write(b'{"records": [')
            while not central.release.is_set():
                await response.write(b" ")
                await asyncio.sleep(0.02)
        return response

    assert (await failure(connect(timeout=0.4).pull(0))).name == "timeout"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"<html>welcome</html>", "not JSON"),
        (b"\xff\xfe{", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'"results"', "not a JSON object"),
        (b"", "not JSON"),
    ],
)
async def test_an_answer_that_is_not_a_json_object_is_bad_reply(
    central: FakeCentral, connect: Factory, body: bytes, words: str
) -> None:
    central.answer("POST", "/v1/heartbeat", body)
    error = await failure(connect().heartbeat({}, {}))
    assert error.name == "bad_reply" and words in error.detail


async def test_json_nested_past_the_parsers_depth_is_bad_reply(
    central: FakeCentral, connect: Factory
) -> None:
    # A few hundred KiB of brackets: json.loads raises RecursionError, not ValueError.
    deep = b"[" * 200_000
    central.answer("GET", "/v1/participants", deep)
    error = await failure(connect().search("ab"))
    assert error.name == "bad_reply" and "not JSON" in error.detail
    central.answer("POST", "/v1/heartbeat", b'{"error": ' + deep, status=400)
    error = await failure(connect().heartbeat({}, {}))
    assert (error.name, error.status) == ("bad_reply", 400)


async def test_push_answers_of_the_wrong_shape_are_bad_reply(central: FakeCentral, connect: Factory) -> None:
    records = [record(1), record(2)]
    client = connect()
    wrong = [
        push_answer(records[:1]),  # one result for two records
        push_answer([*records, record(3)]),  # three
        {"results": {"0": "applied"}, "cursor": 1},
        {"cursor": 1},
        push_answer(records, status="stored"),
        {"results": [{"status": "applied"}, "applied"], "cursor": 1},
        {"results": push_answer(records)["results"], "cursor": -1},
        {"results": push_answer(records)["results"], "cursor": True},
        {"results": push_answer(records)["results"], "cursor": 1.5},
        {"results": push_answer(records)["results"]},
        push_answer(records[::-1]),  # answers out of order: positions would pass an unanswered record
    ]
    for answer in wrong:
        central.answer("POST", "/v1/checkins", answer)
        error = await failure(client.push(records))
        assert error.name == "bad_reply", answer
    central.answer("POST", "/v1/checkins", push_answer(records, status="duplicate"))
    assert [r.status for r in (await client.push(records)).results] == ["duplicate", "duplicate"]


async def test_pull_answers_of_the_wrong_shape_are_bad_reply(central: FakeCentral, connect: Factory) -> None:
    client = connect()
    wrong = [
        {"records": [], "cursor": 5},  # no more
        {"records": [], "cursor": 5, "more": "no"},
        {"records": {}, "cursor": 5, "more": False},
        {"records": [record(1)], "cursor": 4, "more": False},  # backwards
        {"records": [record(1)], "cursor": 10, "more": False},  # records, yet the cursor stayed
        {"records": [], "cursor": 9, "more": False},  # backwards, even empty
        {"records": [record(n) for n in range(3)], "cursor": 13, "more": True},  # over the limit
        {"records": [], "more": False},
    ]
    for answer in wrong:
        central.answer("GET", "/v1/checkins", answer)
        error = await failure(client.pull(10, limit=2))
        assert error.name == "bad_reply", answer
    central.answer("GET", "/v1/checkins", {"records": [record(1)], "cursor": 11, "more": True})
    page = await client.pull(10, limit=2)
    assert (page.records, page.cursor, page.more) == ((record(1),), 11, True)


async def test_validate_answers_of_the_wrong_shape_are_bad_reply(
    central: FakeCentral, connect: Factory
) -> None:
    client = connect()
    wrong = [
        {"uuid": "other", "decision": DECISION_OK},
        {"decision": DECISION_OK},
        {"uuid": "u-1", "decision": "allow"},
        {"uuid": "u-1", "decision": {**DECISION_OK, "reason": "welcome"}},
        {"uuid": "u-1", "decision": {"reason": "ok"}},
        {"uuid": "u-1", "decision": {**DECISION_OK, "format": "hologram"}},
        {"uuid": "u-1", "decision": {**DECISION_OK, "opens_at": "tomorrow"}},
        {"uuid": "u-1", "decision": {**DECISION_OK, "reason": ["ok"]}},
    ]
    for answer in wrong:
        central.answer("POST", "/v1/validate", answer)
        call = client.validate("u-1", "P", kind="entry", zone=None, session=None, timeout=2)
        assert (await failure(call)).name == "bad_reply", answer


async def test_search_answers_of_the_wrong_shape_are_bad_reply(
    central: FakeCentral, connect: Factory
) -> None:
    client = connect()
    for answer in ({"query": "ab"}, {"results": "none"}, {"results": [1, 2]}):
        central.answer("GET", "/v1/participants", answer)
        assert (await failure(client.search("ab"))).name == "bad_reply", answer


async def test_a_named_central_error_keeps_its_name_detail_and_status(
    central: FakeCentral, connect: Factory
) -> None:
    central.answer("POST", "/v1/heartbeat", {"error": "no_manifest", "detail": "load one first"}, status=503)
    error = await failure(connect().heartbeat({}, {}))
    assert (error.name, error.detail, error.status) == ("no_manifest", "load one first", 503)
    central.answer("POST", "/v1/heartbeat", {"error": "rate_limited"}, status=429)
    error = await failure(connect().heartbeat({}, {}))
    assert (error.name, error.detail, error.status) == ("rate_limited", "HTTP 429", 429)


async def test_a_central_error_name_is_bounded(central: FakeCentral, connect: Factory) -> None:
    central.answer("POST", "/v1/heartbeat", {"error": "x" * 10_000, "detail": "y" * 10_000}, status=400)
    error = await failure(connect().heartbeat({}, {}))
    assert error.name == "x" * 64 and len(error.detail) <= 300


@pytest.mark.parametrize(("status", "name"), [(502, "unreachable"), (503, "unreachable"), (500, "bad_reply")])
async def test_an_http_error_without_a_name(
    central: FakeCentral, connect: Factory, status: int, name: str
) -> None:
    central.answer("POST", "/v1/heartbeat", b"<h1>Service Unavailable</h1>", status=status)
    error = await failure(connect().heartbeat({}, {}))
    assert (error.name, error.status) == (name, status)
    assert f"HTTP {status}" in error.detail


async def test_a_proxy_answering_503_for_the_challenge_is_unreachable(
    central: FakeCentral, connect: Factory
) -> None:
    async def down(_request: web.Request, _body: bytes) -> web.StreamResponse:
        return web.Response(status=503, text="upstream connect error")

    central.challenge_route = down
    error = await failure(connect().heartbeat({}, {}))
    assert (error.name, error.status) == ("unreachable", 503)
    assert (await failure(connect().ping(1.0))).name == "unreachable"


async def test_a_challenge_answer_without_a_challenge_is_bad_reply(
    central: FakeCentral, connect: Factory
) -> None:
    for body in ({"ttl_ms": 1}, {"challenge": ""}, {"challenge": 5}, {"challenge": "c" * 201}):

        async def odd(_request: web.Request, _body: bytes, body: Any = body) -> web.StreamResponse:
            return web.json_response(body)

        central.challenge_route = odd
        assert (await failure(connect().ping(1.0))).name == "bad_reply", body


@contextlib.asynccontextmanager
async def raw_server(reply: bytes) -> AsyncIterator[str]:
    """A TCP server on 127.0.0.1 that answers every connection with ``reply`` and closes it."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read(1024)
            writer.write(reply)
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    "reply",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"\x00\x01\x02\x03" * 64,
        b"HTTP/1.1 banana\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: nine\r\n\r\n{}",
        b"",  # closed without a word
    ],
)
async def test_garbage_instead_of_http_is_named(connect: Factory, reply: bytes) -> None:
    async with raw_server(reply) as url:
        error = await failure(connect(url).heartbeat({}, {}))
    assert error.name in {"bad_reply", "unreachable"}, error


async def test_a_declared_length_over_the_limit_is_too_large(central: FakeCentral, connect: Factory) -> None:
    @central.route("GET", "/v1/checkins")
    async def huge(request: web.Request, _body: bytes) -> web.StreamResponse:
        response = web.StreamResponse(headers=central.fresh())
        response.content_length = MAX_REPLY + 1
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            await response.write(b"{")
            await central.release.wait()
        return response

    error = await failure(connect().pull(0))
    assert error.name == "too_large" and str(MAX_REPLY + 1) in error.detail


async def test_a_chunked_body_over_the_limit_is_too_large(central: FakeCentral, connect: Factory) -> None:
    sent = [0]

    @central.route("GET", "/v1/checkins")
    async def endless(request: web.Request, _body: bytes) -> web.StreamResponse:
        response = web.StreamResponse(headers=central.fresh())
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = b" " * 65536
        with contextlib.suppress(ConnectionError):
            while sent[0] <= 4 * MAX_REPLY and not central.release.is_set():
                await response.write(chunk)
                sent[0] += len(chunk)
        return response

    error = await failure(connect().pull(0))
    assert error.name == "too_large"
    # The client stopped reading at the limit; the server was not allowed to send four times as much.
    assert sent[0] < 4 * MAX_REPLY


async def test_an_answer_is_asked_for_uncompressed(central: FakeCentral, connect: Factory) -> None:
    """A central (or a proxy before it) that compresses when asked must not be asked.

    The client counts and keeps the raw bytes (a manifest is written to disk byte for byte).
    """

    @central.route("POST", "/v1/heartbeat")
    async def compressing(_request: web.Request, _body: bytes) -> web.StreamResponse:
        response = web.json_response({"cursor": 3, "padding": "x" * 2000})
        response.enable_compression()
        return response

    assert (await connect().heartbeat({}, {}))["cursor"] == 3


# ------------------------------------------------------------------ the Date header


async def test_the_date_header_reaches_on_date(central: FakeCentral, connect: Factory) -> None:
    stamp = 1_795_000_000.0
    central.answer("POST", "/v1/heartbeat", {"cursor": 0}, Date=email.utils.formatdate(stamp, usegmt=True))
    seen: list[tuple[float, float, float]] = []
    ticks = iter(float(n) for n in range(100, 200))
    client = connect(on_date=lambda *args: seen.append(args), clock=lambda: next(ticks))
    await client.heartbeat({}, {})
    # The challenge's answer (aiohttp's own Date) and the heartbeat's (the one set here).
    assert len(seen) == 2
    server, sent, received = seen[-1]
    assert server == stamp
    assert sent < received  # the client's clock, read before sending and after the answer


async def test_an_unreadable_date_header_is_ignored(central: FakeCentral, connect: Factory) -> None:
    central.answer("POST", "/v1/heartbeat", {"cursor": 5}, Date="the day after tomorrow")
    seen: list[tuple[float, float, float]] = []
    client = connect(on_date=lambda *args: seen.append(args))
    assert (await client.heartbeat({}, {}))["cursor"] == 5
    assert len(seen) == 1  # only the challenge's


async def test_the_date_of_an_error_answer_is_not_taken(central: FakeCentral, connect: Factory) -> None:
    # A proxy's error page (or anything that is not the central's answer) says nothing of the time.
    future = email.utils.formatdate(1_900_000_000.0, usegmt=True)
    refusal = {"error": "unavailable", "detail": "down"}
    central.answer("POST", "/v1/heartbeat", refusal, status=503, Date=future)
    seen: list[tuple[float, float, float]] = []
    client = connect(on_date=lambda *args: seen.append(args))
    with pytest.raises(UpstreamError) as caught:
        await client.heartbeat({}, {})
    assert caught.value.name == "unavailable"
    assert len(seen) == 1 and seen[0][0] != 1_900_000_000.0  # only the challenge's


# ------------------------------------------------------------------ manifest downloads


def serve_manifest(central: FakeCentral, data: bytes, *, chunked: bool = False, **headers: str) -> None:
    @central.route("GET", "/v1/manifest")
    async def manifest(request: web.Request, _body: bytes) -> web.StreamResponse:
        if request.query.get("have") == "3":
            return web.Response(status=304)
        response = web.StreamResponse(headers={**central.fresh(), **headers})
        response.content_type = "application/octet-stream"
        if chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = len(data)
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for start in range(0, len(data), 10_000):
                await response.write(data[start : start + 10_000])
            await response.write_eof()
        return response


MANIFEST = bytes(range(256)) * 200  # 51,200 bytes


async def test_a_manifest_is_downloaded_to_the_file_with_progress(
    central: FakeCentral, connect: Factory, tmp_path: Path
) -> None:
    serve_manifest(central, MANIFEST, **{"Manifest-Version": "4", "Manifest-Kind": "delta"})
    progress: list[tuple[int, int | None]] = []
    dest = tmp_path / "incoming.gdm"
    fetched = await connect().manifest(
        2, dest, max_bytes=1 << 20, timeout=5.0, progress=lambda *a: progress.append(a)
    )
    assert fetched is not None
    assert (fetched.path, fetched.version, fetched.kind, fetched.size) == (dest, 4, "delta", len(MANIFEST))
    assert dest.read_bytes() == MANIFEST
    assert progress and progress[-1] == (len(MANIFEST), len(MANIFEST))
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    assert central.signed("GET", "/v1/manifest")[0].path_qs == "/v1/manifest?have=2"


async def test_a_chunked_manifest_has_no_total(
    central: FakeCentral, connect: Factory, tmp_path: Path
) -> None:
    serve_manifest(central, MANIFEST, chunked=True, **{"Manifest-Version": "4", "Manifest-Kind": "full"})
    progress: list[tuple[int, int | None]] = []
    fetched = await connect().manifest(
        None, tmp_path / "m", max_bytes=1 << 20, timeout=5.0, progress=lambda *a: progress.append(a)
    )
    assert fetched is not None and fetched.size == len(MANIFEST) and fetched.kind == "full"
    assert progress[-1] == (len(MANIFEST), None)
    assert central.signed("GET", "/v1/manifest")[0].path_qs == "/v1/manifest"


async def test_the_latest_already_held_is_none_and_leaves_no_file(
    central: FakeCentral, connect: Factory, tmp_path: Path
) -> None:
    serve_manifest(central, MANIFEST, **{"Manifest-Version": "3", "Manifest-Kind": "full"})
    dest = tmp_path / "incoming.gdm"
    assert await connect().manifest(3, dest, max_bytes=1 << 20, timeout=5.0) is None
    assert not dest.exists()


@pytest.mark.parametrize(
    "headers",
    [
        {"Manifest-Kind": "full"},
        {"Manifest-Version": "four", "Manifest-Kind": "full"},
        {"Manifest-Version": "-4", "Manifest-Kind": "full"},
        {"Manifest-Version": "4"},
        {"Manifest-Version": "4", "Manifest-Kind": "partial"},
    ],
)
async def test_a_manifest_without_its_headers_is_bad_reply_and_leaves_no_file(
    central: FakeCentral, connect: Factory, tmp_path: Path, headers: dict[str, str]
) -> None:
    serve_manifest(central, MANIFEST, **headers)
    dest = tmp_path / "incoming.gdm"
    assert (await failure(connect().manifest(None, dest, max_bytes=1 << 20, timeout=5.0))).name == "bad_reply"
    assert not dest.exists()


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_oversized_manifest_is_too_large_and_leaves_no_file(
    central: FakeCentral, connect: Factory, tmp_path: Path, chunked: bool
) -> None:
    serve_manifest(central, MANIFEST, chunked=chunked, **{"Manifest-Version": "4", "Manifest-Kind": "full"})
    dest = tmp_path / "incoming.gdm"
    error = await failure(connect().manifest(None, dest, max_bytes=len(MANIFEST) - 1, timeout=5.0))
    assert error.name == "too_large"
    assert not dest.exists()


async def test_a_manifest_that_cannot_be_written_is_unwritable(
    central: FakeCentral, connect: Factory, tmp_path: Path
) -> None:
    serve_manifest(central, MANIFEST, **{"Manifest-Version": "4", "Manifest-Kind": "full"})
    dest = tmp_path / "missing-folder" / "incoming.gdm"
    error = await failure(connect().manifest(None, dest, max_bytes=1 << 20, timeout=5.0))
    assert error.name == "unwritable" and str(dest) in error.detail


async def test_a_manifest_download_that_hangs_is_a_timeout_and_leaves_no_file(
    central: FakeCentral, connect: Factory, tmp_path: Path
) -> None:
    @central.route("GET", "/v1/manifest")
    async def stalls(request: web.Request, _body: bytes) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={**central.fresh(), "Manifest-Version": "4", "Manifest-Kind": "full"}
        )
        response.content_length = len(MANIFEST)
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            await response.write(MANIFEST[:1000])
            await central.release.wait()
        return response

    dest = tmp_path / "incoming.gdm"
    assert (await failure(connect().manifest(None, dest, max_bytes=1 << 20, timeout=0.4))).name == "timeout"
    assert not dest.exists()


async def test_a_manifest_answer_other_than_200_or_304_is_bad_reply(
    central: FakeCentral, connect: Factory, tmp_path: Path
) -> None:
    """A 2xx that is not 200 is not the contract's: no file was written, so no fetch may be claimed."""

    @central.route("GET", "/v1/manifest")
    async def partial(_request: web.Request, _body: bytes) -> web.StreamResponse:
        return web.Response(
            body=MANIFEST, status=203, headers={"Manifest-Version": "4", "Manifest-Kind": "full"}
        )

    dest = tmp_path / "incoming.gdm"
    assert (await failure(connect().manifest(None, dest, max_bytes=1 << 20, timeout=5.0))).name == "bad_reply"
    assert not dest.exists()


# ------------------------------------------------------------------ hostile answers (hypothesis)

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_STATUS = st.sampled_from(["applied", "duplicate", "conflict", "rejected"]) | _JSON
_RESULT = st.fixed_dictionaries(
    {}, optional={"uuid": _JSON, "status": _STATUS, "reason": _JSON, "detail": _JSON}
)
_DECISION = st.fixed_dictionaries(
    {
        "reason": st.sampled_from([r.value for r in Reason]) | _JSON,
        "message": st.text(max_size=20) | _JSON,
    },
    optional={
        "ticket_id": _JSON,
        "format": st.sampled_from(["signed", "reference", "legacy"]) | _JSON,
        "session": _JSON,
        "zone": _JSON,
        "entries_allowed": _JSON,
        "entries_used": _JSON,
        "opens_in": _JSON,
        "opens_at": st.sampled_from(["2026-11-21T18:00:00Z"]) | _JSON,
        "last_entry_at": st.sampled_from(["2026-11-21T18:00:00Z"]) | _JSON,
        "last_entry_gate": _JSON,
    },
)
_ANSWERS = {
    "push": st.fixed_dictionaries(
        {}, optional={"results": st.lists(_RESULT, min_size=0, max_size=3) | _JSON, "cursor": _JSON}
    ),
    "pull": st.fixed_dictionaries(
        {}, optional={"records": st.lists(_JSON, max_size=3) | _JSON, "cursor": _JSON, "more": _JSON}
    ),
    "validate": st.fixed_dictionaries({"uuid": st.just("u-1") | _JSON, "decision": _DECISION | _JSON}),
}
_ROUTES = {
    "push": ("POST", "/v1/checkins"),
    "pull": ("GET", "/v1/checkins"),
    "validate": ("POST", "/v1/validate"),
}
_STR_DETAILS = ("ticket_id", "session", "zone", "last_entry_gate", "message")
_INT_DETAILS = ("entries_allowed", "entries_used", "opens_in", "opens_at")


@pytest.fixture(scope="module")
def hostile() -> Iterator[tuple[LoopThread, FakeCentral, UpstreamClient]]:
    """One central and client for every example, on a loop of their own."""

    async def start() -> tuple[FakeCentral, UpstreamClient]:
        fake = await FakeCentral({GATE: KEY.public}).start()
        return fake, UpstreamClient(fake.url, GATE, KEY, client=httpx.AsyncClient(), timeout=5.0)

    loop = LoopThread("hostile-central")
    fake, client = loop.run(start())
    try:
        yield loop, fake, client
    finally:
        loop.run(client.aclose())
        loop.run(fake.close())
        loop.close()


async def _call(client: UpstreamClient, verb: str) -> object:
    if verb == "push":
        return await client.push([record(1), record(2)])
    if verb == "pull":
        return await client.pull(5, limit=3)
    return await client.validate("u-1", "P", kind="entry", zone=None, session=None, timeout=5)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    data=st.data(),
    verb=st.sampled_from(sorted(_ANSWERS)),
    status=st.sampled_from([200, 200, 200, 201, 400, 503]),
)
def test_any_json_answer_is_an_answer_or_an_upstream_error(
    hostile: tuple[LoopThread, FakeCentral, UpstreamClient], data: st.DataObject, verb: str, status: int
) -> None:
    loop, fake, client = hostile
    answer = data.draw(_ANSWERS[verb] | _JSON, label="answer")
    method, path = _ROUTES[verb]
    fake.answer(method, path, answer, status=status)
    try:
        got = loop.run(_call(client, verb))
    except UpstreamError as exc:
        assert exc.name and len(exc.detail) <= 300
        return
    assert status < 400
    if isinstance(got, Decision):
        assert_typed(got)


def assert_typed(decision: Decision) -> None:
    """What the gate will record and show: every detail of the type the decision declares."""
    for name in _STR_DETAILS:
        value = getattr(decision, name)
        assert value is None or isinstance(value, str), (name, value)
    for name in _INT_DETAILS:
        value = getattr(decision, name)
        assert value is None or (isinstance(value, int) and not isinstance(value, bool)), (name, value)
    assert isinstance(decision.last_entry_at, float | int | None)
    json.dumps(decision.as_dict())


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(decision=_DECISION)
def test_a_decision_from_the_central_is_well_typed_or_bad_reply(
    hostile: tuple[LoopThread, FakeCentral, UpstreamClient], decision: dict[str, Any]
) -> None:
    loop, fake, client = hostile
    fake.answer("POST", "/v1/validate", {"uuid": "u-1", "decision": decision})
    try:
        got = loop.run(_call(client, "validate"))
    except UpstreamError as exc:
        assert exc.name == "bad_reply"
        return
    assert_typed(got)  # type: ignore[arg-type]


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.text(min_size=2, max_size=64))
def test_any_search_text_is_signed_as_sent(
    hostile: tuple[LoopThread, FakeCentral, UpstreamClient], query: str
) -> None:
    loop, fake, client = hostile
    fake.answer("GET", "/v1/participants", {"query": query, "results": []})
    refused = len(fake.refused)
    try:
        assert loop.run(client.search(query, limit=3)) == []
    except UpstreamError as exc:  # only a query no URL can carry may fail, and not for its signature
        assert exc.name != "bad_signature", query
        raise
    assert len(fake.refused) == refused
