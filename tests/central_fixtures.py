"""A running reference central for tests: real files, real SQLite, real HTTP on 127.0.0.1, signed requests."""

from __future__ import annotations

import contextlib
import json
import time
import uuid as uuidlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from gate_daemon.central.app import CENTRAL, create_app
from gate_daemon.central.config import CentralConfig, load_central_config
from gate_daemon.central.service import Central
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.records import Redemption
from gate_daemon.net.peer_auth import HEADER_CHALLENGE, sign_request
from gate_daemon.provision.keyfiles import read_secret
from tests.live import TICKETS_CSV, LiveWorld, make_live_world

GATES = ("north-1", "south-1")


@dataclass
class CentralWorld:
    """The live event with two roster gates, its tickets.csv and a central config, as files."""

    live: LiveWorld
    config_path: Path
    tickets_path: Path
    keys: dict[str, SecretKey]

    @property
    def config(self) -> CentralConfig:
        """The config, loaded as gate-central loads it."""
        return load_central_config(self.config_path)


def make_central_world(root: Path, *, extra: str = "", supervisors: tuple[str, ...] = ()) -> CentralWorld:
    """Keys, event.toml, tickets.csv and central.toml under ``root`` (paths relative to the config)."""
    live = make_live_world(root, GATES, supervisors)
    tickets = root / "tickets.csv"
    tickets.write_text(TICKETS_CSV)
    config = root / "central.toml"
    config.write_text(
        "[central]\n"
        'id = "test-central"\n'
        'listen = "127.0.0.1:0"\n'
        'state_dir = "state"\n'
        'event = "event.toml"\n'
        'tickets = "tickets.csv"\n'
        'key = "signer.key"\n'
        "poll_ms = 100\n" + extra
    )
    keys = {gate: read_secret(path) for gate, path in live.gate_keys.items()}
    return CentralWorld(live, config, tickets, keys)


@dataclass
class GateClient:
    """One gate talking to the central with signed requests (httpx)."""

    http: httpx.AsyncClient
    gate_id: str
    key: SecretKey
    challenge: str | None = None
    seq: int = 0
    epoch: str = field(default_factory=lambda: uuidlib.uuid4().hex[:16])
    hlc: int = 0

    async def fresh_challenge(self) -> str:
        """A challenge from ``GET /v1/challenge``."""
        response = await self.http.get("/v1/challenge")
        assert response.status_code == 200, response.text
        return str(response.json()["challenge"])

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        key: SecretKey | None = None,
        gate_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """A signed request (``path`` with its query, exactly as sent); keeps the next challenge."""
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        nonce = self.challenge or await self.fresh_challenge()
        self.challenge = None
        signed = sign_request(
            key or self.key, gate_id or self.gate_id, method, path, data, nonce, int(time.time() * 1000)
        )
        response = await self.http.request(method, path, content=data, headers={**signed, **(headers or {})})
        self.challenge = response.headers.get(HEADER_CHALLENGE)
        return response

    def record(
        self,
        ticket_id: str,
        kind: str = "entry",
        *,
        hlc: int | None = None,
        uuid: str | None = None,
        slot: int | None = 1,
        seq: int | None = None,
        voids: str | None = None,
        mode: str = "offline",
    ) -> Redemption:
        """This gate's next record."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        if hlc is None:
            self.hlc = max(self.hlc + 1, int(time.time() * 1000) << 16)
            hlc = self.hlc
        return Redemption(
            uuid=uuid or str(uuidlib.uuid4()),
            ticket_id=ticket_id,
            kind=kind,
            slot=None if kind == "void" else slot,
            origin=self.gate_id,
            epoch=self.epoch,
            seq=seq,
            hlc=hlc,
            wall=time.time(),
            operator=None,
            mode=mode,
            voids=voids,
        )

    def wire(self, record: Redemption) -> dict[str, Any]:
        """A record as sent, signed with this gate's key."""
        return record.wire(record.sign(self.key))

    async def push(self, *records: Redemption | dict[str, Any]) -> httpx.Response:
        """``POST /v1/checkins`` with these records (signed here unless already in wire form)."""
        items = [r if isinstance(r, dict) else self.wire(r) for r in records]
        return await self.request("POST", "/v1/checkins", {"records": items})

    async def validate(self, payload: str, uuid: str | None = None, **more: Any) -> httpx.Response:
        """``POST /v1/validate`` for an entry at zone floor."""
        body = {"uuid": uuid or str(uuidlib.uuid4()), "payload": payload, "kind": "entry", "zone": "floor"}
        body.update(more)
        return await self.request("POST", "/v1/validate", body)


@dataclass
class Running:
    """A central being served, and a client per roster gate."""

    url: str
    app: web.Application
    gates: dict[str, GateClient]
    http: httpx.AsyncClient

    @property
    def central(self) -> Central:
        """The service behind the application."""
        return self.app[CENTRAL]


@contextlib.asynccontextmanager
async def serving(world: CentralWorld, config: CentralConfig | None = None) -> AsyncIterator[Running]:
    """Run ``create_app`` on 127.0.0.1 (a free port) until the block ends."""
    app = create_app(config or world.config)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = next(iter(runner.addresses))[1]
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            gates = {gate: GateClient(http, gate, key) for gate, key in world.keys.items()}
            yield Running(url, app, gates, http)
    finally:
        await runner.cleanup()
