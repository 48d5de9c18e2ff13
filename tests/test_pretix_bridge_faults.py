"""A pretix that answers 500s, garbage or nothing: named errors, and the bridge carries on.

The client and the bridge's reader run against a small aiohttp server on 127.0.0.1 that
misbehaves on request (the faults pretix can have, as the wire sees them); the live case
puts the same server in front of the session's real pretix, between a real gate-central
and pretix, and checks that the gates keep admitting and that pretix gets the check-ins
once the faults end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from gate_daemon.central.pretix import download
from gate_daemon.central.pretix.client import PretixClient, PretixError
from tests.central_process import CONVERGE
from tests.gate_process import Launcher, wait_until
from tests.pretix_bridge_world import BridgeWorld, bridge_world
from tests.pretix_server import PretixServer


class FaultyPretix:
    """An HTTP server that answers as ``mode`` says: ``ok`` (forward to ``upstream``), ``500``,
    ``garbage``, ``wrong_shape`` or ``hang``."""

    def __init__(self, upstream: str | None = None) -> None:
        self.mode = "ok"
        self.upstream = upstream
        self.seen = 0
        self._runner: web.AppRunner | None = None
        self.url = ""
        self._released = asyncio.Event()

    async def start(self) -> FaultyPretix:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = next(iter(self._runner.addresses))[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def aclose(self) -> None:
        self._released.set()  # a hung answer ends, so the server can stop at once
        if self._runner is not None:
            await self._runner.cleanup()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.seen += 1
        if self.mode == "500":
            return web.Response(status=500, text="<h1>Server Error (500)</h1>")
        if self.mode == "garbage":
            return web.Response(status=200, body=b"\x00\xffnot json{", content_type="application/json")
        if self.mode == "wrong_shape":
            return web.json_response({"results": "everything", "next": 7})
        if self.mode == "hang":
            await self._released.wait()
            return web.Response(status=503)
        if self.upstream is None:
            return web.json_response({"count": 0, "next": None, "results": []})
        async with httpx.AsyncClient(timeout=60) as client:
            answer = await client.request(
                request.method,
                self.upstream + request.rel_url.raw_path_qs,
                content=await request.read(),
                headers={
                    k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
                },
            )
        headers = {
            k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "x-page-generated")
        }
        return web.Response(status=answer.status_code, body=answer.content, headers=headers)


@contextlib.asynccontextmanager
async def faulty(upstream: str | None = None) -> AsyncIterator[tuple[FaultyPretix, PretixClient]]:
    server = await FaultyPretix(upstream).start()
    client = PretixClient(httpx.AsyncClient(), server.url, "gateorg", timeout=0.5)
    try:
        yield server, client
    finally:
        await client.aclose()
        await server.aclose()


@pytest.mark.parametrize(
    ("mode", "name"),
    [("500", "server_error"), ("garbage", "garbage"), ("wrong_shape", "garbage"), ("hang", "timeout")],
)
async def test_each_fault_of_pretix_is_a_named_error(mode: str, name: str) -> None:
    async with faulty() as (server, client):
        server.mode = mode
        with pytest.raises(PretixError) as caught:
            await download.orders(client, "gate2026", None, "gate2026")
        assert caught.value.name == name
        assert "Device" not in str(caught.value)


async def test_a_pretix_that_is_not_there_is_unreachable() -> None:
    client = PretixClient(httpx.AsyncClient(), "http://127.0.0.1:9", "gateorg", timeout=0.5)
    try:
        with pytest.raises(PretixError) as caught:
            await download.event_facts(client, "gate2026")
        assert caught.value.name == "unreachable"
    finally:
        await client.aclose()


async def test_the_device_token_goes_in_the_authorization_header_only() -> None:
    seen: list[dict[str, str]] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response(
            {"count": 0, "next": None, "results": []}, headers={"X-Page-Generated": "T1"}
        )

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = next(iter(runner.addresses))[1]
    client = PretixClient(httpx.AsyncClient(), f"http://127.0.0.1:{port}", "gateorg")
    client.use_token("tok-123")
    try:
        page = await download.orders(client, "gate2026", None, "gate2026")
    finally:
        await client.aclose()
        await runner.cleanup()
    assert page.cursor == "T1" and page.positions == []
    assert seen[0]["Authorization"] == "Device tok-123"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_ORDERISH = st.fixed_dictionaries(
    {"code": _JSON, "status": st.sampled_from(["p", "n", "e", "c", "x"]) | _JSON, "positions": _JSON}
)


@given(page=st.lists(_ORDERISH | _JSON, max_size=3))
def test_orders_of_any_shape_are_read_or_named_garbage(page: list[Any]) -> None:
    positions: list[Any] = []
    try:
        download.read_page(page, positions, [], "gate2026")
    except PretixError as exc:
        assert exc.name == "garbage"
        assert exc.detail.startswith("order ")
    else:
        assert all(p.ticket_id and p.secret for p in positions)


@pytest.mark.pretix
@pytest.mark.slow
def test_the_gates_admit_through_pretix_faults_and_pretix_gets_the_checkins_after(
    tmp_path: Path, pretix: PretixServer, launch: Launcher
) -> None:
    with bridge_world(tmp_path / "bridge", pretix, start=False) as world:
        server = world.loop.run(FaultyPretix(f"http://{world.link.address}").start())
        try:
            _run_through_faults(world, server, pretix, launch)
        finally:
            world.central.close()
            world.loop.run(server.aclose())


def _run_through_faults(
    world: BridgeWorld, server: FaultyPretix, pretix: PretixServer, launch: Launcher
) -> None:
    config = world.central.config
    config.write_text(config.read_text().replace(f"http://{world.link.address}", server.url))
    fresh = [pretix.make_order(name=f"Faults {n}") for n in range(3)]
    world.central.start(60)
    gate = world.gate(launch, "north-1")
    wait_until(
        lambda: gate.scan(fresh[-1].secret, kind="exit")["reason"] == "not_inside", CONVERGE, "the orders"
    )
    names = {"500": "server_error", "garbage": "garbage", "hang": "timeout"}
    admitted = []
    for position, (mode, name) in zip(fresh, names.items(), strict=True):
        server.mode = mode
        wait_until(
            lambda n=name: n in _failures(world),
            CONVERGE,
            f"the bridge naming {name}",
        )
        decision = gate.scan(position.secret)
        assert decision["outcome"] == "allow", decision
        admitted.append(position)
    assert all(pretix.checkins_of(p.position_id) == [] for p in admitted)
    server.mode = "ok"
    wait_until(
        lambda: all(pretix.checkins_of(p.position_id) for p in admitted), CONVERGE * 3, "the check-ins"
    )
    assert [len(pretix.checkins_of(p.position_id)) for p in admitted] == [1, 1, 1]
    assert "Traceback" not in world.central.stderr()


def _failures(world: BridgeWorld) -> str:
    """The lines where the central named a failed sync."""
    return "\n".join(line for line in world.central.stderr().splitlines() if "pretix sync failed" in line)
