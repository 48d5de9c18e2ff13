"""The fleet on the central: ``GET /v1/fleet`` (JSON) and the live page ``GET /fleet``.

Both read the gates' last heartbeats (``CentralStore.heard``) and judge them with
``gate_daemon.core.fleet`` against ``[fleet]``'s thresholds: gates needing attention
first, each with its conditions, and the SOP card of every condition shown
(``central.sop``). They are for the venue's operators, not for gates: no signed request,
but served only to clients in ``[central] fleet_allow`` (this machine by default;
docs/CHOICES.md says why); anything else gets ``403 forbidden``. And only when the
request's ``Host`` names this central (``host_named``): an IP address, a loopback name,
the listen host or one of ``[central] fleet_hosts``; anything else gets ``403 wrong_host``,
so a page whose name is DNS-rebound to this machine cannot read it from a browser here.
``guard`` is both checks; ``GET /v1/commands`` (``central.app``) passes it too.

The page is one HTML file with plain JavaScript and CSS (``fleet_page/``, package data);
it polls ``/v1/fleet`` and signs supervisor commands in the browser (docs/FLEET.md).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web

from gate_daemon.core.fleet import Thresholds, assemble

from .config import CentralConfig, Network
from .pretix.mapping import BRIDGE_GATE
from .service import Central
from .sop import SopCards
from .wire import ApiError

#: The page's files (package data beside this module), with their content types.
ASSETS = {"fleet.html": "text/html", "fleet.js": "text/javascript", "fleet.css": "text/css"}
#: The page runs only its own files; cards are HTML from Markdown with raw HTML off.
_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:;"
    " base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def allowed(remote: str | None, networks: tuple[Network, ...]) -> bool:
    """Whether a client at ``remote`` may read the fleet."""
    try:
        address = ipaddress.ip_address((remote or "").split("%")[0])
    except ValueError:
        return False  # not an IP client (a unix socket): nothing names it
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


#: The names of this machine a ``Host`` may say, whatever the configuration.
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def host_named(header: str | None, config: CentralConfig) -> bool:
    """Whether a request's ``Host`` header names this central (its port is not judged).

    An IP address is always named: a browser sends the address it connected to, so no DNS
    answer can have changed it. A name must be a loopback name, the listen host or one of
    ``fleet_hosts``.
    """
    text = (header or "").strip().lower()
    if text.startswith("["):
        name = text[1 : text.find("]")] if "]" in text else ""
    else:
        name = text.rsplit(":", 1)[0] if text.count(":") == 1 else text
    name = name.rstrip(".")
    if not name:
        return False
    try:
        ipaddress.ip_address(name.split("%")[0])
    except ValueError:
        return name in LOOPBACK_NAMES or name == config.host.lower() or name in config.fleet_hosts
    return True


def guard(request: web.Request, config: CentralConfig, what: str) -> None:
    """Refuse (``ApiError``) a client outside ``fleet_allow`` or a ``Host`` that names another machine."""
    if not allowed(request.remote, config.fleet_allow):
        raise ApiError("forbidden", f"this address may not read {what} ([central] fleet_allow)", 403)
    if not host_named(request.headers.get("Host"), config):
        raise ApiError(
            "wrong_host",
            f"the Host header does not name this central ([central] fleet_hosts) to read {what}",
            403,
        )


def _asset(name: str) -> bytes:
    return (resources.files(__package__) / "fleet_page" / name).read_bytes()


async def fleet_state(central: Central, cards: SopCards, limits: Thresholds, now: float) -> dict[str, Any]:
    """What ``GET /v1/fleet`` answers: the judged gates, the facts they were judged from, the cards."""
    heard = await central.store.heard()
    bridge = central.bridge
    # The pretix bridge's roster entry signs the check-ins of pretix's devices: not a gate that beats.
    roster = sorted(g for g in central.roster() or {} if bridge is None or g != BRIDGE_GATE)
    ranked = assemble(roster, heard, now, limits)
    shown = {str(c) for item in ranked for c in item.conditions} | {"central_down"}
    latest = central.book.latest
    return {
        "central": central.id,
        "now": now,
        "event": None if latest is None else latest.event_id,
        "manifest_version": None if latest is None else latest.version,
        "thresholds": dataclasses.asdict(limits),
        "roster": roster,
        "heartbeats": heard,
        "gates": [item.as_dict() for item in ranked],
        "attention": sum(1 for item in ranked if item.needed),
        "sop": {name: cards.card(name) for name in sorted(shown)},
        "source": {"source": "file"} if bridge is None else dict(bridge.summary()),
    }


def add_fleet_routes(
    app: web.Application,
    config: CentralConfig,
    central: Callable[[], Central],
    clock: Callable[[], float] = time.time,
) -> None:
    """Serve the fleet on ``app``: ``/fleet``, its files under ``/fleet/``, and ``/v1/fleet``."""
    cards = SopCards(config.sop)

    def guarded(
        handler: Callable[[web.Request], Awaitable[web.Response]],
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def serve(request: web.Request) -> web.Response:
            guard(request, config, "the fleet")
            response = await handler(request)
            response.headers["Cache-Control"] = "no-store"
            return response

        return serve

    async def state(request: web.Request) -> web.Response:
        return web.json_response(await fleet_state(central(), cards, config.thresholds, clock()))

    async def page(request: web.Request) -> web.Response:
        return _file("fleet.html")

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in ASSETS or name == "fleet.html":
            raise ApiError("not_found", "no such file of the fleet page", 404)
        return _file(name)

    app.router.add_get("/v1/fleet", guarded(state))
    app.router.add_get("/fleet", guarded(page))
    app.router.add_get("/fleet/{name}", guarded(asset))


def _file(name: str) -> web.Response:
    response = web.Response(body=_asset(name), content_type=ASSETS[name], charset="utf-8")
    response.headers["Content-Security-Policy"] = _POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
