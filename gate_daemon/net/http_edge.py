"""The HTTP edge shared by the gate's LAN API and the central: aiohttp's own refusals, named.

Two kinds of request never reach a route:

- one aiohttp routes and refuses itself (no such path, a method the path does not take,
  a body over ``client_max_size``): ``refusal`` answers it as a named JSON error, and a
  ``405`` keeps the ``Allow`` header RFC 9110 requires;
- one aiohttp cannot parse as HTTP (a bad method, a control character in a header, a
  request or header line over 8190 bytes): aiohttp answers ``400`` with a plain-text
  body and closes the connection, before any middleware runs, so the answer stays
  plain text. It would also log a full traceback per request; ``MalformedRequestLog``,
  given to aiohttp as its server logger (``handler_args={"logger": ...}``), writes one
  line instead, at most once per ``interval``, so that no client on the LAN can flood
  the journal.

``Listener`` runs an application on one address for the gate's two servers (the LAN API
and the screen) and names the config key when the address cannot be listened on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from gate_daemon.errors import GateError

#: aiohttp's own refusals, by status; any other 4xx it raises is ``bad_request``.
NAMES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
#: At most one line about malformed requests in this many seconds.
INTERVAL = 10.0


def refusal(exc: web.HTTPException) -> web.Response:
    """aiohttp's own 4xx as ``{"error": NAME, "detail": ...}``, keeping its ``Allow`` header."""
    name = NAMES.get(exc.status, "bad_request")
    response = web.json_response({"error": name, "detail": exc.reason}, status=exc.status)
    allow = exc.headers.get("Allow")
    if allow is not None:
        response.headers["Allow"] = allow
    return response


class MalformedRequestLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server logger for one server: a request that is not HTTP is one line, rate-limited.

    Wiring: ``web.Application(handler_args={"logger": MalformedRequestLog(log, "LAN")})``.
    Whatever else aiohttp logs (a handler's unexpected exception) passes through unchanged,
    traceback included, since that is a bug to see.
    """

    def __init__(
        self,
        logger: logging.Logger,
        server: str,
        *,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(logger, {})
        self.server = server
        self.interval = interval
        self._clock = clock
        self._last: float | None = None
        #: Malformed requests not logged since the last line.
        self.unlogged = 0

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        """Log as the wrapped logger would, except a malformed request's parse error."""
        exc_info = kwargs.get("exc_info")
        error = exc_info[1] if isinstance(exc_info, tuple) else exc_info
        if isinstance(error, HttpProcessingError):
            # aiohttp's message is ("... from %s", remote): the remote address is the one argument.
            self.malformed(str(args[0]) if args else "?", error)
        else:
            self.logger.log(level, msg, *args, **kwargs)

    def malformed(self, remote: str, error: HttpProcessingError) -> None:
        """Note one malformed request from ``remote``: a line unless one was written lately."""
        now = self._clock()
        if self._last is not None and now - self._last < self.interval:
            self.unlogged += 1
            return
        self._last = now
        # The parser's message quotes the offending bytes with repr(): one printable line.
        lines = error.message.strip().splitlines()
        what = lines[0].rstrip(":")[:160] if lines else type(error).__name__
        more = f"; {self.unlogged} more not logged since the last line" if self.unlogged else ""
        self.unlogged = 0
        self.logger.warning(
            "%s: refused a malformed HTTP request from %s with a plain-text %d (%s: %s)%s",
            self.server,
            remote,
            error.code,
            type(error).__name__,
            what,
            more,
        )


class Listener:
    """Runs an application on one address; ``key`` names its config key in errors (``[lan] listen``)."""

    def __init__(self, app: web.Application, key: str, shutdown_timeout: float = 60.0) -> None:
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout
        )
        self._key = key
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port``; ``GateError`` naming the address when it cannot."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise GateError(f"cannot listen on {host}:{port} ({self._key}): {exc.strerror or exc}") from None
        self.port = int(self._runner.addresses[0][1])

    async def aclose(self) -> None:
        """Stop listening and finish the requests under way."""
        await self._runner.cleanup()
