"""The gate screen's server over real HTTP on 127.0.0.1: its events, its guards, what it shows of names.

A whole gate is started in-process from its config (``serving_config``) and asked with
aiohttp's client, as a browser would and as a hostile page would.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gate_daemon.config.load import load_config
from gate_daemon.daemon.app import RunningGate
from tests.gate_fixtures import query, serving_config
from tests.live import LiveWorld, write_gate_config

TICKETS = """\
ticket_id,order_id,seat,status,session,zone,entries,code,name
L-0001,A100,1,completed,now,floor,1,,Ada Lovelace
L-0002,A100,2,completed,now,floor,1,,
"""


@asynccontextmanager
async def screen(
    tmp_path: Path, live: LiveWorld, section: str = ""
) -> AsyncIterator[tuple[RunningGate, str]]:
    """A gate serving its screen on a free loopback port; the gate and the screen's base URL."""
    (tmp_path / "drop.gdm").write_bytes(live.manifest(1, tickets_csv=TICKETS))
    extra = f'[screen]\nlisten = "127.0.0.1:0"\n{section}'
    config = load_config(write_gate_config(tmp_path / "gate.toml", live, signals="none", extra=extra))
    async with serving_config(config) as running:
        assert running.status.screen_port is not None
        yield running, f"http://127.0.0.1:{running.status.screen_port}"


async def events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """The Server-Sent Events of a stream, as (name, data)."""
    name = ""
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield name, json.loads(line.removeprefix("data: "))


async def next_scan(stream: AsyncIterator[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    async for name, data in stream:
        if name == "scan":
            return data
    raise AssertionError("the stream ended")


async def test_the_stream_says_hello_then_status_then_each_scan(tmp_path: Path, live: LiveWorld) -> None:
    async with (
        screen(tmp_path, live) as (running, base),
        aiohttp.ClientSession() as http,
        http.get(f"{base}/screen/events") as response,
    ):
        assert response.headers["Content-Type"] == "text/event-stream"
        stream = events(response)
        assert await anext(stream) == (
            "hello",
            {"gate": "north-1", "hold_ms": 1500, "manual_entry": True, "confirm": True},
        )
        name, status = await anext(stream)
        assert name == "status" and status["in_service"] is True and status["manifest_version"] == 1
        await running.gate.scan("A100-1", device="test")
        scan = await next_scan(stream)
        assert scan["colour"] == "green" and scan["seat"] == "1" and scan["name"] == "Ada Lovelace"
        await running.gate.scan("A100-1", device="test")
        used = await next_scan(stream)
        assert used["outcome"] == "already_used" and used["used_gate"] == "north-1"
        assert used["headline"] == "Already used" and "used_at" in used


async def test_names_are_not_served_on_a_lan_address_unless_asked_for(
    tmp_path: Path, live: LiveWorld
) -> None:
    section = '[screen]\nlisten = "0.0.0.0:8080"\nhosts = ["gate-3.venue.lan"]\n'
    lan = write_gate_config(tmp_path / "lan.toml", live, extra=section)
    off = load_config(lan).screen
    assert (off.names, off.manual_entry, off.confirm) == (False, False, False)
    asked = write_gate_config(
        tmp_path / "asked.toml", live, extra=f'{section}names = true\ntoken = "screen-token"\n'
    )
    assert load_config(asked).screen.names is True
    # Served without names (the loopback listen keeps the test off the LAN; the setting is what counts).
    async with (
        screen(tmp_path, live, "names = false\n") as (running, base),
        aiohttp.ClientSession() as http,
        http.get(f"{base}/screen/events") as response,
    ):
        stream = events(response)
        await running.gate.scan("A100-1", device="test")
        scan = await next_scan(stream)
        assert scan["seat"] == "1" and "name" not in scan
        assert "Ada" not in json.dumps(scan)


async def test_manual_entry_is_recorded_as_device_screen(tmp_path: Path, live: LiveWorld) -> None:
    async with screen(tmp_path, live) as (running, base), aiohttp.ClientSession() as http:
        headers = {"Origin": base}
        async with http.post(
            f"{base}/screen/scan", json={"payload": " A100-2 "}, headers=headers
        ) as response:
            assert response.status == 200
            answer = await response.json()
        assert answer["scan"]["outcome"] == "allow"
        rows = query(running.ledger.path, "SELECT device, ticket_id FROM scans")
        assert rows == [("screen", "L-0002")]


@pytest.mark.parametrize(
    ("headers", "body", "status", "error"),
    [
        ({"Origin": "http://evil.example"}, b'{"payload": "A100-2"}', 403, "cross_origin"),
        ({"Origin": None}, b'{"payload": "A100-2"}', 403, "cross_origin"),
        ({"Origin": "null"}, b'{"payload": "A100-2"}', 403, "cross_origin"),
        ({"Content-Type": "text/plain"}, b'{"payload": "A100-2"}', 415, "not_json"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, b"payload=A100-2", 415, "not_json"),
        ({}, b"{not json", 400, "not_json"),
        ({}, b'["A100-2"]', 400, "bad_request"),
        ({}, b'{"payload": "A100-2", "device": "camera"}', 400, "bad_request"),
        ({}, b'{"payload": ""}', 400, "bad_request"),
        ({}, b'{"payload": 7}', 400, "bad_request"),
        ({}, b'{"payload": "A100\\u0000-2"}', 400, "bad_request"),
        ({}, json.dumps({"payload": "A" * 600}).encode(), 400, "bad_request"),
        ({}, b"[" * 100_000, 413, "too_large"),
    ],
)
async def test_a_manual_entry_not_from_the_page_is_refused_by_name_and_records_nothing(
    tmp_path: Path, live: LiveWorld, headers: dict[str, str | None], body: bytes, status: int, error: str
) -> None:
    async with screen(tmp_path, live) as (running, base), aiohttp.ClientSession() as http:
        merged = {"Origin": base, "Content-Type": "application/json", **headers}
        sent = {name: value for name, value in merged.items() if value is not None}
        async with http.post(f"{base}/screen/scan", data=body, headers=sent) as response:
            assert response.status == status
            assert (await response.json())["error"] == error
        assert query(running.ledger.path, "SELECT count(*) FROM scans") == [(0,)]


async def test_a_request_for_another_host_is_refused_on_a_loopback_screen(
    tmp_path: Path, live: LiveWorld
) -> None:
    # A page on evil.example whose name resolves to 127.0.0.1 (DNS rebinding) asks with its own Host.
    async with screen(tmp_path, live) as (running, base), aiohttp.ClientSession() as http:
        for path in ("/screen", "/screen/events"):
            async with http.get(f"{base}{path}", headers={"Host": "evil.example"}) as response:
                assert response.status == 403
                assert (await response.json())["error"] == "wrong_host"
        evil = {"Host": "evil.example", "Origin": "http://evil.example"}
        async with http.post(f"{base}/screen/scan", json={"payload": "A100-2"}, headers=evil) as response:
            assert (await response.json())["error"] == "wrong_host"
        async with http.get(f"{base}/screen", headers={"Host": "localhost"}) as response:
            assert response.status == 200
            assert "Content-Security-Policy" in response.headers
        assert query(running.ledger.path, "SELECT count(*) FROM scans") == [(0,)]


async def test_manual_entry_can_be_turned_off(tmp_path: Path, live: LiveWorld) -> None:
    async with (
        screen(tmp_path, live, "manual_entry = false\n") as (running, base),
        aiohttp.ClientSession() as http,
    ):
        async with http.post(
            f"{base}/screen/scan", json={"payload": "A100-2"}, headers={"Origin": base}
        ) as response:
            assert response.status == 403
            assert (await response.json())["error"] == "manual_entry_off"
        assert query(running.ledger.path, "SELECT count(*) FROM scans") == [(0,)]


async def test_an_open_stream_does_not_hold_up_the_gate_stopping(tmp_path: Path, live: LiveWorld) -> None:
    async with aiohttp.ClientSession() as http:
        async with screen(tmp_path, live) as (_running, base):
            response = await http.get(f"{base}/screen/events")
            stream = events(response)
            assert (await anext(stream))[0] == "hello"
        # serving_config has stopped the gate (exit status 0): the stream has ended between events.
        rest = [name async for name, _ in stream]
        assert set(rest) <= {"status"}
        response.release()


async def test_a_confirm_from_the_page_with_nothing_held_confirms_nothing(
    tmp_path: Path, live: LiveWorld
) -> None:
    async with screen(tmp_path, live) as (_running, base), aiohttp.ClientSession() as http:
        async with http.post(f"{base}/screen/confirm", json={}, headers={"Origin": base}) as response:
            assert response.status == 200 and await response.json() == {"confirmed": False}
        evil = {"Origin": "http://evil.example"}
        async with http.post(f"{base}/screen/confirm", json={}, headers=evil) as response:
            assert response.status == 403 and (await response.json())["error"] == "cross_origin"
        async with http.post(f"{base}/screen/confirm", data=b"{}", headers={"Origin": base}) as response:
            assert response.status == 415 and (await response.json())["error"] == "not_json"
