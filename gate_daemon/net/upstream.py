"""The client of the central server's upstream API (docs/upstream.openapi.yaml).

Written as a small library of its own: an injected ``httpx.AsyncClient``, a deadline per
call, plain dataclass answers and one exception, ``UpstreamError``, whose ``name`` says
what went wrong::

    UpstreamError
      name "timeout"       no whole answer within the call's deadline
      name "unreachable"   no connection, or it broke
      name "bad_reply"     an answer that is not what the contract says (not JSON, wrong shape)
      name "too_large"     an answer longer than the call accepts
      name "unwritable"    a download that cannot be written to the state directory
      name <the central's> a refusal the central named: "unknown_gate", "bad_signature", ...

httpx's errors are translated at one place (``net.signing.exchange``), and nothing else
escapes. Requests are signed with the gate's key exactly like peer requests, by the one
signed-request flow (``net.signing.ChallengeAuth``): the central issues the challenges,
and each answer carries the next one.

The central's successful answers tell the time. One to a signed request carries the
central's signed time (``net.central_time``): checked with the ``trusted`` manifest keys,
it goes to ``on_signed_time`` with the system clock's readings as the request left and as
the answer came, and the round trip by the monotonic clock. One whose signed time is
missing or does not verify is told to ``on_unsigned`` (never an error of the call), and
its ``Date`` header, like that of every other answer, goes to ``on_date`` with the two
readings, so the gate can still estimate its clock's offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from gate_daemon.core.decision import Decision
from gate_daemon.core.keys import PublicKey, SecretKey
from gate_daemon.errors import WireError
from gate_daemon.net.central_time import HEADER_CENTRAL_TIME, CentralTimeError, read_signed_time
from gate_daemon.net.peer_auth import HEADER_SIGNATURE
from gate_daemon.net.signing import (
    ChallengeAuth,
    Sent,
    exchange,
    json_object,
    parse_challenge,
    read_answer,
    refusal,
)

#: The longest JSON answer accepted (a pull page of 500 records is about 350 KiB).
MAX_REPLY = 4 << 20
#: Records per push and per pull page (the central's limit).
MAX_BATCH = 500
STATUSES = ("applied", "duplicate", "conflict", "rejected")
#: The types of a decision's fields in the central's JSON (``Decision.as_dict``).
_DECISION_TYPES: dict[str, type] = {
    "message": str,
    "ticket_id": str,
    "session": str,
    "zone": str,
    "last_entry_gate": str,
    "entries_allowed": int,
    "entries_used": int,
    "opens_in": int,
}


class UpstreamError(WireError):
    """A call to the central that did not succeed; ``name`` says how, ``status`` is the answer's, if any."""

    kept = 300


@dataclass(frozen=True, slots=True)
class ItemResult:
    """The central's answer for one pushed record."""

    uuid: str | None
    status: str
    reason: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class PushAnswer:
    """The central's answer to a batch: one result per record, in order."""

    results: tuple[ItemResult, ...]
    cursor: int


@dataclass(frozen=True, slots=True)
class PullPage:
    """A page of check-ins after a cursor, as sent (each still to be verified)."""

    records: tuple[object, ...]
    cursor: int
    more: bool


@dataclass(frozen=True, slots=True)
class ManifestFetch:
    """A manifest file downloaded to ``path``."""

    path: Path
    version: int
    kind: str  # "full" or "delta"
    size: int


Progress = Callable[[int, int | None], None]
#: The central's checked signed time, the system clock as the request left and as the answer came,
#: and the round trip by the monotonic clock.
SignedTimeHook = Callable[[float, float, float, float], None]


class UpstreamClient:
    """Calls to the central, signed as ``gate_id`` with ``key``."""

    def __init__(
        self,
        base_url: str,
        gate_id: str,
        key: SecretKey,
        *,
        client: httpx.AsyncClient,
        timeout: float,
        on_date: Callable[[float, float, float], None] | None = None,
        trusted: Sequence[PublicKey] = (),
        on_signed_time: SignedTimeHook | None = None,
        on_unsigned: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.gate_id = gate_id
        self.key = key
        self.client = client
        self.timeout = timeout
        self.on_date = on_date
        #: The keys the central's signed time must verify with: the gate's manifest keys.
        self.trusted = tuple(trusted)
        self.on_signed_time = on_signed_time
        self.on_unsigned = on_unsigned
        self._clock = clock
        self._monotonic = monotonic
        self._auth = ChallengeAuth(
            self.base_url,
            key,
            gate_id,
            error=UpstreamError,
            max_reply=MAX_REPLY,
            on_answer=self._saw_time,
            clock=clock,
            monotonic=monotonic,
        )

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()

    # ------------------------------------------------------------------ calls

    async def push(self, records: list[dict[str, Any]]) -> PushAnswer:
        """Send a batch of signed records; the central's answer per record."""
        reply = await self._json("POST", "/v1/checkins", {"records": records})
        results = reply.get("results")
        if not isinstance(results, list) or len(results) != len(records):
            raise UpstreamError("bad_reply", f"a push answer needs {len(records)} results")
        out = []
        for index, item in enumerate(results):
            if not isinstance(item, dict) or item.get("status") not in STATUSES:
                raise UpstreamError("bad_reply", f"results[{index}] has no status of {', '.join(STATUSES)}")
            uuid, reason, detail = item.get("uuid"), item.get("reason"), item.get("detail")
            if uuid is not None and uuid != records[index].get("uuid"):
                # Answers out of order would move positions past records never answered.
                raise UpstreamError("bad_reply", f"results[{index}] answers another record than was sent")
            out.append(
                ItemResult(
                    uuid if isinstance(uuid, str) else None,
                    str(item["status"]),
                    reason if isinstance(reason, str) else None,
                    detail if isinstance(detail, str) else None,
                )
            )
        return PushAnswer(tuple(out), _cursor(reply))

    async def pull(self, after: int, limit: int = MAX_BATCH) -> PullPage:
        """Check-ins the central holds after its cursor ``after``."""
        reply = await self._json("GET", "/v1/checkins?" + urlencode({"after": after, "limit": limit}))
        records, more = reply.get("records"), reply.get("more")
        if not isinstance(records, list) or len(records) > limit or not isinstance(more, bool):
            raise UpstreamError("bad_reply", f"a pull answer needs records (at most {limit}) and more")
        cursor = _cursor(reply)
        if cursor < after or (records and cursor == after):
            raise UpstreamError("bad_reply", f"the pull cursor went from {after} to {cursor}")
        return PullPage(tuple(records), cursor, more)

    async def validate(
        self,
        uuid: str,
        payload: str,
        *,
        kind: str,
        zone: str | None,
        session: str | None,
        timeout: float,
    ) -> Decision:
        """The central's decision on a scan (marked there in the same transaction when allowed)."""
        body = {"uuid": uuid, "payload": payload, "kind": kind, "zone": zone, "session": session}
        reply = await self._json("POST", "/v1/validate", body, timeout=timeout)
        decision = reply.get("decision")
        if reply.get("uuid") != uuid or not isinstance(decision, dict):
            raise UpstreamError("bad_reply", "a validate answer needs this scan's uuid and a decision")
        for name, expected in _DECISION_TYPES.items():
            # from_dict trusts its input (a gate's own): the central's must be checked, or a
            # list where a ticket id belongs reaches the ledger and costs the scan.
            value = decision.get(name)
            if value is not None and (not isinstance(value, expected) or isinstance(value, bool)):
                raise UpstreamError("bad_reply", f"the decision's {name} is not a {expected.__name__}")
        try:
            return Decision.from_dict(decision)
        except (KeyError, TypeError, ValueError) as exc:
            raise UpstreamError("bad_reply", f"the decision is not one: {exc}") from None

    async def release(self, uuid: str, *, timeout: float) -> bool:
        """Take back the check-in a validation made (this gate did not admit); whether one was."""
        reply = await self._json("POST", "/v1/validate/release", {"uuid": uuid}, timeout=timeout)
        released = reply.get("released")
        if reply.get("uuid") != uuid or not isinstance(released, bool):
            raise UpstreamError("bad_reply", "a release answer needs this scan's uuid and released")
        return released

    async def search(self, query: str, limit: int = 20) -> list[dict[str, Any]]:
        """Tickets matching ``query`` (ticket id, order id, seat; typos forgiven)."""
        reply = await self._json("GET", "/v1/participants?" + urlencode({"q": query, "limit": limit}))
        results = reply.get("results")
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            raise UpstreamError("bad_reply", "a search answer needs a list of results")
        return results

    async def heartbeat(
        self, counters: dict[str, int], status: dict[str, Any], *, acked: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Tell the central this gate is alive, with its counters (and the commands it took: ``acked``)."""
        body: dict[str, Any] = {"sent_at": self._clock(), "counters": counters, "status": status}
        if acked:
            body["acked"] = list(acked)
        return await self._json("POST", "/v1/heartbeat", body)

    async def manifest(
        self,
        have: int | None,
        dest: Path,
        *,
        max_bytes: int,
        timeout: float,
        progress: Progress | None = None,
    ) -> ManifestFetch | None:
        """Download the latest manifest (a delta from ``have`` when the central can) into ``dest``.

        None when ``have`` is the latest. The file is written as it arrives, never held
        whole; it is still to be verified, and ``dest`` is removed if the download fails.
        """
        path = "/v1/manifest" + (f"?{urlencode({'have': have})}" if have is not None else "")
        try:
            async with self._exchange("GET", path, None, timeout) as response:
                status, headers = response.status_code, response.headers
                if status >= 400:
                    raise UpstreamError(*refusal(status, await _read(response)), status)
                size = await _save(response, dest, max_bytes, progress) if status == 200 else 0
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        if status == 304:
            dest.unlink(missing_ok=True)
            return None
        if status != 200:  # only a 200's body was written to dest
            dest.unlink(missing_ok=True)
            raise UpstreamError("bad_reply", f"HTTP {status} is not a manifest answer", status)
        version, kind = headers.get("manifest-version", ""), headers.get("manifest-kind", "")
        if not version.isdigit() or kind not in ("full", "delta"):
            dest.unlink(missing_ok=True)
            raise UpstreamError("bad_reply", "a manifest answer needs Manifest-Version and Manifest-Kind")
        return ManifestFetch(dest, int(version), kind, size)

    async def ping(self, timeout: float) -> None:
        """Fetch a challenge: the cheapest sign of a central that answers."""
        sent = Sent(self._clock(), self._monotonic())
        async with self._exchange("GET", "/v1/challenge", None, timeout, signed=False) as response:
            self._saw_time(response, sent)
            body = await _read(response)
        parse_challenge(response.status_code, body, UpstreamError)

    # ------------------------------------------------------------------ plumbing

    async def _json(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """One signed call answered with a JSON object; the central's refusal, named, otherwise."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        async with self._exchange(method, path, data, timeout or self.timeout) as response:
            raw = await _read(response)
        if response.status_code >= 400:
            raise UpstreamError(*refusal(response.status_code, raw), response.status_code)
        return json_object(raw, UpstreamError)

    def _exchange(
        self, method: str, path: str, body: bytes | None, timeout: float, *, signed: bool = True
    ) -> AbstractAsyncContextManager[httpx.Response]:
        """One call within ``timeout`` in all (a signed one's challenge fetch and retry included)."""
        # Uncompressed: the limits count, and manifests are written, the raw bytes (httpx asks
        # for gzip by default, which a proxy before the central may honour). httpx's own limits
        # are this call's deadline: the client's default (timeout_ms) must not cut short a call
        # allowed longer (a validate, a manifest download).
        headers = {"Accept-Encoding": "identity"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = self.client.build_request(
            method,
            self.base_url + path,
            content=body,
            headers=headers,
            timeout=httpx.Timeout(max(timeout, 0.001)),
        )
        auth = self._auth if signed else None
        # An answer that is not HTTP at all is the central's "bad_reply" (docs/UPSTREAM.md).
        return exchange(
            self.client, request, auth=auth, timeout=timeout, error=UpstreamError, garbled="bad_reply"
        )

    def _saw_time(self, response: httpx.Response, sent: Sent) -> None:
        """Hand the time an answer tells on: only the central's own answers, not a proxy's error page."""
        if response.status_code >= 400:
            return
        received, elapsed = self._clock(), self._monotonic() - sent.monotonic
        binding = response.request.headers.get(HEADER_SIGNATURE)
        if binding is not None and self.trusted and self.on_signed_time is not None:
            try:
                central = read_signed_time(response.headers.get(HEADER_CENTRAL_TIME), binding, self.trusted)
            except CentralTimeError as exc:
                if self.on_unsigned is not None:
                    self.on_unsigned(str(exc))
            else:
                self.on_signed_time(central, sent.wall, received, max(0.0, elapsed))
                return
        value = response.headers.get("date")
        if value is None or self.on_date is None:
            return
        with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
            self.on_date(email.utils.parsedate_to_datetime(value).timestamp(), sent.wall, received)


async def _read(response: httpx.Response) -> bytes:
    return await read_answer(response, MAX_REPLY, UpstreamError)


async def _save(response: httpx.Response, dest: Path, max_bytes: int, progress: Progress | None) -> int:
    """Write a manifest answer to ``dest`` as it arrives, never past ``max_bytes``; its length."""
    declared = response.headers.get("content-length")
    total = int(declared) if declared and declared.isdigit() else None
    if total is not None and total > max_bytes:
        raise UpstreamError("too_large", f"the answer is {declared} bytes, over {max_bytes}")
    size = 0
    try:
        with dest.open("wb") as out:
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > max_bytes:
                    raise UpstreamError("too_large", f"the manifest is longer than {max_bytes} bytes")
                await asyncio.to_thread(out.write, chunk)
                if progress is not None:
                    progress(size, total)
    except OSError as exc:  # the state directory's disk
        raise UpstreamError("unwritable", f"cannot write {dest}: {exc.strerror}") from None
    return size


def _cursor(reply: dict[str, Any]) -> int:
    cursor = reply.get("cursor")
    if not isinstance(cursor, int) or isinstance(cursor, bool) or cursor < 0:
        raise UpstreamError("bad_reply", "the answer needs a cursor (a whole number >= 0)")
    return cursor
