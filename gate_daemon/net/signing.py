"""The one signed-request flow of every client that talks to a gate or to the central.

A gate signs its requests to its peers and to the central alike (``gate_daemon.net.peer_auth``
says how, and checks them at the receiving end). ``ChallengeAuth`` is that flow written
once, as an ``httpx.Auth``: its ``auth_flow`` generator takes a challenge it holds or
fetches one (``GET /v1/challenge``), signs the request, sends it, keeps the next challenge
from the answer's ``Gate-Challenge`` header, and when the server refuses the challenge as
stale or unknown (``peer_auth.STALE``) signs once more with a fresh one. The generator does
no I/O; httpx drives it, and ``async_auth_flow`` reads the answers it looks into (challenge
answers, refusals) within a bound.

Around it, what each client does with an exchange: ``exchange`` sends within one deadline
for the whole (the challenge fetch and a retry included) and names httpx's failures
(``timeout``, ``unreachable``, and the name a client gives an answer that is not HTTP);
``read_answer`` reads a body whole but never past a limit (``too_large``); ``refusal``
names a server's error answer; ``json_object`` parses an answer that must be an object.
Every failure is raised as the client's own ``WireError`` subclass, given as ``error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator
from dataclasses import dataclass
from typing import Any

import httpx

from gate_daemon.core.keys import SecretKey
from gate_daemon.errors import WireError
from gate_daemon.net.peer_auth import CHALLENGE_AGE, HEADER_CHALLENGE, MAX_CHALLENGE, STALE, sign_request

#: The longest error name taken from a server's answer.
MAX_NAME = 64
#: Statuses a proxy answers for a server it cannot reach.
_PROXY_DOWN = frozenset({502, 503, 504})

ErrorType = type[WireError]


@dataclass(frozen=True, slots=True)
class Sent:
    """When a request left: the system clock's reading and the monotonic clock's."""

    wall: float
    monotonic: float


#: Told of every answer the flow receives, with the moment its request was sent.
AnswerHook = Callable[[httpx.Response, Sent], None]


class ChallengeAuth(httpx.Auth):
    """Signs each request as ``gate_id`` with ``key``, on a challenge of the server at ``base_url``.

    One per server: the challenges it holds are that server's. Requests under ``base_url``
    are signed over their path and query below it, as the server sees them.
    """

    requires_request_body = True  # the signature covers the body

    def __init__(
        self,
        base_url: str,
        key: SecretKey,
        gate_id: str,
        *,
        error: ErrorType,
        max_reply: int,
        on_answer: AnswerHook | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        base = httpx.URL(base_url)
        self._prefix = base.raw_path.rstrip(b"/")
        self.challenge_url = base.copy_with(raw_path=self._prefix + b"/v1/challenge")
        self.key = key
        self.gate_id = gate_id
        self._error = error
        self._max_reply = max_reply
        self._on_answer = on_answer
        self._clock = clock
        self._monotonic = monotonic
        self._held: list[tuple[float, str]] = []  # (when it came, challenge); the newest last
        #: The gate id the last challenge answer gave (a peer names itself; the central does not).
        self.server_id: str | None = None

    def forget(self) -> None:
        """Drop the challenges held: the server may have restarted."""
        self._held.clear()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Sign ``request`` on a held or fetched challenge; sign it once more if that one was stale."""
        for attempt in (1, 2):
            nonce = self._take()
            if nonce is None:
                sent = self._sent()
                answer = yield httpx.Request(
                    "GET",
                    self.challenge_url,
                    headers={"Accept-Encoding": "identity"},
                    extensions=dict(request.extensions),  # the call's timeout
                )
                self._answered(answer, sent)
                nonce, self.server_id = parse_challenge(answer.status_code, answer.content, self._error)
            path = request.url.raw_path[len(self._prefix) :].decode("ascii")
            stamp = int(self._clock() * 1000)
            request.headers.update(
                sign_request(self.key, self.gate_id, request.method, path, request.content, nonce, stamp)
            )
            sent = self._sent()
            response = yield request
            self._answered(response, sent)
            if attempt == 2 or response.status_code < 400:
                return
            if refusal(response.status_code, response.content)[0] not in STALE:
                return

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """``auth_flow`` driven for an ``httpx.AsyncClient``; what it looks into is read within a bound.

        httpx's own driver would read those answers whole, however long: a challenge
        answer or a refusal longer than ``max_reply`` is ``too_large`` here instead.
        A successful answer is left unread, for the caller to stream.
        """
        await request.aread()
        flow = self.auth_flow(request)
        sending = next(flow)
        while True:
            response = yield sending
            if response.status_code >= 400 or response.request.url == self.challenge_url:
                await read_answer(response, self._max_reply, self._error)
            try:
                sending = flow.send(response)
            except StopIteration:
                return

    def _sent(self) -> Sent:
        """The clocks' readings as a request leaves."""
        return Sent(self._clock(), self._monotonic())

    def _take(self) -> str | None:
        now = self._monotonic()
        while self._held:
            got, challenge = self._held.pop()
            if now - got < CHALLENGE_AGE:
                return challenge
        return None  # none, or all too old: the server would refuse them as stale

    def _answered(self, response: httpx.Response, sent: Sent) -> None:
        challenge = response.headers.get(HEADER_CHALLENGE)
        if challenge and len(challenge) <= MAX_CHALLENGE:
            self._held.append((self._monotonic(), challenge))
        if self._on_answer is not None:
            self._on_answer(response, sent)


def parse_challenge(status: int, body: bytes, error: ErrorType) -> tuple[str, str | None]:
    """The challenge in a challenge answer, and the gate id it names (if any); ``error`` otherwise."""
    if status >= 400:
        raise error(*refusal(status, body), status)
    answer = json_object(body, error)
    challenge, gate = answer.get("challenge"), answer.get("gate")
    if not isinstance(challenge, str) or not 0 < len(challenge) <= MAX_CHALLENGE:
        raise error("bad_reply", "a challenge answer needs a challenge")
    return challenge, gate if isinstance(gate, str) and len(gate) <= MAX_NAME else None


@contextlib.asynccontextmanager
async def exchange(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    auth: ChallengeAuth | None,
    timeout: float,
    error: ErrorType,
    garbled: str,
) -> AsyncIterator[httpx.Response]:
    """Send ``request`` and hold its answer, unread, all within ``timeout``; httpx's errors named.

    ``garbled`` names an answer that is not HTTP at all: each client's docs give it its
    own name. Errors raised while the answer is held, the caller's own, pass through.
    """
    try:
        async with asyncio.timeout(max(timeout, 0.001)):
            response = await client.send(request, auth=auth, stream=True)
            try:
                yield response
            finally:
                await response.aclose()
    except (TimeoutError, httpx.TimeoutException):
        raise error("timeout", f"no whole answer within {timeout:.3g} s") from None
    except (httpx.RemoteProtocolError, httpx.DecodingError) as exc:
        raise error(garbled, f"not an HTTP answer: {exc}") from None
    except httpx.HTTPError as exc:
        # A connection reset is an httpx.ReadError with no message: say what it was.
        detail = str(exc) or "the connection broke"
        raise error("unreachable", f"{type(exc).__name__}: {detail}") from None


async def read_answer(response: httpx.Response, max_bytes: int, error: ErrorType) -> bytes:
    """The answer's body, read whole but never past ``max_bytes`` (``too_large``); read once."""
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise error("too_large", f"the answer is {declared} bytes, over {max_bytes}")
    if not response.is_stream_consumed:
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream), "an AsyncClient's answer"
        response.stream = _Bounded(stream, max_bytes, error)
    return await response.aread()


class _Bounded(httpx.AsyncByteStream):
    """An answer's raw bytes, cut off at ``limit`` with ``too_large``."""

    def __init__(self, stream: httpx.AsyncByteStream, limit: int, error: ErrorType) -> None:
        self._stream = stream
        self._limit = limit
        self._error = error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        async for chunk in self._stream:
            size += len(chunk)
            if size > self._limit:
                raise self._error("too_large", f"the answer is longer than {self._limit} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


def refusal(status: int, body: bytes) -> tuple[str, str]:
    """The name and detail of an error answer: the server's own, or one for an answer without."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        value = None
    if isinstance(value, dict) and isinstance(value.get("error"), str):
        return value["error"][:MAX_NAME], str(value.get("detail", ""))[:300] or f"HTTP {status}"
    name = "unreachable" if status in _PROXY_DOWN else "bad_reply"
    return name, f"HTTP {status} without a named error"


def json_object(body: bytes, error: ErrorType) -> dict[str, Any]:
    """An answer that must be a JSON object; ``bad_reply`` otherwise."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nesting past the parser's depth
        raise error("bad_reply", "the answer is not JSON") from None
    if not isinstance(value, dict):
        raise error("bad_reply", "the answer is not a JSON object")
    return value
