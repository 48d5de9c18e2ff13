"""The gate's LAN API over real HTTP on 127.0.0.1: status, Prometheus metrics, named errors, limits."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gate_daemon.config.load import load_config
from gate_daemon.daemon import app
from gate_daemon.net.lan import LanServer, RateLimiter, create_app
from tests.gate_fixtures import serving_config
from tests.live import LiveWorld, write_gate_config


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path, live: LiveWorld, lan: str = '[lan]\nlisten = "127.0.0.1:0"\n'
) -> AsyncIterator[app.RunningGate]:
    config = load_config(write_gate_config(tmp_path / "gate.toml", live, extra=lan), {})
    async with serving_config(config) as running:
        yield running


def url(running: app.RunningGate, path: str) -> str:
    assert running.lan is not None
    return f"http://127.0.0.1:{running.lan.port}{path}"


def metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_status_and_metrics_tell_the_same_story(tmp_path: Path, live: LiveWorld) -> None:
    async with serving(tmp_path, live) as running, aiohttp.ClientSession() as http:
        await running.gate.scan("A100-2", device="test")
        await running.gate.scan("A100-2", device="test")
        await running.gate.scan("NOT-A-TICKET", device="test")
        async with http.get(url(running, "/v1/status")) as response:
            assert response.status == 200
            status: dict[str, Any] = await response.json()
        assert status["gate"] == "north-1" and status["manifest"]["version"] == 1
        assert status["counters"]["outcome:allow"] == 1
        async with http.get(url(running, "/metrics")) as response:
            assert response.status == 200 and response.content_type == "text/plain"
            seen = metrics(await response.text())
        assert seen[("gate_scans_total", (("outcome", "allow"),))] == 1
        assert seen[("gate_scans_total", (("outcome", "already_used"),))] == 1
        assert seen[("gate_scans_total", (("outcome", "deny"),))] == 1
        assert seen[("gate_scans_all_total", ())] == 3
        assert seen[("gate_offline_scans_total", ())] == 3
        assert seen[("gate_manifest_version", ())] == 1
        assert seen[("gate_in_service", ())] == 1
        info = next(key for key in seen if key[0] == "gate_info")
        assert ("gate", "north-1") in info[1] and ("event", "live-2026") in info[1]
        # The payload is never in what the gate publishes.
        assert "A100-2" not in str(status) and "NOT-A-TICKET" not in str(seen)


async def test_bad_requests_get_named_errors(tmp_path: Path, live: LiveWorld) -> None:
    async with serving(tmp_path, live) as running, aiohttp.ClientSession() as http:
        for method, path, code, name in [
            ("GET", "/v1/nothing", 404, "not_found"),
            ("GET", "/../../etc/passwd", 404, "not_found"),
            ("POST", "/v1/status", 405, "method_not_allowed"),
            ("DELETE", "/metrics", 405, "method_not_allowed"),
        ]:
            async with http.request(method, url(running, path), data=b"{}") as response:
                assert response.status == code
                assert (await response.json())["error"] == name
        # Not HTTP at all: the server drops it and keeps serving.
        reader, writer = await asyncio.open_connection("127.0.0.1", running.lan.port if running.lan else 0)
        writer.write(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
        await writer.drain()
        await reader.read(4096)
        writer.close()
        async with http.get(url(running, "/v1/status")) as response:
            assert response.status == 200


async def test_a_client_that_asks_too_often_is_told_to_slow_down(tmp_path: Path, live: LiveWorld) -> None:
    async with serving(tmp_path, live, '[lan]\nlisten = "127.0.0.1:0"\nrate = 2\n') as running:
        async with aiohttp.ClientSession() as http:
            codes = []
            for _ in range(8):
                async with http.get(url(running, "/v1/status")) as response:
                    codes.append(response.status)
                    if response.status == 429:
                        assert (await response.json())["error"] == "rate_limited"
        assert codes[:4] == [200] * 4 and 429 in codes  # a burst of twice the rate, then no more


def test_the_rate_limiter_refills_and_forgets() -> None:
    now = [0.0]
    limiter = RateLimiter(1, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(3)] == [True, True, False]
    assert limiter.allow("b")  # each address has its own bucket
    now[0] += 1.0
    assert limiter.allow("a") and not limiter.allow("a")


async def test_an_address_in_use_is_a_named_error(tmp_path: Path, live: LiveWorld) -> None:
    first = LanServer(create_app(lambda: asyncio.sleep(0, {}), rate=5))
    await first.start("127.0.0.1", 0)
    try:
        lan = f'[lan]\nlisten = "127.0.0.1:{first.port}"\n'
        config = load_config(write_gate_config(tmp_path / "gate.toml", live, extra=lan), {})
        with pytest.raises(app.GateError, match=f"cannot listen on 127.0.0.1:{first.port}"):
            await app.start(config)
        # Everything the failed start opened was closed: the same state dir starts now.
        running = await app.start(load_config(write_gate_config(tmp_path / "gate.toml", live), {}))
        await app.shutdown(running)
    finally:
        await first.aclose()


async def test_a_control_socket_that_cannot_be_made_closes_the_lan_opened_before_it(
    tmp_path: Path, live: LiveWorld
) -> None:
    with socket.socket() as probe:  # a port free now, to see it free again after the failed start
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    control = tmp_path / "control.sock"
    control.write_text("not a socket\n")
    lan = f'[lan]\nlisten = "127.0.0.1:{port}"\n'
    config = load_config(write_gate_config(tmp_path / "gate.toml", live, socket=control, extra=lan), {})
    with pytest.raises(app.GateError, match="exists and is not a socket"):
        await app.start(config)
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))  # OSError (address in use) while the LAN still listens
    assert control.read_text() == "not a socket\n"  # not the gate's own: left as it was
    control.unlink()
    running = await app.start(config)
    await app.shutdown(running)


async def test_without_a_status_source_the_lan_serves_no_status() -> None:
    server = LanServer(create_app(None, rate=5))
    await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            for path in ("/v1/status", "/metrics"):
                async with http.get(f"http://127.0.0.1:{server.port}{path}") as response:
                    assert response.status == 404
                    assert (await response.json())["error"] == "not_found"
    finally:
        await server.aclose()
