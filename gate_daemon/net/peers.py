"""Talking to the other gates: push on commit, pull to catch up.

One task per peer, so a peer that hangs or answers garbage holds up only its own link,
and never the scan path: a commit only appends the record to each peer's queue.

- **Push**: each record this gate commits (entries, exits, voids) is queued for every
  peer and sent at once, in batches of whatever gathered while the previous push was
  under way. A push that fails is dropped: pulls are what guarantee delivery.
- **Pull**: every ``pull_interval``, and at start, each peer is asked for the records
  beyond what this gate holds of every origin log (``Ledger.known``), until it has no
  more. Records a peer relays keep their origin and their origin's signature.
- A failing peer is retried with exponential backoff up to ``MAX_BACKOFF``; so is a link
  whose records this gate could not store (``ledger_unavailable``) or whose exchange met
  an unexpected fault (``internal_error``): whatever befalls a link, the gate goes on.

Every request is signed (``gate_daemon.net.peer_auth``) with a challenge from the peer:
the first from ``GET /v1/challenge``, the next from each answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from gate_daemon.core.records import Redemption
from gate_daemon.core.snapshot import PeerStatus
from gate_daemon.net.peer_auth import HEADER_CHALLENGE, sign_request
from gate_daemon.net.replication import MAX_BATCH, Replication, known_body

log = logging.getLogger(__name__)

#: Records in one push.
PUSH_BATCH = 100
#: Records queued for one peer; beyond this the oldest are dropped (a pull will carry them).
MAX_QUEUE = 10_000
#: The largest answer read from a peer.
MAX_REPLY = 4 << 20
#: The longest wait before retrying a failing peer.
MAX_BACKOFF = 5.0
#: Peers linked at most, configured and discovered together.
MAX_PEERS = 256
#: Records asked for in one pull: small pages keep each answer's parsing and storing short.
PULL_PAGE = 200
#: Pull pages in one round at most.
MAX_PAGES = 1000
#: A challenge held longer than this is not used (the peer keeps them for ``peer_auth.TTL``).
CHALLENGE_AGE = 20.0


class PeerError(Exception):
    """An exchange with a peer that failed (mostly: it did not answer as a gate should); ``name`` says how."""

    def __init__(self, name: str, detail: str) -> None:
        detail = detail[:200]  # a peer's garbage can end up in here (a bad status line): logged, shown
        super().__init__(f"{name}: {detail}")
        self.name = name
        self.detail = detail


@dataclass
class PeerState:
    """What this gate knows of one peer link, for status and metrics."""

    address: str
    gate_id: str | None = None
    up: bool = False
    last_ok: float | None = None
    #: When a pull last came back with nothing more: the peer's records were all here then.
    caught_up_at: float | None = None
    last_error: str | None = None
    pushed: int = 0
    pulled: int = 0
    refused: int = 0
    failures: int = 0
    dropped: int = 0

    def as_dict(self, now: float) -> PeerStatus:
        """The link's state as status shows it."""
        return {
            "address": self.address,
            "gate": self.gate_id,
            "up": self.up,
            "lag_seconds": None if self.caught_up_at is None else round(now - self.caught_up_at, 3),
            "last_error": self.last_error,
            "pushed": self.pushed,
            "pulled": self.pulled,
            "refused": self.refused,
            "failures": self.failures,
            "dropped": self.dropped,
        }


class Peer:
    """One peer gate at ``address`` ("host:port")."""

    def __init__(
        self,
        address: str,
        replication: Replication,
        session: aiohttp.ClientSession,
        *,
        timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.address = address
        self.replication = replication
        self.state = PeerState(address)
        self._session = session
        self._base = f"http://{address}"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock
        self._challenge: str | None = None
        self._challenge_at = 0.0
        self.queue: deque[Redemption] = deque()
        self.wake = asyncio.Event()

    def offer(self, record: Redemption) -> None:
        """Queue one of this gate's records for this peer."""
        if len(self.queue) >= MAX_QUEUE:
            self.queue.popleft()
            self.state.dropped += 1
        self.queue.append(record)
        self.wake.set()

    async def push(self) -> None:
        """Send what is queued, in batches; what fails is dropped (pulls carry it)."""
        while self.queue:
            batch = [self.queue.popleft() for _ in range(min(PUSH_BATCH, len(self.queue)))]
            try:
                reply = await self._call(
                    "/v1/redemptions", {"records": [self.replication.wire(r) for r in batch]}
                )
            except PeerError:
                self.state.dropped += len(batch) + len(self.queue)
                self.queue.clear()
                raise
            refused = reply.get("refused")
            if not isinstance(reply.get("applied"), int) or not isinstance(refused, list):
                raise PeerError("bad_reply", "a push answer needs applied and refused")
            self.state.pushed += len(batch)
            self.state.refused += len(refused)
            for item in refused[:5]:
                log.warning("peer %s refused one of our records: %s", self.address, str(item)[:200])

    async def pull(self) -> int:
        """Fetch and store the peer's records beyond ours until it has no more; how many were new."""
        new = 0
        asked: dict[tuple[str, str], int] = {}  # this round: the highest seq seen of each log
        for _page in range(MAX_PAGES):
            known = self.replication.ledger.known()
            # Past what this round has seen already, even where a gap keeps a log's run
            # behind (a record nobody holds any more, one refused): the round moves on.
            cursor = {log_id: max(seq, asked.get(log_id, 0)) for log_id, seq in known.items()}
            cursor.update({log_id: seq for log_id, seq in asked.items() if log_id not in cursor})
            reply = await self._call("/v1/redemptions/pull", known_body(cursor, PULL_PAGE))
            records, more = reply.get("records"), reply.get("more")
            if not isinstance(records, list) or not isinstance(more, bool) or len(records) > MAX_BATCH:
                raise PeerError("bad_reply", f"a pull answer needs records (at most {MAX_BATCH}) and more")
            received = await self.replication.receive(records)
            applied = len(received.learned.applied)
            new += applied
            self.state.pulled += applied
            self.state.refused += len(received.refused) + len(received.learned.refused)
            if received.refused:
                first = received.refused[0]
                log.warning(
                    "peer %s sent %d records we refused (first: %s %s)",
                    self.address, len(received.refused), first.error, first.detail,
                )  # fmt: skip
            if not more:
                self.state.caught_up_at = self._clock()
                return new
            if not _advance(asked, records, cursor):
                # Asked again, the same cursors would fetch the same page: a page that moves
                # no log on must end the round, not spin it.
                raise PeerError("bad_reply", "the peer says it has more but sent nothing that moves us on")
        return new  # the rest at the next round: no peer keeps a link busy for ever

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One signed POST; a stale or unknown challenge is fetched again once."""
        for attempt in (1, 2):
            if self._challenge is not None and time.monotonic() - self._challenge_at > CHALLENGE_AGE:
                self._challenge = None  # it would be refused as stale: a quiet link fetches a fresh one
            if self._challenge is None:
                self._challenge = await self._fetch_challenge()
            nonce, self._challenge = self._challenge, None
            data = json.dumps(body, separators=(",", ":")).encode()
            headers = sign_request(
                self.replication.key,
                self.replication.gate_id,
                "POST",
                path,
                data,
                nonce,
                int(self._clock() * 1000),
            )
            headers["Content-Type"] = "application/json"
            status, reply, challenge = await self._exchange("POST", path, data, headers)
            self._challenge, self._challenge_at = challenge, time.monotonic()
            if status == 200:
                return reply
            name = str(reply.get("error", "bad_reply"))
            if attempt == 1 and name in ("bad_nonce", "stale_nonce", "replayed"):
                continue  # the peer restarted or our challenge aged: one fresh try
            raise PeerError(name, str(reply.get("detail", f"HTTP {status}"))[:200])
        raise AssertionError("unreachable")

    async def _fetch_challenge(self) -> str:
        status, reply, _ = await self._exchange("GET", "/v1/challenge", None, {})
        challenge, gate = reply.get("challenge"), reply.get("gate")
        if status != 200 or not isinstance(challenge, str) or len(challenge) > 256:
            raise PeerError(str(reply.get("error", "bad_reply")), f"no challenge (HTTP {status})")
        if isinstance(gate, str) and len(gate) <= 64:
            self.state.gate_id = gate
        return challenge

    async def _exchange(
        self, method: str, path: str, data: bytes | None, headers: dict[str, str]
    ) -> tuple[int, dict[str, Any], str | None]:
        """One HTTP exchange: status, the JSON object answered, and the next challenge."""
        try:
            async with self._session.request(
                method, self._base + path, data=data, headers=headers, timeout=self._timeout
            ) as response:
                status, challenge = response.status, response.headers.get(HEADER_CHALLENGE)
                raw = bytearray()
                while chunk := await response.content.read(1 << 16):
                    raw += chunk
                    if len(raw) > MAX_REPLY:
                        raise PeerError("too_large", f"the answer is over {MAX_REPLY} bytes")
        except TimeoutError:
            raise PeerError("timeout", f"no answer within {self._timeout.total:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise PeerError("unreachable", str(exc) or type(exc).__name__) from None
        try:
            reply = json.loads(raw)
        except (ValueError, RecursionError):
            raise PeerError("bad_reply", f"the answer is not JSON (HTTP {status})") from None
        if not isinstance(reply, dict):
            raise PeerError("bad_reply", "the answer is not a JSON object")
        if challenge is not None and len(challenge) > 256:
            challenge = None
        return status, reply, challenge

    async def run(self, pull_interval: float) -> None:
        """Push and pull with this peer until cancelled."""
        backoff = 0.0
        next_pull = 0.0
        while True:
            if backoff:
                await asyncio.sleep(backoff)  # commits meanwhile only queue up
            elif not self.queue:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, next_pull - time.monotonic())):
                        await self.wake.wait()
            self.wake.clear()
            try:
                if self.queue:
                    await self.push()
                if time.monotonic() >= next_pull:
                    await self.pull()
                    next_pull = time.monotonic() + pull_interval * random.uniform(0.8, 1.2)
            except Exception as exc:
                if not isinstance(exc, PeerError):
                    # A ledger that cannot store now (locked, full), or a fault met on a
                    # peer's answer, costs this link a retry, never the gate: the link's task
                    # shares a task group with every other task of the gate.
                    name = "ledger_unavailable" if isinstance(exc, sqlite3.Error) else "internal_error"
                    exc = PeerError(name, f"{type(exc).__name__}: {exc}")
                self._failed(exc)
                backoff = min(MAX_BACKOFF, max(0.1, backoff * 2))
                next_pull = 0.0  # after the backoff, catch up first
                continue
            if not self.state.up:
                log.info("peer %s (%s) is reachable", self.address, self.state.gate_id or "?")
            self.state.up, self.state.last_ok, self.state.last_error = True, self._clock(), None
            backoff = 0.0

    def _failed(self, exc: PeerError) -> None:
        self.state.failures += 1
        if self.state.up or self.state.last_error is None:
            log.warning("peer %s: %s", self.address, exc)
        self.state.up = False
        self.state.last_error = str(exc)[:200]
        self._challenge = None


def _advance(
    asked: dict[tuple[str, str], int], records: list[Any], cursor: dict[tuple[str, str], int]
) -> bool:
    """Note the highest seq of each log in a pull's page; whether any log moved past ``cursor``."""
    moved = False
    for item in records:
        if not isinstance(item, dict):
            continue
        origin, epoch, seq = item.get("origin"), item.get("epoch"), item.get("seq")
        if isinstance(origin, str) and isinstance(epoch, str) and type(seq) is int:
            log_id = (origin, epoch)
            if seq > cursor.get(log_id, 0):
                moved = True
                asked[log_id] = max(asked.get(log_id, 0), seq)
    return moved


class Replicator:
    """The links to every peer: queues this gate's records for them and runs their tasks."""

    def __init__(
        self,
        replication: Replication,
        addresses: list[str],
        *,
        pull_interval: float,
        timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.replication = replication
        self._addresses = list(addresses)
        self._pull_interval = pull_interval
        self._timeout = timeout
        self._clock = clock
        self.peers: list[Peer] = []
        self._session: aiohttp.ClientSession | None = None
        self._group: asyncio.TaskGroup | None = None

    def committed(self, record: Redemption) -> None:
        """A ledger listener: queue this gate's new record for every peer."""
        for peer in self.peers:
            peer.offer(record)

    def add(self, gate_id: str, address: str) -> bool:
        """Link to a discovered gate; False when it is linked already (or too many are)."""
        known = {peer.state.gate_id for peer in self.peers}
        if address in self._addresses or gate_id in known or len(self._addresses) >= MAX_PEERS:
            return False
        self._addresses.append(address)
        if self._group is not None:
            self._link(self._group, address)
        return True

    def _link(self, group: asyncio.TaskGroup, address: str) -> None:
        assert self._session is not None
        peer = Peer(address, self.replication, self._session, timeout=self._timeout, clock=self._clock)
        self.peers.append(peer)
        group.create_task(peer.run(self._pull_interval), name=f"peer {address}")

    async def run(self) -> None:
        """Run every peer link (and those added later) until cancelled."""
        connector = aiohttp.TCPConnector(limit_per_host=2, ttl_dns_cache=60)
        async with aiohttp.ClientSession(connector=connector, raise_for_status=False) as session:
            self._session = session
            try:
                async with asyncio.TaskGroup() as group:
                    self._group = group
                    for address in self._addresses:
                        self._link(group, address)
                    await asyncio.Event().wait()  # until cancelled: discovery may add peers
            finally:
                self._group = None

    def snapshot(self) -> list[PeerStatus]:
        """Every link's state."""
        now = self._clock()
        return [peer.state.as_dict(now) for peer in self.peers]
