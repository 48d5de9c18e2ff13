"""Places moved between gates over the LAN, in strict capacity mode (docs/CAPACITY.md).

- ``POST /v1/capacity/grant`` (signed, like the peer routes): a peer that runs low asks
  this gate for places of one scope: ``{"uuid", "scope", "share", "want", "urgent"}``.
  This gate decides how many (``core.capacity.to_give``), writes the grant (its share
  drops) and only then answers ``{"grant": {...}, "sig": ..., "share": N}``: the grant
  signed with this gate's key, and the share it holds now. The same uuid asked again is
  answered with the same grant (``gate_daemon.store.capacity_grants``). Refusals by name:
  ``bad_request`` (the body), ``no_capacity`` (the manifest sets no strict capacity of
  that scope), ``grant_taken`` (the uuid is another gate's).
- ``CapacityDesk.rebalance``: one round of asking. Asks not yet answered are sent again
  first (to the same peer, with the same uuid); then, for each scope whose share is
  below the low-water mark (or where someone was refused for want of a place), the
  peers are asked in turn, those last known to hold the most first, until the share is
  back. At most one ask is open per peer and scope: a peer with one still open is not
  asked again (its ask is what is sent again), and a peer known to be down (its link
  failed) is neither asked nor sent its open ask until the link is up. An open ask is
  never dropped: the giver may have written its grant, whose places reach this gate only
  as the answer to that ask sent again. An answer counts only once its grant verifies
  under the giver's key from the signed manifest and names this gate, the scope and the
  ask; an answered ask is deleted.
- ``CapacityDesk.run``: a round at start, whenever the scan side raises ``wanted``, and
  every ``interval`` seconds (asks left unanswered by a partition reach their peer once
  it heals).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from aiohttp import web

from gate_daemon.core.capacity import GRANT_DOMAIN, MAX_PLACES, Grant, Limit, Limits, Tally, to_give
from gate_daemon.core.manifest import Manifest
from gate_daemon.errors import WireError
from gate_daemon.gate.capacity import Capacity
from gate_daemon.net.peer_auth import HEADER_CHALLENGE
from gate_daemon.net.peers import Peer, PeerError
from gate_daemon.net.replication import Replication
from gate_daemon.store.capacity_grants import Ask, GrantTaken, close_ask, give, open_ask, open_asks, take

log = logging.getLogger(__name__)

PATH = "/v1/capacity/grant"
#: Seconds between rounds when nothing asks for one sooner.
INTERVAL = 2.0
#: Seconds a peer's share, as its last answer told it, is believed when choosing whom to ask.
KNOWN_FOR = 30.0
#: Refusals after which an ask is given up: the peer made no grant for it, and never will.
FINAL = frozenset({"bad_request", "no_capacity", "grant_taken", "unknown_gate", "no_roster"})


class CapacityDesk:
    """Gives places to peers that ask, and asks peers for places, for one gate."""

    def __init__(
        self, replication: Replication, capacity: Capacity, manifests: Callable[[], Manifest | None]
    ) -> None:
        self.replication = replication
        self.capacity = capacity
        self.ledger = replication.ledger
        self.gate_id = replication.gate_id
        self._manifests = manifests
        #: Each peer's share of each scope, as its last answer told it, and when (monotonic).
        self.known: dict[tuple[str, str], tuple[int, float]] = {}
        self.granted = 0
        self.received = 0

    def _strict(self) -> tuple[Manifest, Limits] | None:
        manifest = self._manifests()
        limits = self.capacity.limits(manifest)
        if manifest is None or limits is None or not limits.strict:
            return None
        return manifest, limits

    def share(self, limit: Limit, limits: Limits, tallies: dict[str, Tally] | None = None) -> int:
        """This gate's share of ``limit`` now."""
        found = self.ledger.occupancy.tallies if tallies is None else tallies
        return limits.share(limit, self.gate_id, found.get(limit.scope, Tally()))

    # ------------------------------------------------------------ the giving side

    async def grant(self, caller: str, body: dict[str, Any]) -> dict[str, Any]:
        """Answer a peer's ask: the grant written (or the one written before for this uuid)."""
        uuid, scope, theirs, want, urgent = _ask_body(body)
        strict = self._strict()
        limit = strict[1].find(scope) if strict is not None else None
        if strict is None or limit is None:
            raise WireError("no_capacity", f"this gate keeps no strict capacity of scope {scope!r}", 409)
        manifest, limits = strict

        def amount(tallies: dict[str, Tally]) -> int:
            return to_give(self.share(limit, limits, tallies), theirs, want, urgent=urgent)

        try:
            grant, signature = await give(
                self.ledger, uuid, event=manifest.event_id, scope=scope, receiver=caller, amount=amount,
                sign=self._sign,
            )  # fmt: skip
        except GrantTaken as exc:
            raise WireError("grant_taken", str(exc), 409) from None
        if grant.places:
            self.granted += grant.places
            log.info("gave %d places of %s to %s", grant.places, scope, caller)
        return {"grant": grant.wire_body(), "sig": signature, "share": self.share(limit, limits)}

    def _sign(self, grant: Grant) -> str:
        return self.replication.key.sign(GRANT_DOMAIN, grant.signed_bytes()).hex()

    # ------------------------------------------------------------ the asking side

    async def rebalance(self, peers: Sequence[Peer]) -> int:
        """One round of asking (see the module's docstring); how many places came in."""
        urgent, self.capacity.urgent = self.capacity.urgent, False
        strict = self._strict()
        if strict is None:
            return 0
        manifest, limits = strict
        by_id = {peer.state.gate_id: peer for peer in peers if peer.state.gate_id}
        came = 0
        for ask in await open_asks(self.ledger):
            peer = by_id.get(ask.peer)
            if peer is not None and not _down(peer):
                came += await self._send(peer, replace(ask, urgent=ask.urgent or urgent), manifest)
        # One open ask per peer and scope: a peer that has not answered is not asked again.
        waiting = {(ask.peer, ask.scope) for ask in await open_asks(self.ledger)}
        for limit in limits.limits:
            low = limits.low_water(limit)
            for peer in self._order(peers, limit.scope):
                share = self.share(limit, limits)
                if share >= low:
                    break
                if _down(peer) or (peer.state.gate_id, limit.scope) in waiting:
                    continue
                if not urgent and self._known(peer, limit.scope) - share < 2:
                    continue  # it would give none (half the difference): not worth a grant's round trip
                want = max(1, limits.initial(limit, self.gate_id) - share)
                ask = Ask(str(uuidlib.uuid4()), limit.scope, peer.state.gate_id or "", want, urgent)
                if not ask.peer:
                    continue  # not yet named by a challenge: its grant could not be checked
                await open_ask(self.ledger, ask)
                came += await self._send(peer, ask, manifest)
        return came

    def _known(self, peer: Peer, scope: str) -> int:
        """The peer's share of ``scope`` as last told, if recently; ``MAX_PLACES`` when unknown."""
        share, at = self.known.get((peer.state.gate_id or "", scope), (MAX_PLACES, 0.0))
        return share if time.monotonic() - at <= KNOWN_FOR else MAX_PLACES

    def _order(self, peers: Sequence[Peer], scope: str) -> list[Peer]:
        """Peers to ask: reachable first, then those last known to hold the most (unknown first)."""
        return sorted(peers, key=lambda p: (not p.state.up, -self._known(p, scope)))

    async def _send(self, peer: Peer, ask: Ask, manifest: Manifest) -> int:
        """Send one ask; the places its grant brought (0 when none, or when it stays open)."""
        limits = self.capacity.limits(manifest)
        limit = limits.find(ask.scope) if limits is not None else None
        mine = self.share(limit, limits) if limit is not None and limits is not None else 0
        body = {
            "uuid": ask.uuid,
            "scope": ask.scope,
            "share": max(0, mine),
            "want": ask.want,
            "urgent": ask.urgent,
        }
        try:
            answer = await peer.signed_post(PATH, body)
        except PeerError as exc:
            if exc.name in FINAL:
                await close_ask(self.ledger, ask.uuid)
            log.info("capacity: ask %s to %s stays open: %s", ask.uuid, ask.peer, exc)
            return 0
        try:
            grant, signature = self._verified(answer, ask, manifest)
        except ValueError as exc:
            log.warning("capacity: %s answered ask %s with a grant we refuse: %s", ask.peer, ask.uuid, exc)
            return 0
        await take(self.ledger, grant, signature)
        share = answer.get("share")
        if type(share) is int:
            self.known[(ask.peer, ask.scope)] = (share, time.monotonic())
        self.received += grant.places
        return grant.places

    def _verified(self, answer: dict[str, Any], ask: Ask, manifest: Manifest) -> tuple[Grant, str]:
        """The grant of an answer, checked against the ask and the giver's key; ``ValueError`` otherwise."""
        grant = Grant.parse(answer.get("grant"))
        signature = answer.get("sig")
        if not isinstance(signature, str) or len(signature) != 128:
            raise ValueError("sig: expected 64 bytes in hex")
        expected = (ask.uuid, manifest.event_id, ask.scope, ask.peer, self.gate_id)
        if (grant.uuid, grant.event, grant.scope, grant.giver, grant.receiver) != expected:
            raise ValueError("the grant is not the answer to this ask")
        if grant.places > ask.want:
            raise ValueError(f"{grant.places} places granted, {ask.want} asked")
        key = (self.replication.roster() or {}).get(grant.giver)
        try:
            good = key is not None and key.verify(
                GRANT_DOMAIN, grant.signed_bytes(), bytes.fromhex(signature)
            )
        except ValueError:
            good = False
        if not good:
            raise ValueError("the grant's signature does not verify under the giver's key")
        return grant, signature

    async def run(self, peers: Callable[[], Sequence[Peer]], interval: float = INTERVAL) -> None:
        """Ask for places whenever the scan side wants them, and every ``interval``, until cancelled."""
        while True:
            self.capacity.wanted.clear()
            try:
                await self.rebalance(peers())
            except Exception:  # a ledger that cannot write now: the next round tries again
                log.exception("capacity: a round of asking failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self.capacity.wanted.wait()


def _down(peer: Peer) -> bool:
    """Whether ``peer``'s link is known to be down (it failed, and has not been up since)."""
    return not peer.state.up and peer.state.last_error is not None


def _ask_body(body: dict[str, Any]) -> tuple[str, str, int, int, bool]:
    """An ask's fields; ``bad_request`` naming the field otherwise."""
    fields = {"uuid": str, "scope": str, "share": int, "want": int, "urgent": bool}
    if set(body) != set(fields):
        raise WireError("bad_request", f"an ask has exactly the fields {', '.join(fields)}", 400)
    for name, kind in fields.items():
        if type(body[name]) is not kind:
            raise WireError("bad_request", f"{name}: expected {kind.__name__}", 400)
    if not 0 < len(body["uuid"]) <= 64 or not 0 < len(body["scope"]) <= 64:
        raise WireError("bad_request", "uuid and scope: 1 to 64 characters", 400)
    if not 0 <= body["share"] <= MAX_PLACES or not 1 <= body["want"] <= MAX_PLACES:
        raise WireError("bad_request", f"share 0..{MAX_PLACES}, want 1..{MAX_PLACES}", 400)
    return body["uuid"], body["scope"], body["share"], body["want"], body["urgent"]


DESK: web.AppKey[CapacityDesk] = web.AppKey("capacity")


async def _grant(request: web.Request) -> web.Response:
    desk = request.app[DESK]
    replication = desk.replication
    admitted = replication.admit(request.headers, request.remote or "?")  # before the body is read
    raw = await request.read()
    caller = replication.verify(admitted, request.method, request.path_qs, raw)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise WireError("not_json", "the body is not JSON", 400) from None
    if not isinstance(data, dict):
        raise WireError("bad_request", "the body must be a JSON object", 400)
    answer = await desk.grant(caller.gate_id, data)
    return web.json_response(answer, headers={HEADER_CHALLENGE: replication.challenges.issue()})


def add_routes(app: web.Application, desk: CapacityDesk) -> None:
    """Serve ``POST /v1/capacity/grant`` for ``desk``."""
    app[DESK] = desk
    app.router.add_post(PATH, _grant)
