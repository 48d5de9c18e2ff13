"""The gate's HTTP API on the venue LAN (aiohttp), versioned under ``/v1``.

- ``GET /v1/status``: what ``gatectl status --json`` shows (``gate_daemon.core.snapshot``);
  ``GET /metrics``: the same snapshot for Prometheus (``gate_daemon.net.metrics``).
- With replication (a gate key configured): ``GET /v1/challenge`` hands out a
  challenge for the next signed request, ``POST /v1/redemptions`` takes a push of
  records and ``POST /v1/redemptions/pull`` serves records after what the caller holds
  (``gate_daemon.net.replication``). Both are signed requests (``gate_daemon.net.peer_auth``).
- ``POST /v1/capacity/grant``: a peer's signed ask for places (strict capacity,
  ``gate_daemon.net.capacity``, docs/CAPACITY.md).
- ``POST /v1/command``: a supervisor's signed command (``gate_daemon.gate.lane``,
  docs/COMMANDS.md); not behind peer auth: the command's own signature is its auth. It
  answers ``{"applied": true|false, "state": LANE}`` or the command's refusal by name
  (``bad_command``, ``bad_signature``, ``unknown_supervisor``, ``wrong_event``,
  ``wrong_gate``, ``expired``, ``replayed``, ``stale``).

``create_app`` builds the application from what it serves; ``LanServer`` runs it on
``[lan] listen``. Every error is a JSON object ``{"error": NAME, "detail": ...}`` with
a 4xx status for a bad request (``not_found``, ``method_not_allowed``, ``rate_limited``,
``too_large``, ``not_json``, ``bad_request``, and the signed-request errors ``unsigned``,
``bad_nonce``, ``stale_nonce``, ``replayed``, ``unknown_gate``, ``bad_signature``) and
503 (``unavailable``, ``no_roster``, ``busy``) when the gate cannot answer now; never a
traceback. A ``405`` carries ``Allow``. A request that is not HTTP at all is answered
by aiohttp with a plain-text 400 and logged as one rate-limited line
(``gate_daemon.net.http_edge``). Each client address gets ``rate`` requests a second on
average, in bursts of up to twice that, except on the two signed routes: every signed
request spends a challenge, and challenges come from the rate-limited ``/v1/challenge``
or from the answer to the previous signed request.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gate_daemon.core.snapshot import GateSnapshot
from gate_daemon.errors import GateError, WireError
from gate_daemon.gate.lane import Lane
from gate_daemon.net.capacity import CapacityDesk
from gate_daemon.net.capacity import add_routes as add_capacity_routes
from gate_daemon.net.http_edge import Listener, MalformedRequestLog, refusal
from gate_daemon.net.metrics import render
from gate_daemon.net.peer_auth import HEADER_CHALLENGE
from gate_daemon.net.replication import MAX_BATCH, Replication, parse_known

log = logging.getLogger(__name__)

#: Makes the gate's status snapshot (``GateStatus.snapshot``), once per request.
StatusSource = Callable[[], Awaitable[GateSnapshot]]
#: A request body larger than this is refused (a push of MAX_BATCH records fits).
MAX_BODY = 512 << 10
#: Client addresses remembered by the rate limiter; the longest idle are forgotten first.
MAX_CLIENTS = 4096

STATUS: web.AppKey[StatusSource] = web.AppKey("status")

REPLICATION = web.AppKey("replication", Replication)
LANE = web.AppKey("lane", Lane)
#: Routes that take signed requests only: not limited per address (see above).
_SIGNED = frozenset({"/v1/redemptions", "/v1/redemptions/pull", "/v1/capacity/grant"})


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
        return refusal(exc)
    except WireError as exc:  # a signed request refused (AuthError), or a malformed one
        return _error(exc.status or 500, exc.name, exc.detail)
    except (sqlite3.Error, ValueError, GateError) as exc:
        log.error("LAN %s %s: the gate cannot answer: %s", request.method, request.path, exc)
        return _error(503, "unavailable", "the gate cannot answer now")


@web.middleware
async def _rate_limit(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if request.path not in _SIGNED and not request.app[LIMITER].allow(request.remote or "?"):
        return _error(429, "rate_limited", "too many requests from this address; slow down")
    return await handler(request)


async def _status(request: web.Request) -> web.Response:
    return web.json_response(await request.app[STATUS]())


async def _metrics(request: web.Request) -> web.Response:
    body = render(await request.app[STATUS]())
    return web.Response(
        body=body, content_type="text/plain", charset="utf-8", headers={"X-Content-Type-Options": "nosniff"}
    )


async def _challenge(request: web.Request) -> web.Response:
    replication = request.app[REPLICATION]
    challenge = replication.challenges.issue()
    ttl = int(replication.challenges.ttl * 1000)
    return web.json_response({"challenge": challenge, "gate": replication.gate_id, "ttl_ms": ttl})


async def _signed_body(request: web.Request) -> tuple[Replication, dict[str, Any]]:
    """The authenticated request's JSON object; the errors above otherwise."""
    replication = request.app[REPLICATION]
    admitted = replication.admit(request.headers, request.remote or "?")  # before the body is read
    body = await request.read()
    replication.verify(admitted, request.method, request.path_qs, body)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise WireError("not_json", "the body is not JSON", 400) from None
    if not isinstance(data, dict):
        raise WireError("bad_request", "the body must be a JSON object", 400)
    return replication, data


def _answer(replication: Replication, data: dict[str, Any]) -> web.Response:
    """A signed request's answer, with the caller's next challenge."""
    return web.json_response(data, headers={HEADER_CHALLENGE: replication.challenges.issue()})


async def _push(request: web.Request) -> web.Response:
    replication, data = await _signed_body(request)
    records = data.get("records")
    if set(data) != {"records"} or not isinstance(records, list) or len(records) > MAX_BATCH:
        raise WireError("bad_request", f"records: must be the only field, a list of at most {MAX_BATCH}", 400)
    received = await replication.receive(records)
    return _answer(replication, received.as_dict())


async def _pull(request: web.Request) -> web.Response:
    replication, data = await _signed_body(request)
    try:
        known, limit = parse_known(data)
    except ValueError as exc:
        raise WireError("bad_request", str(exc), 400) from None
    records, more = await replication.serve(known, limit)
    return _answer(replication, {"records": records, "more": more})


async def _command(request: web.Request) -> web.Response:
    lane = request.app[LANE]
    try:
        data = json.loads(await request.read())
    except (ValueError, RecursionError):
        raise WireError("not_json", "the body is not JSON", 400) from None
    applied = await lane.command(data, via="lan")
    return web.json_response({"applied": applied, "state": lane.status()})


def create_app(
    status: StatusSource | None,
    *,
    rate: int = 20,
    replication: Replication | None = None,
    lane: Lane | None = None,
    capacity: CapacityDesk | None = None,
) -> web.Application:
    """The LAN application serving ``status`` (``/v1/status`` and ``/metrics``), when given.

    With ``replication``, the peer routes too; with ``lane``, supervisors' commands.
    """
    app = web.Application(
        middlewares=[_errors, _rate_limit],
        client_max_size=MAX_BODY,
        handler_args={"logger": MalformedRequestLog(log, "LAN")},
    )
    app[LIMITER] = RateLimiter(rate)
    if status is not None:
        app[STATUS] = status
        app.router.add_get("/v1/status", _status)
        app.router.add_get("/metrics", _metrics)
    if replication is not None:
        app[REPLICATION] = replication
        app.router.add_get("/v1/challenge", _challenge)
        app.router.add_post("/v1/redemptions", _push)
        app.router.add_post("/v1/redemptions/pull", _pull)
    if lane is not None:
        app[LANE] = lane
        app.router.add_post("/v1/command", _command)
    if capacity is not None:  # strict capacity's places between gates (docs/CAPACITY.md)
        add_capacity_routes(app, capacity)
    return app


class LanServer(Listener):
    """Runs the LAN application on one address."""

    def __init__(self, app: web.Application) -> None:
        super().__init__(app, "[lan] listen")
