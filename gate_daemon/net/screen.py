"""The gate screen's server (aiohttp): one page, its live events, and the steward's manual entry.

- ``GET /screen``: the page (``gate_daemon/web/screen.html``, ``.css``, ``.js``; no build
  step, nothing from another origin).
- ``GET /screen/events``: Server-Sent Events. ``hello`` first (the gate, ``hold_ms``,
  whether manual entry is on), then ``status`` at once and every ``status_interval``
  (``core.screen.StatusView``), and ``scan`` for every result the gate shows
  (``core.screen.ScanView``), as it is shown (``Gate.subscribe``). The browser's
  ``EventSource`` reconnects by itself (``retry`` below).
- ``POST /screen/scan``: a steward's typed code, ``{"payload": "..."}`` as JSON, through the
  gate's full scan path, recorded with device ``screen``; answered with the scan's view.
- ``POST /screen/confirm``: a supervised lane's oldest held allow confirmed by the steward
  (``Gate.confirm("screen")``); ``{"confirmed": false}`` when none waits.

  Both are refused unless the request comes from the screen's own page: a JSON body
  (``Content-Type: application/json``, which another site's form cannot send without a
  preflight this server never grants) and an ``Origin`` naming the host asked.

On a loopback listen the screen answers only requests addressed to a loopback host,
so a web page elsewhere cannot reach it through a name that resolves to 127.0.0.1 (DNS
rebinding). Every error is ``{"error": NAME, "detail": ...}``: ``not_found``,
``method_not_allowed``, ``too_large``, ``bad_request``, ``not_json``, ``wrong_host``,
``cross_origin``, ``manual_entry_off``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiohttp import web

from gate_daemon.config.screen import is_loopback
from gate_daemon.core.screen import ScanView, StatusView, after_scan, scan_view, status_view
from gate_daemon.core.snapshot import GateSnapshot
from gate_daemon.core.tokens import MAX_PAYLOAD
from gate_daemon.errors import GateError
from gate_daemon.gate.scan import Gate, ScanResult
from gate_daemon.net.http_edge import MalformedRequestLog, refusal

log = logging.getLogger(__name__)

#: What the browser waits before it reconnects, in milliseconds (sent as SSE ``retry``).
RETRY_MS = 1000
#: How long shutdown waits for a manual scan under way to commit.
SHUTDOWN_TIMEOUT = 10.0
#: The page's own files, served from the package.
ASSETS = {
    "/screen": ("screen.html", "text/html"),
    "/screen/screen.css": ("screen.css", "text/css"),
    "/screen/screen.js": ("screen.js", "text/javascript"),
}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True, slots=True)
class ScreenSettings:
    """What the screen shows and takes (``[screen]``, ``[signals] hold_ms``)."""

    hold_ms: int = 1500
    names: bool = True
    manual_entry: bool = True
    #: Answer only requests addressed to a loopback host (a loopback listen).
    loopback: bool = True
    status_interval: float = 2.0


@dataclass
class Screen:
    """What the screen serves: the gate's results, its status, its decision clock."""

    gate: Gate
    status: Callable[[], Awaitable[GateSnapshot]]
    now: Callable[[], float]
    settings: ScreenSettings = field(default_factory=ScreenSettings)
    #: Set when the server shuts down: open event streams end.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def scan(self, result: ScanResult) -> ScanView:
        """A result as the screen shows it, with its ticket's seat (and name) from the active manifest."""
        manifest = self.gate.manifests.current
        ticket = result.decision.ticket_id
        entry = manifest.find_ticket(ticket) if manifest is not None and ticket is not None else None
        return scan_view(
            result.decision,
            entry,
            manifest,
            self.now(),
            names=self.settings.names,
            recorded=result.recorded,
            pending=result.pending,
        )

    async def strip(self) -> StatusView:
        """The status strip now."""
        return status_view(await self.status(), self.gate.results.last_hour())


SCREEN = web.AppKey("screen", Screen)


class ScreenRefused(Exception):
    """A request the screen refuses, by name."""

    def __init__(self, status: int, name: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.name, self.detail = status, name, detail


def _error(status: int, name: str, detail: str) -> web.Response:
    return web.json_response({"error": name, "detail": detail}, status=status)


def _host_is_loopback(host: str) -> bool:
    """Whether a request's ``Host`` names this machine (a name resolving here does not count)."""
    try:
        name = urllib.parse.urlsplit(f"//{host}").hostname
    except ValueError:
        return False
    return name is not None and is_loopback(name)


@web.middleware
async def _guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    screen = request.app[SCREEN]
    if screen.settings.loopback and not _host_is_loopback(request.host):
        return _error(403, "wrong_host", "this screen answers on its loopback address only")
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return refusal(exc)
    except ScreenRefused as exc:
        return _error(exc.status, exc.name, exc.detail)


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)


def _asset_handler(name: str, content_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    body = (resources.files("gate_daemon") / "web" / name).read_bytes()

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, charset="utf-8")

    return handle


def _event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def _events(request: web.Request) -> web.StreamResponse:
    screen = request.app[SCREEN]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
    await response.prepare(request)
    settings = screen.settings
    hello = {"gate": screen.gate.gate_id, "hold_ms": settings.hold_ms, "manual_entry": settings.manual_entry}
    stop: asyncio.Future[Any] = asyncio.ensure_future(screen.stopping.wait())
    with screen.gate.subscribe() as results:
        waiting: asyncio.Future[Any] | None = None
        try:
            await response.write(f"retry: {RETRY_MS}\n\n".encode() + _event("hello", hello))
            strip = await screen.strip()
            await response.write(_event("status", strip))
            while not stop.done():
                waiting = waiting or asyncio.ensure_future(anext(results))
                await asyncio.wait(
                    {waiting, stop}, timeout=settings.status_interval, return_when=asyncio.FIRST_COMPLETED
                )
                if waiting.done():
                    result, waiting = waiting.result(), None
                    await response.write(_event("scan", screen.scan(result)))
                    # The scan counted and a held allow's confirm button, at once; read in memory,
                    # so that screens add no ledger reads to a busy lane's scans.
                    strip = after_scan(strip, screen.gate.lane.status(), screen.gate.results.last_hour())
                    await response.write(_event("status", strip))
                elif not stop.done():
                    strip = await screen.strip()
                    await response.write(_event("status", strip))
        except ConnectionError:
            pass  # the page went away; it reconnects by itself if it is still there
        except (sqlite3.Error, ValueError, GateError) as exc:
            # The status could not be read (the ledger closing): end the stream, the page comes back.
            log.warning("screen: the gate's status cannot be read now (%s); the page reconnects", exc)
        finally:
            for task in (waiting, stop):
                if task is not None:
                    task.cancel()
    return response


def _same_origin(request: web.Request) -> None:
    origin = request.headers.get("Origin")
    if origin is None or origin not in (f"http://{request.host}", f"https://{request.host}"):
        raise ScreenRefused(403, "cross_origin", "a steward's entry is taken from the screen's own page only")
    if request.content_type != "application/json":
        raise ScreenRefused(415, "not_json", "the body must be JSON (Content-Type: application/json)")


def _steward(request: web.Request) -> Screen:
    """The screen, for a steward's act from its own page (a typed code, a confirmation)."""
    screen = request.app[SCREEN]
    if not screen.settings.manual_entry:
        raise ScreenRefused(
            403, "manual_entry_off", "a steward's entries are off here ([screen] manual_entry)"
        )
    _same_origin(request)
    return screen


async def _confirm(request: web.Request) -> web.Response:
    screen = _steward(request)
    if await request.read() not in (b"", b"{}"):
        raise ScreenRefused(400, "bad_request", "the body must be empty or {}")
    return web.json_response({"confirmed": screen.gate.confirm("screen")})


def manual_payload(data: bytes) -> str:
    """The payload a manual entry's body carries; ``ScreenRefused`` naming what is wrong."""
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        raise ScreenRefused(400, "not_json", "the body is not JSON") from None
    payload = body.get("payload") if isinstance(body, dict) else None
    if set(body if isinstance(body, dict) else ()) != {"payload"} or not isinstance(payload, str):
        raise ScreenRefused(400, "bad_request", 'the body must be {"payload": TEXT}')
    payload = payload.strip()
    if not 0 < len(payload) <= MAX_PAYLOAD or not payload.isprintable():
        raise ScreenRefused(400, "bad_request", f"payload: 1 to {MAX_PAYLOAD} printable characters")
    return payload


async def _manual_scan(request: web.Request) -> web.Response:
    screen = _steward(request)
    payload = manual_payload(await request.read())
    result = await screen.gate.scan(payload, device="screen")
    return web.json_response({"scan": screen.scan(result)})


async def _stopping(app: web.Application) -> None:
    app[SCREEN].stopping.set()


def create_app(screen: Screen) -> web.Application:
    """The screen's application."""
    app = web.Application(
        middlewares=[_guard],
        client_max_size=8 << 10,
        handler_args={"logger": MalformedRequestLog(log, "screen")},
    )
    app[SCREEN] = screen
    for path, (name, content_type) in ASSETS.items():
        app.router.add_get(path, _asset_handler(name, content_type))
    app.router.add_get("/", _redirect)
    app.router.add_get("/screen/events", _events)
    app.router.add_post("/screen/scan", _manual_scan)
    app.router.add_post("/screen/confirm", _confirm)
    app.on_response_prepare.append(_headers)
    app.on_shutdown.append(_stopping)
    return app


async def _redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/screen")


class ScreenServer:
    """Runs the screen's application on one address."""

    def __init__(self, app: web.Application) -> None:
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port``; ``GateError`` naming the address when it cannot."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            why = exc.strerror or exc
            raise GateError(f"cannot listen on {host}:{port} ([screen] listen): {why}") from None
        self.port = int(self._runner.addresses[0][1])

    async def aclose(self) -> None:
        """Stop listening; end the event streams; let a manual scan under way finish."""
        await self._runner.cleanup()
