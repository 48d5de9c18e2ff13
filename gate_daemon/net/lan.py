"""The gate's HTTP API on the venue LAN (aiohttp), versioned under ``/v1``.

So far: ``GET /v1/status`` (what ``gatectl status --json`` shows) and ``GET /metrics``
(Prometheus). ``create_app`` builds the application from what it serves; ``LanServer``
runs it on ``[lan] listen``. Every error is a JSON object ``{"error": NAME, "detail":
...}`` with a 4xx status for a bad request (``not_found``, ``method_not_allowed``,
``rate_limited``) and 503 ``unavailable`` when the gate cannot answer;
never a traceback. Each client address gets ``rate`` requests a second on average, in
bursts of up to twice that.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gate_daemon.errors import GateError
from gate_daemon.net.metrics import render

log = logging.getLogger(__name__)

StatusSource = Callable[[], Awaitable[dict[str, Any]]]
#: A request body larger than this is refused; nothing here reads a body yet.
MAX_BODY = 64 << 10
#: Client addresses remembered by the rate limiter; the longest idle are forgotten first.
MAX_CLIENTS = 4096

STATUS: web.AppKey[StatusSource] = web.AppKey("status")

_NAMES = {404: "not_found", 405: "method_not_allowed"}


class RateLimiter:
    """A token bucket per client address: ``rate`` a second, bursts of ``2 * rate``."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = 2 * rate
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, client: str) -> bool:
        """Take one token for ``client``; False when it has none left."""
        now = self._clock()
        tokens, last = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1
        self._buckets[client] = (tokens - 1 if allowed else tokens, now)  # re-inserted: most recent last
        if len(self._buckets) > MAX_CLIENTS:
            del self._buckets[next(iter(self._buckets))]
        return allowed


LIMITER = web.AppKey("limiter", RateLimiter)


def _error(status: int, name: str, detail: str) -> web.Response:
    return web.json_response({"error": name, "detail": detail}, status=status)


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        name = _NAMES.get(exc.status, "bad_request")
        return _error(exc.status, name, exc.reason)
    except (sqlite3.Error, ValueError, GateError) as exc:
        log.error("LAN %s %s: the gate cannot answer: %s", request.method, request.path, exc)
        return _error(503, "unavailable", "the gate cannot answer now")


@web.middleware
async def _rate_limit(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if not request.app[LIMITER].allow(request.remote or "?"):
        return _error(429, "rate_limited", "too many requests from this address; slow down")
    return await handler(request)


async def _status(request: web.Request) -> web.Response:
    return web.json_response(await request.app[STATUS]())


async def _metrics(request: web.Request) -> web.Response:
    body = render(await request.app[STATUS]())
    return web.Response(
        body=body, content_type="text/plain", charset="utf-8", headers={"X-Content-Type-Options": "nosniff"}
    )


def create_app(status: StatusSource, *, rate: int = 20) -> web.Application:
    """The LAN application serving ``status`` (a snapshot maker such as ``GateStatus.snapshot``)."""
    app = web.Application(middlewares=[_errors, _rate_limit], client_max_size=MAX_BODY)
    app[STATUS] = status
    app[LIMITER] = RateLimiter(rate)
    app.router.add_get("/v1/status", _status)
    app.router.add_get("/metrics", _metrics)
    return app


class LanServer:
    """Runs the LAN application on one address."""

    def __init__(self, app: web.Application) -> None:
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self.addresses: list[Any] = []

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port``; ``GateError`` naming the address when it cannot."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise GateError(f"cannot listen on {host}:{port} ([lan] listen): {exc.strerror or exc}") from None
        self.addresses = list(self._runner.addresses)

    @property
    def port(self) -> int:
        """The port listened on (the one the OS chose, for port 0)."""
        return int(self.addresses[0][1])

    async def aclose(self) -> None:
        """Stop listening and finish the requests under way."""
        await self._runner.cleanup()
