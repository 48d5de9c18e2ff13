"""Enrollment at the central (docs/ENROLL.md): ``GET /v1/enroll`` and ``POST /v1/enroll``.

``GET /v1/enroll`` names the central, its event and the manifest key, so that
``gatectl enroll`` checks the key against its token's fingerprint before it asks anything.
``POST /v1/enroll`` takes a request signed with a token key (``core.enrollment``), spends
the token, enters the gate in the enrolled roster, builds the manifest version that lists
it and answers with the gate's place in the event, signed with the manifest key. Both are
unsigned routes of their own, rate-limited per address; a refusal is ``{"error": NAME}``
and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

from aiohttp import web

from gate_daemon.core.enrollment import Answer, EnrollRefused, Request, make_answer, parse_request
from gate_daemon.errors import GateError
from gate_daemon.net.lan import RateLimiter

from .config import CentralConfig
from .pretix.mapping import BRIDGE_GATE
from .service import Central
from .wire import ApiError

log = logging.getLogger(__name__)

#: The largest enrollment request.
MAX_ENROLL = 4096
ENROLL_LIMITER = web.AppKey("enroll_limiter", RateLimiter)
#: HTTP statuses of the refusals a token can meet.
_STATUS = {"token_unknown": 403, "bad_signature": 403, "token_used": 409, "token_revoked": 410}
_STATUS |= {"token_expired": 410, "gate_in_event_file": 409, "gate_id_reserved": 409}
#: Gate ids no token enrolls: the pretix bridge signs pretix's other devices' check-ins as
#: roster gate ``pretix``, and the roster cannot hold two gates of one id.
RESERVED_GATES = frozenset({BRIDGE_GATE})


def refuse_reserved(gate_id: str) -> None:
    """``EnrollRefused`` (``gate_id_reserved``) for an id the central keeps for itself."""
    if gate_id in RESERVED_GATES:
        raise EnrollRefused(
            "gate_id_reserved",
            f"gate id {gate_id!r} is the pretix bridge's roster gate (it signs what pretix's other "
            "devices check in): give the gate another id",
        )


def add_enroll_routes(app: web.Application, config: CentralConfig, central: Callable[[], Central]) -> None:
    """Serve enrollment on ``app``."""
    app[ENROLL_LIMITER] = RateLimiter(config.rate)

    def limit(request: web.Request) -> None:
        if not request.app[ENROLL_LIMITER].allow(request.remote or "?"):
            raise ApiError("rate_limited", "too many enrollment requests from this address; slow down", 429)

    async def describe(request: web.Request) -> web.Response:
        limit(request)
        book = central().book
        latest = book.latest
        return web.json_response(
            {
                "central": central().id,
                "event": latest.event_id if latest is not None else None,
                "signer": book.trusted[0].text(),
            }
        )

    async def enroll(request: web.Request) -> web.Response:
        limit(request)
        if request.content_length is not None and request.content_length > MAX_ENROLL:
            raise ApiError("too_large", f"the body is over {MAX_ENROLL} bytes", 413)
        body = await request.read()
        if len(body) > MAX_ENROLL:
            raise ApiError("too_large", f"the body is over {MAX_ENROLL} bytes", 413)
        try:
            wanted = parse_request(json.loads(body))
        except (ValueError, RecursionError) as exc:
            raise ApiError("bad_request", f"not an enrollment request: {exc}", 400) from None
        try:
            answer = await admit(central(), config, wanted)
        except EnrollRefused as exc:
            log.warning("enrollment of %s refused: %s", wanted.gate_id, exc.name)
            raise ApiError(exc.name, exc.detail, _STATUS.get(exc.name, 409)) from None
        return web.json_response(answer.wire())

    app.router.add_route("GET", "/v1/enroll", describe)
    app.router.add_route("POST", "/v1/enroll", enroll)


async def admit(
    central: Central, config: CentralConfig, request: Request, now: float | None = None
) -> Answer:
    """Spend the request's token, enter its gate, build the manifest that lists it; the signed answer."""
    if not request.verify():
        raise EnrollRefused("bad_signature", "the request's signatures do not verify (a forged token?)")
    refuse_reserved(request.gate_id)
    book = central.book
    latest = book.latest
    if latest is None:
        raise EnrollRefused("no_manifest", "the central has no manifest yet: fix its event inputs first")
    event = await asyncio.to_thread(config.read_event)
    if request.gate_id in {gate.id for gate in event.gates}:
        raise EnrollRefused(
            "gate_in_event_file",
            f"gate {request.gate_id} is listed in event.toml's [[gates]]: the file's entry stands",
        )
    token = await central.enrollments.redeem(request, time.time() if now is None else now)
    log.info("gate %s enrolled by token (LAN address %s)", request.gate_id, request.addr)
    try:
        await book.refresh(force=True)
    except GateError as exc:  # the gate is in the roster: the next poll builds it
        log.warning("no manifest built after enrolling %s: %s", request.gate_id, str(exc).splitlines()[0])
    current = book.latest or latest
    return make_answer(
        request,
        book.signer,
        gate_id=request.gate_id,
        event_id=current.event_id,
        zone=token.zone,
        central=central.id,
        version=current.version,
    )
