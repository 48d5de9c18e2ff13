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

Every request is signed by the one signed-request flow (``gate_daemon.net.signing``) with
a challenge from the peer: the first from ``GET /v1/challenge``, the next from each answer.
The links share one HTTP client (httpx, on aiohttp's client: ``net.lan_transport``), with
two connections to each peer at most, kept alive.
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

import httpx

from gate_daemon.core.records import Redemption
from gate_daemon.core.snapshot import PeerStatus
from gate_daemon.errors import WireError
from gate_daemon.net.lan_transport import AiohttpTransport
from gate_daemon.net.replication import MAX_BATCH, Replication, known_body
from gate_daemon.net.signing import ChallengeAuth, exchange, json_object, read_answer, refusal

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
#: Connections to one peer at most: a push and a pull may overlap.
LINK_CONNECTIONS = 2
#: Seconds an idle connection to a peer is kept open for the next request.
KEEPALIVE = 15.0
#: How often the links are matched to the active manifest's roster addresses (``roster_peers``).
ROSTER_CHECK = 1.0


class PeerError(WireError):
    """An exchange with a peer that failed (mostly: it did not answer as a gate should); ``name`` says how."""

    kept = 200


@dataclass
class PeerState:
    """What this gate knows of one peer link, for status and metrics."""

    address: str
    gate_id: str | None = None
    up: bool = False
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
        client: httpx.AsyncClient,
        *,
        timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.address = address
        self.replication = replication
        self.state = PeerState(address)
        self._client = client
        self._base = f"http://{address}"
        self._timeout = timeout
        self._clock = clock
        self._auth = ChallengeAuth(
            self._base,
            replication.key,
            replication.gate_id,
            error=PeerError,
            max_reply=MAX_REPLY,
            clock=clock,
        )
        self.queue: deque[Redemption] = deque()
        self.wake = asyncio.Event()
        #: The link's task, once the replicator runs it.
        self.task: asyncio.Task[None] | None = None

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

    async def signed_post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One signed POST to this peer beside replication (capacity's asks); ``PeerError`` on failure."""
        return await self._call(path, body)

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One signed POST within the link's timeout; the peer's answer, a JSON object."""
        data = json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        request = self._client.build_request("POST", self._base + path, content=data, headers=headers)
        try:
            # An answer that is not HTTP at all is a peer that cannot be reached (docs/LAN.md).
            async with exchange(
                self._client,
                request,
                auth=self._auth,
                timeout=self._timeout,
                error=PeerError,
                garbled="unreachable",
            ) as response:
                raw = await read_answer(response, MAX_REPLY, PeerError)
        finally:  # a challenge answer named the peer, even when what followed failed
            self.state.gate_id = self._auth.server_id or self.state.gate_id
        if response.status_code != 200:
            raise PeerError(*refusal(response.status_code, raw), response.status_code)
        return json_object(raw, PeerError)

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
            self.state.up, self.state.last_error = True, None
            backoff = 0.0

    def _failed(self, exc: PeerError) -> None:
        self.state.failures += 1
        if self.state.up or self.state.last_error is None:
            log.warning("peer %s: %s", self.address, exc)
        self.state.up = False
        self.state.last_error = str(exc)[:200]
        self._auth.forget()


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
        roster_peers: bool = False,
    ) -> None:
        self.replication = replication
        self._addresses = list(addresses)
        #: Whether the links follow the active manifest's roster addresses (docs/ENROLL.md).
        self.roster_peers = roster_peers
        #: The links made from the roster, by gate id.
        self._from_roster: dict[str, Peer] = {}
        self._pull_interval = pull_interval
        self._timeout = timeout
        self._clock = clock
        self.peers: list[Peer] = []
        self._client: httpx.AsyncClient | None = None
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

    def _link(self, group: asyncio.TaskGroup, address: str) -> Peer:
        assert self._client is not None
        peer = Peer(address, self.replication, self._client, timeout=self._timeout, clock=self._clock)
        self.peers.append(peer)
        peer.task = group.create_task(peer.run(self._pull_interval), name=f"peer {address}")
        return peer

    def follow_roster(self) -> None:
        """Link to the roster's gates not linked yet; unlink those the roster dropped or moved."""
        if self._group is None:
            return
        wanted = self.replication.roster_peers()
        for gate_id, peer in list(self._from_roster.items()):
            if wanted.get(gate_id) != peer.address:
                del self._from_roster[gate_id]
                self._unlink(peer)
                log.info(
                    "unlinked gate %s at %s: the manifest's roster no longer lists it there",
                    gate_id,
                    peer.address,
                )
        linked = {peer.state.gate_id for peer in self.peers} | set(self._from_roster)
        for gate_id, address in sorted(wanted.items()):
            if gate_id in linked or address in self._addresses or len(self._addresses) >= MAX_PEERS:
                continue
            self._addresses.append(address)
            peer = self._link(self._group, address)
            peer.state.gate_id = gate_id
            self._from_roster[gate_id] = peer
            log.info("linked to gate %s at %s from the manifest's roster", gate_id, address)

    def _unlink(self, peer: Peer) -> None:
        if peer.task is not None:
            peer.task.cancel()
        self.peers.remove(peer)
        self._addresses.remove(peer.address)

    async def run(self) -> None:
        """Run every peer link (and those added later) until cancelled."""
        transport = AiohttpTransport(per_host=LINK_CONNECTIONS, keepalive=KEEPALIVE)
        async with httpx.AsyncClient(transport=transport, timeout=self._timeout, trust_env=False) as client:
            self._client = client
            try:
                async with asyncio.TaskGroup() as group:
                    self._group = group
                    for address in self._addresses:
                        self._link(group, address)
                    while True:  # until cancelled: discovery and the roster may add peers
                        if self.roster_peers:
                            self.follow_roster()
                        await asyncio.sleep(ROSTER_CHECK)
            finally:
                self._group = None

    def snapshot(self) -> list[PeerStatus]:
        """Every link's state."""
        now = self._clock()
        return [peer.state.as_dict(now) for peer in self.peers]
