"""The pretix REST API as a scanning device calls it (docs/PRETIX.md), with named errors.

One injected ``httpx.AsyncClient``, a timeout per call, and one place where transport
failures and pretix's answers become ``PretixError``s::

    PretixError (a WireError: name, detail, status)
    ├── unreachable   no connection (refused, DNS, TLS)
    ├── timeout       no answer within the call's timeout
    ├── denied        401/403: the device token is wrong, revoked, or the security profile refuses
    ├── not_found     404 on a read (wrong organizer, event or list)
    ├── server_error  5xx
    ├── refused       any other 4xx on a read
    └── garbage       an answer that is not the JSON this call expects

Never logs nor names the token: details carry the path, the status and a short piece of
pretix's answer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

import httpx

from gate_daemon.errors import WireError

#: pretix's largest page.
PAGE_SIZE = 50
#: At most this many pages in one listing: a loop in ``next`` links cannot run forever.
MAX_PAGES = 100_000


class PretixError(WireError):
    """A call to pretix that failed, by name (see the module's tree)."""

    kept: ClassVar[int | None] = 300


class PretixClient:
    """Calls to one pretix organizer's API with a device token (or none, to initialize)."""

    def __init__(self, http: httpx.AsyncClient, url: str, organizer: str, *, timeout: float = 10.0) -> None:
        self._http = http
        self._base = url.rstrip("/")
        self.organizer = organizer
        self.timeout = timeout
        self._token: str | None = None

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    def use_token(self, token: str) -> None:
        """Send ``Authorization: Device TOKEN`` from now on."""
        self._token = token

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._token is not None:
            headers["Authorization"] = f"Device {self._token}"
        return headers

    def url(self, path: str) -> str:
        """The absolute URL of an organizer path (``events/x/``) or of an API path (``/api/v1/...``)."""
        if path.startswith("/"):
            return self._base + path
        return f"{self._base}/api/v1/organizers/{self.organizer}/{path}"

    async def _send(
        self, method: str, url: str, params: Mapping[str, Any] | None, body: object, timeout: float | None
    ) -> httpx.Response:
        where = httpx.URL(url).path
        try:
            return await self._http.request(
                method,
                url,
                params=params,
                json=body,
                headers=self._headers(),
                timeout=self.timeout if timeout is None else timeout,
            )
        except httpx.TimeoutException:
            raise PretixError("timeout", f"{method} {where}: no answer in time") from None
        except httpx.HTTPError as exc:
            raise PretixError("unreachable", f"{method} {where}: {type(exc).__name__}") from None

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> tuple[Any, httpx.Headers]:
        """A JSON read and its headers; ``PretixError`` for anything but a 200 with JSON."""
        response = await self._send("GET", self.url(path), params, None, None)
        _raise_for(response, ok=(200,))
        return _json(response), response.headers

    async def pages(
        self, path: str, params: Mapping[str, Any] | None = None
    ) -> AsyncIterator[tuple[list[dict[str, Any]], httpx.Headers]]:
        """Every page of a listing (its ``results`` and headers), following ``next``."""
        url: str | None = self.url(path)
        query: Mapping[str, Any] | None = {**(params or {}), "page_size": PAGE_SIZE}
        for _ in range(MAX_PAGES):
            if url is None:
                return
            response = await self._send("GET", url, query, None, None)
            _raise_for(response, ok=(200,))
            data = _json(response)
            results = data.get("results") if isinstance(data, dict) else None
            if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
                raise PretixError("garbage", f"GET {response.url.path}: no list of results in the answer")
            yield results, response.headers
            following = data.get("next")
            if following is not None and not isinstance(following, str):
                raise PretixError("garbage", f"GET {response.url.path}: 'next' is not a link")
            url, query = following, None
        raise PretixError("garbage", f"GET {path}: more than {MAX_PAGES} pages")

    async def post(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        answers: tuple[int, ...] = (200, 201),
        timeout: float | None = None,
    ) -> tuple[int, Any]:
        """A JSON write: the status and body for a status in ``answers``; ``PretixError`` otherwise."""
        response = await self._send("POST", self.url(path), None, dict(body), timeout)
        _raise_for(response, ok=answers)
        return response.status_code, _json(response)


def _raise_for(response: httpx.Response, ok: tuple[int, ...]) -> None:
    status = response.status_code
    if status in ok:
        return
    where = f"{response.request.method} {response.url.path}: {status}"
    said = response.text[:120].replace("\n", " ")
    if status in (401, 403):
        raise PretixError("denied", f"{where} {said}", status)
    if status == 404:
        raise PretixError("not_found", f"{where} {said}", status)
    if status >= 500:
        raise PretixError("server_error", f"{where}", status)
    raise PretixError("refused", f"{where} {said}", status)


def _json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        where = f"{response.request.method} {response.url.path}"
        raise PretixError("garbage", f"{where}: the answer is not JSON", response.status_code) from None
