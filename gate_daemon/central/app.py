"""The reference central's HTTP API (aiohttp): the upstream contract v1 (docs/upstream.openapi.yaml).

``GET /v1/challenge`` and the supervisors' ``POST /v1/commands`` and ``GET /v1/commands``
are the unsigned routes (rate-limited per address; a command carries its supervisor's
signature, verified against the latest manifest's roster). ``GET /v1/commands`` lists
every gate's commands and messages, so it answers only where the fleet does
(``central.fleet.guard``: ``[central] fleet_allow`` and a ``Host`` that names the central).
Every other route takes a signed request (``gate_daemon.net.peer_auth``) from a gate in the latest
manifest's roster: ``admit`` runs on the headers before the body is read, then the
signature is verified over method, ``rel_url.raw_path_qs`` and body. An answer to a
request whose signature verified carries a fresh ``Gate-Challenge``, errors included;
one refused before that (a forged signature among them) does not: a new challenge then
comes only from the rate-limited ``/v1/challenge``, so forged requests cannot buy more
verification work than the rate limit allows. A challenge is spent before the body is
read, and one address holds at most ``peer_auth.MAX_SPENT_PER_CLIENT`` spent challenges.

Every error is ``{"error": NAME, "detail": ...}``; never a traceback. A ``405`` carries
``Allow``; a request that is not HTTP at all gets aiohttp's plain-text 400 and one
rate-limited log line (``gate_daemon.net.http_edge``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from gate_daemon.errors import GateError, WireError
from gate_daemon.net.central_time import HEADER_CENTRAL_TIME
from gate_daemon.net.http_edge import MalformedRequestLog, refusal
from gate_daemon.net.lan import RateLimiter
from gate_daemon.net.peer_auth import HEADER_CHALLENGE, HEADER_SIGNATURE, Caller, admit
from gate_daemon.store.central.checkin_book import UuidReused

from .config import CentralConfig
from .enroll import add_enroll_routes
from .fleet import add_fleet_routes, guard
from .manifests import GateAhead
from .pretix.bridge import keep_synced
from .service import Central
from .wire import (
    MAX_BODY,
    MAX_COMMAND,
    MAX_HEARTBEAT,
    ApiError,
    parse_evidence,
    parse_gate,
    parse_have,
    parse_heartbeat,
    parse_object,
    parse_pull,
    parse_push,
    parse_release,
    parse_search,
    parse_validate,
)

log = logging.getLogger(__name__)

CENTRAL: web.AppKey[Central] = web.AppKey("central", Central)
CONFIG: web.AppKey[CentralConfig] = web.AppKey("config", CentralConfig)
LIMITER = web.AppKey("limiter", RateLimiter)
#: The supervisors' unsigned routes have their own limit: they cannot starve ``/v1/challenge``.
COMMAND_LIMITER = web.AppKey("command_limiter", RateLimiter)
#: Set on a request whose signature verified: its answer carries the next challenge.
AUTHENTICATED: web.RequestKey[bool] = web.RequestKey("authenticated", bool)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, name: str, detail: str) -> web.Response:
    return web.json_response({"error": name, "detail": detail}, status=status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = refusal(exc)
    except WireError as exc:  # an AuthError, an ApiError, or a refusal of peer_auth's (busy, no_roster)
        if exc.name == "no_roster":
            response = _error(503, "no_manifest", "the central has no manifest, so it knows no gates")
        else:
            response = _error(exc.status or 500, exc.name, exc.detail)
    except ConnectionResetError:
        # The gate gave up (its deadline, a cut link) before its answer: it will ask again.
        log.info("%s %s: the caller went away before its answer", request.method, request.path)
        response = _error(503, "unavailable", "the caller went away")
    except (sqlite3.Error, OSError, GateError) as exc:
        log.error("%s %s: cannot answer: %s", request.method, request.path, type(exc).__name__)
        response = _error(503, "unavailable", "the central cannot answer now")
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        response = _error(500, "internal", "the central failed on this request")
    if request.get(AUTHENTICATED):
        response.headers[HEADER_CHALLENGE] = request.app[CENTRAL].challenges.issue()
    _sign_time(request, response)
    return response


def _sign_time(request: web.Request, response: web.StreamResponse) -> None:
    """Put the central's signed time in a successful answer to a signed request (``net.central_time``).

    Bound to the request's own signature, so it answers that request only; a signed route
    answers below 400 only once the signature verified.
    """
    signature = request.headers.get(HEADER_SIGNATURE)
    if request.get(AUTHENTICATED) and signature is not None and response.status < 400:
        response.headers[HEADER_CENTRAL_TIME] = request.app[CENTRAL].book.sign_time(signature)


async def _challenge(request: web.Request) -> web.Response:
    if not request.app[LIMITER].allow(request.remote or "?"):
        raise ApiError("rate_limited", "too many challenges from this address; slow down", 429)
    central = request.app[CENTRAL]
    ttl = int(central.challenges.ttl * 1000)
    return web.json_response({"challenge": central.challenges.issue(), "ttl_ms": ttl, "central": central.id})


async def _signed(request: web.Request, max_body: int = MAX_BODY) -> tuple[Caller, bytes]:
    """The authenticated caller and the body; a ``WireError`` (``AuthError``, ``ApiError``) otherwise."""
    central = request.app[CENTRAL]
    # Before the body is read: a request that cannot be genuine costs no more.
    admitted = admit(central.challenges, central.roster(), request.headers, request.remote or "?")
    if request.content_length is not None and request.content_length > max_body:
        raise ApiError("too_large", f"the body is over {max_body} bytes", 413)
    body = await request.read()
    if len(body) > max_body:
        raise ApiError("too_large", f"the body is over {max_body} bytes", 413)
    caller = admitted.verify(request.method, request.rel_url.raw_path_qs, body)
    request[AUTHENTICATED] = True
    return caller, body


async def _manifest(request: web.Request) -> web.Response:
    await _signed(request)
    have = parse_have(request.rel_url.query)
    try:
        served = await request.app[CENTRAL].manifest(have)
    except GateAhead as exc:
        raise ApiError("gate_ahead", str(exc), 409) from None
    headers = {"Manifest-Version": str(served.version)}
    if served.data is None:
        return web.Response(status=304, headers=headers)
    headers["Manifest-Kind"] = served.kind
    return web.Response(body=served.data, content_type="application/octet-stream", headers=headers)


async def _push(request: web.Request) -> web.Response:
    _, body = await _signed(request)
    records = parse_push(parse_object(body))
    return web.json_response(await request.app[CENTRAL].push(records))


async def _pull(request: web.Request) -> web.Response:
    await _signed(request)
    after, limit = parse_pull(request.rel_url.query)
    return web.json_response(await request.app[CENTRAL].pull(after, limit))


async def _participants(request: web.Request) -> web.Response:
    await _signed(request)
    q, limit = parse_search(request.rel_url.query)
    return web.json_response(await request.app[CENTRAL].participants(q, limit))


async def _validate(request: web.Request) -> web.Response:
    caller, body = await _signed(request)
    wanted = parse_validate(parse_object(body))
    try:
        answer = await request.app[CENTRAL].validate(caller.gate_id, wanted)
    except UuidReused as exc:
        raise ApiError("uuid_reused", str(exc), 409) from None
    return web.json_response(answer)


async def _release(request: web.Request) -> web.Response:
    caller, body = await _signed(request)
    uuid = parse_release(parse_object(body))
    return web.json_response(await request.app[CENTRAL].release(caller.gate_id, uuid))


async def _heartbeat(request: web.Request) -> web.Response:
    caller, body = await _signed(request, MAX_HEARTBEAT)
    beat = parse_heartbeat(parse_object(body))
    return web.json_response(await request.app[CENTRAL].heartbeat(caller.gate_id, beat))


async def _post_command(request: web.Request) -> web.Response:
    _limit(request)
    if request.content_length is not None and request.content_length > MAX_COMMAND:
        raise ApiError("too_large", f"the body is over {MAX_COMMAND} bytes", 413)
    body = await request.read()
    if len(body) > MAX_COMMAND:
        raise ApiError("too_large", f"the body is over {MAX_COMMAND} bytes", 413)
    return web.json_response(await request.app[CENTRAL].command(parse_object(body)))


async def _list_commands(request: web.Request) -> web.Response:
    guard(request, request.app[CONFIG], "the command list")
    _limit(request)
    gate = parse_gate(request.rel_url.query)
    return web.json_response(await request.app[CENTRAL].listed(gate))


def _limit(request: web.Request) -> None:
    """The commands' routes are limited per address, as ``/v1/challenge`` is (on a bucket of their own)."""
    if not request.app[COMMAND_LIMITER].allow(request.remote or "?"):
        raise ApiError("rate_limited", "too many requests from this address; slow down", 429)


async def _evidence(request: web.Request) -> web.Response:
    caller, body = await _signed(request)
    scans = parse_evidence(parse_object(body))
    return web.json_response(await request.app[CENTRAL].evidence(caller.gate_id, scans))


#: Every route: (method, path, handler). The OpenAPI document lists the same.
ROUTES: tuple[tuple[str, str, Callable[[web.Request], Awaitable[web.Response]]], ...] = (
    ("GET", "/v1/challenge", _challenge),
    ("GET", "/v1/manifest", _manifest),
    ("POST", "/v1/checkins", _push),
    ("GET", "/v1/checkins", _pull),
    ("GET", "/v1/participants", _participants),
    ("POST", "/v1/validate", _validate),
    ("POST", "/v1/validate/release", _release),
    ("POST", "/v1/heartbeat", _heartbeat),
    ("POST", "/v1/commands", _post_command),
    ("GET", "/v1/commands", _list_commands),
    ("POST", "/v1/evidence", _evidence),
)


def create_app(
    config: CentralConfig,
    *,
    clock: Callable[[], float] = time.time,
    central: Central | None = None,
) -> web.Application:
    """The central's application for ``config``.

    Its database and manifests are opened when the application starts (``cleanup_ctx``),
    and the inputs are polled every ``poll_ms`` until it stops. With ``central`` (already
    open), that one is served instead and left open.
    """
    app = web.Application(
        middlewares=[_errors],
        client_max_size=MAX_BODY,
        handler_args={"logger": MalformedRequestLog(log, "central")},
    )
    app[CONFIG] = config
    app[LIMITER] = RateLimiter(config.rate)
    app[COMMAND_LIMITER] = RateLimiter(config.rate)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    add_fleet_routes(app, config, lambda: app[CENTRAL], clock)
    add_enroll_routes(app, config, lambda: app[CENTRAL])

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        opened = central is None
        app[CENTRAL] = central if central is not None else await Central.open(config, clock=clock)
        bridge = app[CENTRAL].bridge
        if bridge is None:
            poller = _poll(app[CENTRAL], config.poll_ms / 1000)
        else:  # [source] kind = "pretix": pretix's changes, not the files, make versions
            poller = keep_synced(bridge, app[CENTRAL].book)
        try:
            async with _running(poller):
                yield
        finally:
            if opened:
                await app[CENTRAL].aclose()

    app.cleanup_ctx.append(lifecycle)
    return app


async def _poll(central: Central, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await central.book.poll()
        except Exception:  # the next poll may succeed; the server keeps serving the latest
            log.exception("manifest poll failed")


@contextlib.asynccontextmanager
async def _running(coro: Any) -> AsyncIterator[None]:
    task = asyncio.create_task(coro)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
