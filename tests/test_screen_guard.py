"""The gate screen's guards over real HTTP on 127.0.0.1: its hosts, its pairing token, its
rate limit, its confirm switch, and what many open screens cost.

A screen off loopback is the same application with other settings: it is served here on
127.0.0.1 (the test stays off the LAN) and asked under the host names a LAN display and a
DNS-rebinding page would use.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from gate_daemon.config.load import load_config
from gate_daemon.daemon.app import RunningGate
from gate_daemon.errors import GateError, SourceError
from gate_daemon.net.lan import RateLimiter
from gate_daemon.net.screen import Screen, ScreenServer, ScreenSettings, create_app, read_token
from tests.gate_fixtures import query
from tests.live import LiveWorld, write_gate_config
from tests.test_screen_server import events, screen

TOKEN = "0123456789abcdef0123456789abcdef"
LAN = ScreenSettings(loopback=False, hosts=frozenset({"gate-3.venue.lan"}), token=TOKEN)


@asynccontextmanager
async def served(
    running: RunningGate, settings: ScreenSettings, limiter: RateLimiter | None = None
) -> AsyncIterator[tuple[Screen, int]]:
    """The running gate's screen with ``settings``, on a free loopback port: the screen, its port."""
    screen_ = Screen(running.gate, running.status.snapshot, time.time, settings)
    server = ScreenServer(create_app(screen_, limiter))
    await server.start("127.0.0.1", 0)
    try:
        yield screen_, server.port
    finally:
        await server.aclose()


async def test_off_loopback_only_its_hosts_and_its_token_reach_the_stewards_acts(
    tmp_path: Path, live: LiveWorld
) -> None:
    async with (
        screen(tmp_path, live) as (running, _base),
        served(running, LAN) as (_screen, port),
        aiohttp.ClientSession() as http,
    ):
        url = f"http://127.0.0.1:{port}"
        # A DNS-rebinding page (or any LAN device) asks under its own name, Origin and all: refused.
        evil = {"Host": "evil.example", "Origin": "http://evil.example", "X-Screen-Token": TOKEN}
        for path in ("/screen/confirm", "/screen/scan"):
            async with http.post(f"{url}{path}", json={"payload": "A100-2"}, headers=evil) as response:
                assert response.status == 403 and (await response.json())["error"] == "wrong_host"
        async with http.get(f"{url}/screen", headers={"Host": f"127.0.0.1:{port}"}) as response:
            assert (await response.json())["error"] == "wrong_host"  # not a name the display uses
        # The display's own name without the token: the page loads, nothing else answers.
        own = {"Host": f"gate-3.venue.lan:{port}", "Origin": f"http://gate-3.venue.lan:{port}"}
        async with http.get(f"{url}/screen", headers=own) as response:
            assert response.status == 200
        async with http.get(f"{url}/screen/events", headers=own) as response:
            assert response.status == 403 and (await response.json())["error"] == "no_token"
        for token in (None, "0" * 32):
            sent = own if token is None else {**own, "X-Screen-Token": token}
            async with http.post(f"{url}/screen/scan", json={"payload": "A100-2"}, headers=sent) as response:
                assert response.status == 403 and (await response.json())["error"] == "no_token"
        assert query(running.ledger.path, "SELECT count(*) FROM scans") == [(0,)]
        # With it: the stream (token in its query) and the steward's acts (in the header).
        async with http.get(f"{url}/screen/events?token={TOKEN}", headers=own) as response:
            assert response.status == 200
            assert (await anext(events(response)))[1]["confirm"] is True
        paired = {**own, "X-Screen-Token": TOKEN}
        async with http.post(f"{url}/screen/confirm", json={}, headers=paired) as response:
            assert response.status == 200 and await response.json() == {"confirmed": False}
        async with http.post(f"{url}/screen/scan", json={"payload": "A100-2"}, headers=paired) as response:
            assert response.status == 200
        assert query(running.ledger.path, "SELECT device FROM scans") == [("screen",)]


async def test_a_stewards_posts_are_rate_limited_per_address(tmp_path: Path, live: LiveWorld) -> None:
    frozen = RateLimiter(1.0, clock=lambda: 0.0)  # a burst of 2, never refilled
    async with (
        screen(tmp_path, live) as (running, _base),
        served(running, ScreenSettings(), frozen) as (_screen, port),
        aiohttp.ClientSession() as http,
    ):
        url = f"http://127.0.0.1:{port}"
        answers = []
        for payload in ("NOPE-1", "NOPE-2", "A100-2"):
            async with http.post(
                f"{url}/screen/scan", json={"payload": payload}, headers={"Origin": url}
            ) as response:
                answers.append((response.status, (await response.json()).get("error")))
        assert answers == [(200, None), (200, None), (429, "rate_limited")]
        rows = query(running.ledger.path, "SELECT count(*) FROM scans WHERE ticket_id = 'L-0002'")
        assert rows == [(0,)]


async def test_confirm_has_its_own_switch(tmp_path: Path, live: LiveWorld) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with (
        screen(tmp_path / "a", live, "manual_entry = false\n") as (_running, base),
        aiohttp.ClientSession() as http,
        http.post(f"{base}/screen/confirm", json={}, headers={"Origin": base}) as response,
    ):
        assert response.status == 200 and await response.json() == {"confirmed": False}
    async with (
        screen(tmp_path / "b", live, "confirm = false\n") as (_running, base),
        aiohttp.ClientSession() as http,
    ):
        async with http.post(f"{base}/screen/confirm", json={}, headers={"Origin": base}) as response:
            assert response.status == 403 and (await response.json())["error"] == "confirm_off"
        async with http.get(f"{base}/screen/events") as response:
            hello = (await anext(events(response)))[1]
            assert hello["confirm"] is False and hello["manual_entry"] is True


async def test_many_screens_share_one_status_read_and_are_capped(tmp_path: Path, live: LiveWorld) -> None:
    settings = ScreenSettings(status_interval=3600.0)  # no tick in the test: only the first read
    async with (
        screen(tmp_path, live) as (running, _base),
        served(running, settings) as (shown, port),
        aiohttp.ClientSession() as http,
        AsyncExitStack() as streams,
    ):
        url = f"http://127.0.0.1:{port}/screen/events"
        for _ in range(settings.max_streams):
            response = await streams.enter_async_context(http.get(url))
            stream = events(response)
            assert [(await anext(stream))[0], (await anext(stream))[0]] == ["hello", "status"]
        assert shown.feed.builds == 1  # eight screens, one status read
        async with http.get(url) as response:
            assert response.status == 503 and (await response.json())["error"] == "too_many_screens"


@pytest.mark.parametrize(
    ("section", "key", "words"),
    [
        (
            'listen = "192.168.1.20:8080"\nmanual_entry = true\n',
            "screen.token",
            "manual_entry on needs a pairing token",
        ),
        ('listen = "192.168.1.20:8080"\nnames = true\n', "screen.token", "names on needs a pairing token"),
        ('listen = "0.0.0.0:8080"\n', "screen.hosts", "the names the display uses"),
        ('listen = "192.168.1.20:8080"\nhosts = ["gate 3"]\n', "screen.hosts", "host name or address"),
    ],
)
def test_a_screen_off_loopback_needs_its_token_and_hosts(
    tmp_path: Path, live: LiveWorld, section: str, key: str, words: str
) -> None:
    path = write_gate_config(tmp_path / "gate.toml", live, extra=f"[screen]\n{section}")
    with pytest.raises(SourceError) as caught:
        load_config(path)
    assert key in str(caught.value) and words in str(caught.value)


def test_a_paired_lan_screen_loads_and_its_token_file_must_be_private(
    tmp_path: Path, live: LiveWorld
) -> None:
    token = tmp_path / "screen-token"
    token.write_text(TOKEN + "\n")
    section = (
        '[screen]\nlisten = "0.0.0.0:8080"\nhosts = ["Gate-3.venue.lan"]\nmanual_entry = true\n'
        f'token = "{token}"\n'
    )
    loaded = load_config(write_gate_config(tmp_path / "gate.toml", live, extra=section)).screen
    assert (loaded.hosts, loaded.token, loaded.confirm) == (("gate-3.venue.lan",), token, False)
    os.chmod(token, 0o644)
    with pytest.raises(GateError, match="chmod 600"):
        read_token(token)
    os.chmod(token, 0o600)
    assert read_token(token) == TOKEN
    token.write_text("short\n")
    with pytest.raises(GateError, match="openssl rand -hex 16"):
        read_token(token)
