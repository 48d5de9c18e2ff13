"""A central server a test controls: real aiohttp on 127.0.0.1, real signed-request checks, canned answers.

It issues challenges and checks every other request with ``net.peer_auth`` exactly as the
contract says (``admit`` before the body is read, then ``verify`` over the raw path and
query), then answers with whatever the test put in ``routes``: canned JSON, a hang, a
slow drip, an oversized body. What it saw is kept in ``seen`` (signed requests that
passed) and ``challenge_gets``. Not the reference central (``gate_daemon.central``):
this one only says what it is told to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gate_daemon.core.keys import PublicKey
from gate_daemon.errors import WireError
from gate_daemon.net.peer_auth import HEADER_CHALLENGE, Challenges, admit

Handler = Callable[[web.Request, bytes], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Seen:
    """A signed request that passed the checks."""

    method: str
    path_qs: str
    gate: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FakeCentral:
    """``await FakeCentral(roster).start()``; ``url`` then points at it."""

    def __init__(self, roster: dict[str, PublicKey]) -> None:
        self.roster = roster
        #: Added to the monotonic clock the challenges are issued and checked with (ages them).
        self.skew = 0.0
        self.challenges = Challenges(clock=lambda: asyncio.get_running_loop().time() + self.skew)
        self.routes: dict[tuple[str, str], Handler] = {}
        self.seen: list[Seen] = []
        self.refused: list[str] = []
        self.challenge_gets = 0
        #: Whether answers to signed requests carry a fresh challenge (the contract says they do).
        self.hand_out_challenges = True
        #: Replaces the challenge route's answer when set.
        self.challenge_route: Handler | None = None
        #: Set at close: lets hanging handlers end.
        self.release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> FakeCentral:
        app = web.Application()
        app.router.add_get("/v1/challenge", self._challenge)
        app.router.add_route("*", "/{tail:.*}", self._signed)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ what tests set

    def answer(self, method: str, path: str, body: Any, status: int = 200, **headers: str) -> None:
        """Answer ``method path`` with ``body`` as JSON (bytes as they are)."""

        async def handler(_request: web.Request, _body: bytes) -> web.StreamResponse:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            return web.Response(body=data, status=status, headers=headers, content_type="application/json")

        self.routes[(method, path)] = handler

    def route(self, method: str, path: str) -> Callable[[Handler], Handler]:
        """Decorator: ``handler(request, body)`` answers ``method path``."""

        def register(handler: Handler) -> Handler:
            self.routes[(method, path)] = handler
            return handler

        return register

    def hang(self, method: str, path: str) -> None:
        """Accept ``method path`` and never answer (until the central closes)."""

        async def handler(_request: web.Request, _body: bytes) -> web.StreamResponse:
            await self.release.wait()
            return web.Response(status=503)

        self.routes[(method, path)] = handler

    def fresh(self) -> dict[str, str]:
        """Headers for a streaming handler's answer: a fresh challenge."""
        return {HEADER_CHALLENGE: self.challenges.issue()} if self.hand_out_challenges else {}

    def signed(self, method: str, path: str) -> list[Seen]:
        """The signed requests seen for ``method path`` (query ignored)."""
        return [s for s in self.seen if s.method == method and s.path_qs.split("?")[0] == path]

    # ------------------------------------------------------------------ serving

    async def _challenge(self, request: web.Request) -> web.StreamResponse:
        self.challenge_gets += 1
        if self.challenge_route is not None:
            return await self.challenge_route(request, b"")
        return web.json_response({"challenge": self.challenges.issue(), "ttl_ms": 30_000, "central": "fake"})

    async def _signed(self, request: web.Request) -> web.StreamResponse:
        try:
            admitted = admit(self.challenges, self.roster, request.headers)
            body = await request.read()
            caller = admitted.verify(request.method, request.rel_url.raw_path_qs, body)
        except WireError as exc:  # an AuthError, or busy, no_roster, bad_request
            self.refused.append(exc.name)
            return web.json_response(
                {"error": exc.name, "detail": exc.detail}, status=exc.status, headers=self.fresh()
            )
        self.seen.append(Seen(request.method, request.rel_url.raw_path_qs, caller.gate_id, body))
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            return web.json_response(
                {"error": "not_found", "detail": request.path}, status=404, headers=self.fresh()
            )
        response = await handler(request, body)
        if not response.prepared:
            with contextlib.suppress(KeyError):
                del response.headers[HEADER_CHALLENGE]
            response.headers.update(self.fresh())
        return response
