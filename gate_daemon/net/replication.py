"""This gate's side of sharing redemptions: who may talk, what is believed, what is served.

``Replication`` is used by both directions: the LAN API's peer routes (a push received,
a pull served) and the peer client (a pull's answer). Nothing is stored before it is
verified: a record is kept only when its origin is in the active manifest's roster and
its signature is that origin's key's. Records are stored through the ledger, so the
scan path sees them (``already_used`` at the next scan) and conflicts are found in the
same transaction.

Wire forms (JSON):

- push ``POST /v1/redemptions``: ``{"records": [RECORD, ...]}``, answered
  ``{"applied": N, "duplicates": N, "refused": [{"uuid", "error", "detail"}]}``.
- pull ``POST /v1/redemptions/pull``: ``{"known": [{"origin", "epoch", "seq"}, ...],
  "limit": N}``: what the caller holds of each origin log (the end of its unbroken run);
  answered ``{"records": [RECORD, ...], "more": BOOL}`` with the records beyond, per
  log in sequence order, and logs the caller did not list from the start.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gate_daemon.core.keys import PublicKey, SecretKey
from gate_daemon.core.manifest import Manifest
from gate_daemon.core.records import MAX_TEXT, RecordError, Redemption, parse_record
from gate_daemon.errors import WireError
from gate_daemon.net.peer_auth import Admitted, Caller, Challenges, admit
from gate_daemon.store.learning import Learned
from gate_daemon.store.ledger import Ledger

#: Records in one push or one pull answer, at most.
MAX_BATCH = 500
#: Origin logs a pull may list.
MAX_KNOWN = 10_000
#: Records verified or signed on the event loop; larger batches go to a thread (PyNaCl
#: lets go of the GIL).
_INLINE = 8
#: Threads a large batch is signed in (Ed25519 releases the GIL).
_CPUS = min(4, os.cpu_count() or 1)
#: Own records' signatures remembered (Ed25519 is deterministic: this only saves work).
SIGNATURES_KEPT = 4096

Roster = Mapping[str, PublicKey]


@dataclass(frozen=True, slots=True)
class Refusal:
    """A record not taken, and why."""

    uuid: str | None
    error: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """The refusal as answered."""
        return {"uuid": self.uuid, "error": self.error, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Received:
    """What became of a batch of records."""

    learned: Learned
    refused: tuple[Refusal, ...]

    def as_dict(self) -> dict[str, Any]:
        """The answer to a push."""
        refused = [r.as_dict() for r in self.refused]
        refused += [{"uuid": u, "error": name, "detail": "collides with another record of its origin"}
                    for u, name in self.learned.refused]  # fmt: skip
        return {
            "applied": len(self.learned.applied),
            "duplicates": self.learned.duplicates,
            "refused": refused,
        }


@dataclass
class CallerSeen:
    """What this gate has seen of a peer that called it."""

    gate_id: str
    requests: int = 0
    last_at: float = 0.0
    clock_offset_ms: int = 0


class Replication:
    """Verify, store and serve redemption records for one gate."""

    def __init__(
        self,
        ledger: Ledger,
        key: SecretKey,
        manifests: Callable[[], Manifest | None],
        *,
        clock: Callable[[], float] = time.time,
        challenges: Challenges | None = None,
    ) -> None:
        self.ledger = ledger
        self.gate_id = ledger.gate_id
        self.key = key
        self._manifests = manifests
        self._clock = clock
        self.challenges = challenges or Challenges()
        self._roster: tuple[Manifest | None, Roster | None] = (None, None)
        #: Peers that called, by gate id.
        self.callers: dict[str, CallerSeen] = {}
        self.refusals: dict[str, int] = {}
        #: Signatures of this gate's own recent records, made once however many peers get them.
        self._signed: dict[str, str] = {}

    def roster(self) -> Roster | None:
        """The gates the active manifest allows, with their keys; None without a manifest."""
        manifest = self._manifests()
        cached, roster = self._roster
        if manifest is not cached:
            roster = None if manifest is None else {g.id: g.key for g in manifest.header.gates}
            self._roster = (manifest, roster)
        return roster

    def roster_peers(self) -> dict[str, str]:
        """The other gates of the active manifest's roster that give a LAN address: id to "HOST:PORT"."""
        manifest = self._manifests()
        if manifest is None:
            return {}
        return {g.id: g.addr for g in manifest.header.gates if g.addr is not None and g.id != self.gate_id}

    @property
    def problem(self) -> str | None:
        """Why this gate cannot take part in replication now, or None."""
        roster = self.roster()
        if roster is None:
            return "no manifest: the roster of peers is unknown"
        listed = roster.get(self.gate_id)
        if listed is None:
            return f"this gate ({self.gate_id}) is not in the manifest's roster: peers will refuse it"
        if listed != self.key.public:
            own = self.key.public.kid
            return f"the roster lists another key ({listed.kid}) for this gate than its own ({own})"
        return None

    def admit(self, headers: Mapping[str, str], client: str = "") -> Admitted:
        """The checks of a peer request that need no body (its challenge is spent); refusals counted."""
        try:
            return admit(self.challenges, self.roster(), headers, client)
        except WireError as exc:  # an AuthError, or busy, no_roster, bad_request
            self._refused(exc)
            raise

    def verify(self, admitted: Admitted, method: str, path: str, body: bytes) -> Caller:
        """Check an admitted request's signature; ``AuthError`` names what is wrong."""
        try:
            caller = admitted.verify(method, path, body)
        except WireError as exc:
            self._refused(exc)
            raise
        now = self._clock()
        seen = self.callers.setdefault(caller.gate_id, CallerSeen(caller.gate_id))
        seen.requests += 1
        seen.last_at = now
        seen.clock_offset_ms = caller.time_ms - int(now * 1000)
        return caller

    def _refused(self, exc: WireError) -> None:
        self.refusals[exc.name] = self.refusals.get(exc.name, 0) + 1

    async def receive(self, items: Sequence[object]) -> Received:
        """Verify records in their wire form and store those that are genuine."""
        roster = self.roster() or {}
        if len(items) <= _INLINE:
            good, refused = _verify(items, roster)
        else:
            good, refused = await asyncio.to_thread(_verify, items, roster)
        learned = await self.ledger.learn(good, now=self._clock()) if good else Learned()
        return Received(learned, tuple(refused))

    async def serve(
        self, known: Mapping[tuple[str, str], int], limit: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """The records beyond ``known`` in wire form (this gate's own signed now); whether more remain."""
        # Only what the callers can verify: the logs of gates in the roster.
        found, more = await self.ledger.records_after(known, limit, origins=self.roster() or {})
        return await self.wire_many(found), more

    async def wire_many(self, found: Sequence[tuple[Redemption, str | None]]) -> list[dict[str, Any]]:
        """Records as sent, this gate's own signed now (off the event loop when there are many)."""
        unsigned = [
            record for record, signature in found if signature is None and record.uuid not in self._signed
        ]
        if len(unsigned) > _INLINE:  # a catching-up reader: sign off the event loop, a share per CPU
            shares = max(1, min(_CPUS, len(unsigned) // _INLINE))
            size = -(-len(unsigned) // shares)
            parts = await asyncio.gather(
                *(
                    asyncio.to_thread(
                        lambda part: [record.sign(self.key) for record in part], unsigned[i : i + size]
                    )
                    for i in range(0, len(unsigned), size)
                )
            )
            signatures = [signature for part in parts for signature in part]
            for record, signature in zip(unsigned, signatures, strict=True):
                self._remember(record.uuid, signature)
        return [self.wire(record, signature) for record, signature in found]

    def wire(self, record: Redemption, signature: str | None = None) -> dict[str, Any]:
        """A record as sent: with its origin's signature, made here (once) for this gate's own."""
        if signature is None:
            signature = self._signed.get(record.uuid)
            if signature is None:
                signature = record.sign(self.key)
                self._remember(record.uuid, signature)
        return record.wire(signature)

    def _remember(self, uuid: str, signature: str) -> None:
        self._signed[uuid] = signature
        if len(self._signed) > SIGNATURES_KEPT:
            del self._signed[next(iter(self._signed))]


def _verify(items: Sequence[object], roster: Roster) -> tuple[list[tuple[Redemption, str]], list[Refusal]]:
    good: list[tuple[Redemption, str]] = []
    refused: list[Refusal] = []
    for item in items:
        checked = verify_record(item, roster)
        if isinstance(checked, Refusal):
            refused.append(checked)
        else:
            good.append(checked)
    return good, refused


def verify_record(item: object, roster: Roster) -> tuple[Redemption, str] | Refusal:
    """A record in wire form, parsed and checked against its origin's key; the refusal otherwise.

    Shared by the peer routes and the central server (``gate_daemon.central``).
    """
    uuid = item.get("uuid") if isinstance(item, dict) else None
    shown = uuid if isinstance(uuid, str) and len(uuid) <= MAX_TEXT else None
    try:
        record, signature = parse_record(item)
    except RecordError as exc:
        return Refusal(shown, "bad_record", str(exc))
    key = roster.get(record.origin)
    if key is None:
        return Refusal(shown, "unknown_origin", f"gate {record.origin!r} is not in the roster")
    if not record.signed_by(key, signature):
        return Refusal(shown, "bad_signature", f"not signed by gate {record.origin!r}'s key")
    return record, signature


def parse_known(body: object) -> tuple[dict[tuple[str, str], int], int]:
    """A pull request's ``known`` logs and ``limit``; ``ValueError`` naming the field otherwise."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    unknown = sorted(str(k) for k in body if k not in ("known", "limit"))
    if unknown:
        raise ValueError(f"{unknown[0]}: is not a field of a pull")
    limit = body.get("limit", MAX_BATCH)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_BATCH:
        raise ValueError(f"limit: must be a whole number from 1 to {MAX_BATCH}")
    items = body.get("known", [])
    if not isinstance(items, list) or len(items) > MAX_KNOWN:
        raise ValueError(f"known: must be a list of at most {MAX_KNOWN} logs")
    known: dict[tuple[str, str], int] = {}
    for number, item in enumerate(items):
        where = f"known[{number}]"
        if not isinstance(item, dict) or set(item) != {"origin", "epoch", "seq"}:
            raise ValueError(f"{where}: must be an object with origin, epoch and seq")
        origin, epoch, seq = item["origin"], item["epoch"], item["seq"]
        for name, text in (("origin", origin), ("epoch", epoch)):
            if not isinstance(text, str) or not 1 <= len(text) <= MAX_TEXT:
                raise ValueError(f"{where}.{name}: must be 1 to {MAX_TEXT} characters")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValueError(f"{where}.seq: must be a whole number from 0")
        known[(origin, epoch)] = seq
    return known, limit


def known_body(known: Mapping[tuple[str, str], int], limit: int = MAX_BATCH) -> dict[str, Any]:
    """A pull request's body from what the caller holds."""
    logs = [{"origin": origin, "epoch": epoch, "seq": seq} for (origin, epoch), seq in sorted(known.items())]
    return {"known": logs, "limit": limit}
