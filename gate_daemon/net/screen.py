"""The gate screen's server (aiohttp): one page, its live events, and the steward's manual entry.

- ``GET /screen``: the page (``gate_daemon/web/screen.html``, ``.css``, ``.js``; no build
  step, nothing from another origin).
- ``GET /screen/events``: Server-Sent Events. ``hello`` first (the gate, ``hold_ms``,
  whether manual entry and confirm are on), then ``status`` at once and every
  ``status_interval`` (``core.screen.StatusView``), and ``scan`` for every result the gate
  shows (``core.screen.ScanView``), as it is shown (``Gate.subscribe``). The browser's
  ``EventSource`` reconnects by itself (``retry`` below). At most ``MAX_STREAMS`` at once
  (``too_many_screens`` beyond); one status is read per interval for all of them
  (``StatusFeed``), so screens add no ledger reads as they are added.
- ``POST /screen/scan``: a steward's typed code, ``{"payload": "..."}`` as JSON, through the
  gate's full scan path, recorded with device ``screen``; answered with the scan's view.
- ``POST /screen/confirm``: a supervised lane's oldest held allow confirmed by the steward
  (``Gate.confirm("screen")``); ``{"confirmed": false}`` when none waits.

  Both are refused unless the request comes from the screen's own page: a JSON body
  (``Content-Type: application/json``, which another site's form cannot send without a
  preflight this server never grants) and an ``Origin`` naming the host asked; and at
  most ``POST_RATE`` a second from one address (``rate_limited``).

Every request must name an allowed host: on a loopback listen a loopback one, elsewhere
one of ``[screen] hosts`` (or the listen address), so a web page elsewhere cannot reach
the screen through a name of its own that resolves here (DNS rebinding). Off loopback
the screen has a pairing token: the steward's POSTs carry it in ``X-Screen-Token`` and
the event stream in ``?token=`` (``EventSource`` sends no headers); the kiosk's URL
brings it once (``/screen?token=...``) and the page keeps it for the tab. Every error is
``{"error": NAME, "detail": ...}``: ``not_found``, ``method_not_allowed``, ``too_large``,
``bad_request``, ``not_json``, ``wrong_host``, ``cross_origin``, ``no_token``,
``rate_limited``, ``too_many_screens``, ``manual_entry_off``, ``confirm_off``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import re
import sqlite3
import stat
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from gate_daemon.config.screen import is_loopback
from gate_daemon.core.screen import ScanView, StatusView, after_scan, scan_view, status_view
from gate_daemon.core.snapshot import GateSnapshot
from gate_daemon.core.tokens import MAX_PAYLOAD
from gate_daemon.errors import GateError
from gate_daemon.files import open_regular
from gate_daemon.gate.scan import Gate, ScanResult
from gate_daemon.net.http_edge import Listener, MalformedRequestLog, refusal
from gate_daemon.net.lan import RateLimiter

log = logging.getLogger(__name__)

#: What the browser waits before it reconnects, in milliseconds (sent as SSE ``retry``).
RETRY_MS = 1000
#: How long shutdown waits for a manual scan under way to commit.
SHUTDOWN_TIMEOUT = 10.0
#: How many event streams (screens) may be open at once.
MAX_STREAMS = 8
#: A steward's POSTs a second from one address (bursts of twice that).
POST_RATE = 5.0
#: The header a steward's POST carries the pairing token in.
TOKEN_HEADER = "X-Screen-Token"  # noqa: S105 (a header's name, not a secret)
#: The page's own files, served from the package.
ASSETS = {
    "/screen": ("screen.html", "text/html"),
    "/screen/screen.css": ("screen.css", "text/css"),
    "/screen/screen.js": ("screen.js", "text/javascript"),
}
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
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
    confirm: bool = True
    #: Answer only requests addressed to a loopback host (a loopback listen).
    loopback: bool = True
    #: Off loopback, the hosts a request may be addressed to (lowercase names or addresses).
    hosts: frozenset[str] = frozenset()
    #: Off loopback, the pairing token the page sends (None: none asked for).
    token: str | None = None
    status_interval: float = 2.0
    max_streams: int = MAX_STREAMS
    post_rate: float = POST_RATE


@dataclass
class Screen:
    """What the screen serves: the gate's results, its status, its decision clock."""

    gate: Gate
    status: Callable[[], Awaitable[GateSnapshot]]
    now: Callable[[], float]
    settings: ScreenSettings = field(default_factory=ScreenSettings)
    #: Set when the server shuts down: open event streams end.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    #: The event streams open now.
    streams: int = 0
    feed: StatusFeed = field(init=False)

    def __post_init__(self) -> None:
        self.feed = StatusFeed(self.strip, self.settings.status_interval)

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
LIMITER = web.AppKey("screen_limiter", RateLimiter)


class StatusFeed:
    """One status strip per interval, read by one task and shared by every open stream.

    The task runs while a stream listens and stops when the last one leaves, or when the
    status cannot be read (``failed``: the streams end; the pages reconnect).
    """

    def __init__(self, build: Callable[[], Awaitable[StatusView]], interval: float) -> None:
        self._build = build
        self._interval = interval
        self._listeners = 0
        self._task: asyncio.Task[None] | None = None
        #: Set, and replaced by a fresh one, each time ``latest`` changes or the feed fails.
        self.changed = asyncio.Event()
        self.latest: StatusView | None = None
        self.failed: BaseException | None = None
        #: How many strips were read (one per interval, however many streams).
        self.builds = 0

    def join(self) -> None:
        """A stream starts listening: the task starts if it is not running."""
        self._listeners += 1
        if self._task is None or self._task.done():
            self.latest, self.failed = None, None
            self._task = asyncio.get_running_loop().create_task(self._run())

    def leave(self) -> None:
        """A stream stops listening: the task stops with the last one."""
        self._listeners -= 1
        if self._listeners == 0 and self._task is not None:
            self._task.cancel()
            self._task = None

    async def first(self) -> StatusView | None:
        """The strip now (waiting for the first read); None when the feed failed."""
        while self.latest is None and self.failed is None:
            await self.changed.wait()
        return None if self.failed is not None else self.latest

    def _publish(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    async def _run(self) -> None:
        try:
            while True:
                self.latest = await self._build()
                self.builds += 1
                self._publish()
                await asyncio.sleep(self._interval)
        except (sqlite3.Error, ValueError, GateError) as exc:
            # The status could not be read (the ledger closing): the streams end, the pages come back.
            log.warning("screen: the gate's status cannot be read now (%s); the page reconnects", exc)
            self.failed = exc
            self._publish()


class ScreenRefused(Exception):
    """A request the screen refuses, by name."""

    def __init__(self, status: int, name: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.name, self.detail = status, name, detail


#: The shortest pairing token taken (``openssl rand -hex 16`` makes 32 characters).
MIN_TOKEN = 16


def read_token(path: Path) -> str:
    """The pairing token in ``path`` (``[screen] token``); ``GateError`` naming what is wrong.

    The file must be a regular file only its owner can read, holding one line of at least
    ``MIN_TOKEN`` printable ASCII characters (URL-safe: it goes in the kiosk's URL).
    """
    try:
        with open_regular(path) as handle:
            mode = os.fstat(handle.fileno()).st_mode
            raw = handle.read(1025)
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else exc
        raise GateError(f"cannot read the screen's token {path} ([screen] token): {why}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise GateError(f"the screen's token {path} has mode {stat.S_IMODE(mode):04o}; run: chmod 600 {path}")
    token = raw.decode("ascii", "replace").strip()
    if len(raw) > 1024 or len(token) < MIN_TOKEN or not _TOKEN.fullmatch(token):
        raise GateError(
            f"the screen's token {path} must be one line of {MIN_TOKEN} to 1024 letters, digits, "
            "'-' or '_' (make one: openssl rand -hex 16)"
        )
    return token


def _error(status: int, name: str, detail: str) -> web.Response:
    return web.json_response({"error": name, "detail": detail}, status=status)


def _host_allowed(host: str, settings: ScreenSettings) -> bool:
    """Whether a request's ``Host`` is one this screen answers to (a name resolving here does not count)."""
    try:
        name = urllib.parse.urlsplit(f"//{host}").hostname
    except ValueError:
        return False
    if name is None:
        return False
    return is_loopback(name) if settings.loopback else name.lower() in settings.hosts


def _token_given(request: web.Request, token: str | None) -> bool:
    """Whether the request carries the pairing token (always, when the screen has none)."""
    if token is None:
        return True
    given = request.headers.get(TOKEN_HEADER) or request.query.get("token") or ""
    return hmac.compare_digest(given.encode(), token.encode())


@web.middleware
async def _guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    settings = request.app[SCREEN].settings
    if not _host_allowed(request.host, settings):
        where = "its loopback address" if settings.loopback else "the names in [screen] hosts"
        return _error(403, "wrong_host", f"this screen answers on {where} only")
    guarded = request.method == "POST" or request.path == "/screen/events"
    if guarded and not _token_given(request, settings.token):
        return _error(403, "no_token", "open the screen with its pairing token (/screen?token=...)")
    if request.method == "POST" and not request.app[LIMITER].allow(request.remote or "?"):
        return _error(429, "rate_limited", "too many entries from this address; slow down")
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
    if screen.streams >= screen.settings.max_streams:
        raise ScreenRefused(
            503, "too_many_screens", f"{screen.settings.max_streams} screens are open here already"
        )
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
    screen.streams += 1
    screen.feed.join()
    try:
        await response.prepare(request)
        await _stream(screen, response)
    finally:
        screen.feed.leave()
        screen.streams -= 1
    return response


async def _stream(screen: Screen, response: web.StreamResponse) -> None:
    """Write one screen's events until the server stops, the page goes or the status fails."""
    settings, feed = screen.settings, screen.feed
    hello = {
        "gate": screen.gate.gate_id,
        "hold_ms": settings.hold_ms,
        "manual_entry": settings.manual_entry,
        "confirm": settings.confirm,
    }
    stop: asyncio.Future[Any] = asyncio.ensure_future(screen.stopping.wait())
    with screen.gate.subscribe() as results:
        waiting: asyncio.Future[Any] | None = None
        ticked: asyncio.Future[Any] | None = None
        try:
            await response.write(f"retry: {RETRY_MS}\n\n".encode() + _event("hello", hello))
            strip = await feed.first()
            changed = feed.changed  # the next strip's (first() has seen this one)
            while strip is not None and not stop.done():
                await response.write(_event("status", strip))
                waiting = waiting or asyncio.ensure_future(anext(results))
                ticked = ticked or asyncio.ensure_future(changed.wait())
                await asyncio.wait({waiting, ticked, stop}, return_when=asyncio.FIRST_COMPLETED)
                if waiting.done():
                    result, waiting = waiting.result(), None
                    await response.write(_event("scan", screen.scan(result)))
                    # The scan counted and a held allow's confirm button, at once; read in memory,
                    # so that screens add no ledger reads to a busy lane's scans.
                    strip = after_scan(strip, screen.gate.lane.status(), screen.gate.results.last_hour())
                elif ticked.done():
                    changed, ticked = feed.changed, None
                    strip = None if feed.failed is not None else feed.latest
        except ConnectionError:
            pass  # the page went away; it reconnects by itself if it is still there
        finally:
            for task in (waiting, ticked, stop):
                if task is not None:
                    task.cancel()


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
    screen = request.app[SCREEN]
    if not screen.settings.confirm:
        raise ScreenRefused(403, "confirm_off", "a steward's confirm is off here ([screen] confirm)")
    _same_origin(request)
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


def create_app(screen: Screen, limiter: RateLimiter | None = None) -> web.Application:
    """The screen's application; ``limiter`` takes the steward's POSTs (``post_rate`` by default)."""
    app = web.Application(
        middlewares=[_guard],
        client_max_size=8 << 10,
        handler_args={"logger": MalformedRequestLog(log, "screen")},
    )
    app[SCREEN] = screen
    app[LIMITER] = limiter or RateLimiter(screen.settings.post_rate)
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


class ScreenServer(Listener):
    """Runs the screen's application on one address."""

    def __init__(self, app: web.Application) -> None:
        super().__init__(app, "[screen] listen", shutdown_timeout=SHUTDOWN_TIMEOUT)
