"""The HTTP edges of the gate's LAN API and the central: 405 with Allow, malformed HTTP logged as one line.

Real servers on 127.0.0.1; malformed requests are written on raw sockets, since no HTTP
client would send them.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp.http_exceptions import BadHttpMessage

from gate_daemon.net.http_edge import MalformedRequestLog
from gate_daemon.net.lan import LanServer, create_app
from tests.central_fixtures import make_central_world, serving

#: Requests aiohttp cannot parse, by what is wrong with them.
MALFORMED = {
    "bad method": b"GE(T /v1/status HTTP/1.1\r\nHost: gate\r\n\r\n",
    "bad header character": b"GET /v1/status HTTP/1.1\r\nHost: gate\r\nX-Note: a\x01b\r\n\r\n",
    "header line over 8 KB": b"GET /v1/status HTTP/1.1\r\nHost: gate\r\nX-Note: " + b"a" * 9000 + b"\r\n\r\n",
}
#: Times each malformed request is sent: far more than the lines allowed for them.
BURST = 20


async def _status() -> dict[str, Any]:
    return {"gate": "north-1"}


async def _raw(port: int, request: bytes) -> bytes:
    """Write ``request`` as is and read the answer until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()


def _lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What was logged about malformed requests, after checking nothing carried a traceback."""
    for record in caplog.records:
        assert record.exc_info is None and not record.exc_text, record.getMessage()
        assert record.name != "aiohttp.server", record.getMessage()
    return [r for r in caplog.records if "malformed HTTP request" in r.getMessage()]


@pytest.mark.parametrize("kind", sorted(MALFORMED))
async def test_lan_logs_malformed_requests_as_one_rate_limited_line(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = LanServer(create_app(_status))
    await server.start("127.0.0.1", 0)
    try:
        with caplog.at_level(logging.DEBUG):
            for _ in range(BURST):
                answer = await _raw(server.port, MALFORMED[kind])
                head, _, body = answer.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.0 400 ") and b"Content-Type: text/plain" in head
                assert body and b"Traceback" not in body
            lines = _lines(caplog)
        assert 1 <= len(lines) < BURST
        first = lines[0]
        assert first.levelno == logging.WARNING and first.name == "gate_daemon.net.lan"
        assert "\n" not in first.getMessage()
        assert first.getMessage().startswith("LAN: refused a malformed HTTP request from 127.0.0.1 ")
        async with httpx.AsyncClient() as http:
            still = await http.get(f"http://127.0.0.1:{server.port}/v1/status")
        assert still.status_code == 200  # and it keeps serving
    finally:
        await server.aclose()


async def test_central_logs_malformed_requests_as_one_rate_limited_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving(make_central_world(tmp_path / "central")) as running:
        port = int(running.url.rsplit(":", 1)[1])
        with caplog.at_level(logging.DEBUG):
            for request in [*MALFORMED.values()] * (BURST // len(MALFORMED)):
                answer = await _raw(port, request)
                assert answer.startswith(b"HTTP/1.0 400 ")
            lines = _lines(caplog)
        assert 1 <= len(lines) < BURST
        assert lines[0].getMessage().startswith("central: refused a malformed HTTP request from 127.0.0.1 ")
        assert lines[0].name == "gate_daemon.central.app"
        assert (await running.http.get("/v1/challenge")).status_code == 200


async def test_a_405_says_what_the_path_allows() -> None:
    server = LanServer(create_app(_status))
    await server.start("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            refused = await http.post("/v1/status", content=b"{}")
        assert (refused.status_code, refused.json()["error"]) == (405, "method_not_allowed")
        assert set(refused.headers["Allow"].split(",")) == {"GET", "HEAD"}
    finally:
        await server.aclose()


async def test_a_405_from_the_central_says_what_the_path_allows(tmp_path: Path) -> None:
    async with serving(make_central_world(tmp_path / "central")) as running:
        refused = await running.http.delete("/v1/checkins")
        assert (refused.status_code, refused.json()["error"]) == (405, "method_not_allowed")
        assert set(refused.headers["Allow"].split(",")) == {"GET", "POST"}
        only_get = await running.http.post("/v1/challenge")
        assert (only_get.status_code, only_get.headers["Allow"]) == (405, "GET")


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_malformed_request_lines_are_one_per_interval_and_say_how_many_were_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    server_log = MalformedRequestLog(logging.getLogger("tests.edge"), "LAN", interval=10, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="tests.edge"):
        for second in range(25):
            clock.now = 1000.0 + second
            # As aiohttp's request handler calls its logger.
            error = BadHttpMessage(f"Invalid header value char:\n\n  b'X-{second}: \\x01'\n")
            server_log.exception("Error handling request from %s", "192.0.2.7", exc_info=error)
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3  # at 0, 10 and 20 s
    assert lines[0] == (
        "LAN: refused a malformed HTTP request from 192.0.2.7 with a plain-text 400"
        " (BadHttpMessage: Invalid header value char)"
    )
    assert lines[1].endswith("; 9 more not logged since the last line")
    assert lines[2].endswith("; 9 more not logged since the last line")
    assert server_log.unlogged == 4
    assert all(record.exc_info is None for record in caplog.records)


def test_other_server_errors_keep_their_traceback(caplog: pytest.LogCaptureFixture) -> None:
    server_log = MalformedRequestLog(logging.getLogger("tests.edge"), "central")
    with caplog.at_level(logging.DEBUG, logger="tests.edge"):
        try:
            raise RuntimeError("a handler bug")
        except RuntimeError as exc:
            server_log.exception("Error handling request from %s", "127.0.0.1", exc_info=exc)
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert record.getMessage() == "Error handling request from 127.0.0.1"
