"""``Central``: what each route of the upstream contract does, between the wire and the store.

HTTP-free: the application (``central.app``) authenticates and parses, this decides and
stores. Owns the store, the manifest book and the challenges signed requests spend.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from gate_daemon.core.commands import CommandRefused, parse_envelope, verify
from gate_daemon.core.decision import Checkpoint, Decision, LedgerFacts, decide, identify
from gate_daemon.core.evidence import EvidenceScan
from gate_daemon.core.keys import PublicKey
from gate_daemon.core.manifest import Manifest
from gate_daemon.net.peer_auth import Challenges
from gate_daemon.net.replication import Refusal, verify_record
from gate_daemon.provision.keyfiles import read_secret
from gate_daemon.store.central.checkin_book import CentralStore, PushResult
from gate_daemon.store.central.command_queue import CommandQueue
from gate_daemon.store.central.enrollments import Enrollments

from . import search
from .config import CentralConfig
from .manifests import Inputs, ManifestBook, Served
from .pretix.bridge import PretixBridge, open_bridge
from .pretix.client import PretixError
from .wire import ApiError, Heartbeat, ValidateRequest, bad

log = logging.getLogger(__name__)

#: Records verified on the event loop; a larger push is verified in threads.
_INLINE = 8
#: Threads a large push is verified in.
_CPUS = min(8, os.cpu_count() or 1)


class Central:
    """The reference central server's state and behaviour."""

    def __init__(
        self,
        central_id: str,
        store: CentralStore,
        book: ManifestBook,
        *,
        clock: Callable[[], float] = time.time,
        challenges: Challenges | None = None,
        bridge: PretixBridge | None = None,
    ) -> None:
        self.id = central_id
        #: The pretix bridge, with ``[source] kind = "pretix"``.
        self.bridge = bridge
        self.store = store
        self.book = book
        self.challenges = challenges or Challenges()
        self._clock = clock
        self.commands = CommandQueue(store)
        self.enrollments = Enrollments(store)

    @classmethod
    async def open(cls, config: CentralConfig, *, clock: Callable[[], float] = time.time) -> Central:
        """Open the database and the manifests of ``config`` (building one if needed)."""
        key = read_secret(config.key)
        config.state_dir.mkdir(parents=True, exist_ok=True)
        store = await CentralStore.open(config.database)
        bridge = None
        try:
            enrolled = Enrollments(store).roster

            def book_of(inputs: Inputs | None) -> ManifestBook:
                return ManifestBook(
                    store,
                    config.manifests_dir,
                    key,
                    config.event,
                    config.tickets,
                    clock=clock,
                    inputs=inputs,
                    enrolled=enrolled,
                )

            if config.source is None:
                book = book_of(None)
                await book.open()
            else:
                bridge, book = await open_bridge(
                    config.source, config.event, config.state_dir, store, key, book_of
                )
        except BaseException:
            await store.aclose()
            raise
        return cls(config.id, store, book, clock=clock, bridge=bridge)

    async def aclose(self) -> None:
        """Close the database (and the bridge's client)."""
        if self.bridge is not None:
            await self.bridge.aclose()
        await self.store.aclose()

    def roster(self) -> Mapping[str, PublicKey] | None:
        """The gates that may call, with their keys (the latest manifest's); None without one."""
        return self.book.roster()

    def _manifest(self) -> Manifest:
        manifest = self.book.latest
        if manifest is None:
            raise ApiError("no_manifest", "the central has no manifest yet", 503)
        return manifest

    async def manifest(self, have: int | None) -> Served:
        """The manifest file for a gate holding ``have``."""
        self._manifest()
        return await self.book.serve(have)

    async def push(self, items: list[object]) -> dict[str, Any]:
        """Verify and store pushed records; the per-record results and the cursor."""
        roster = self.roster() or {}
        if len(items) <= _INLINE:
            checked = [verify_record(item, roster) for item in items]
        else:
            # Ed25519 verification releases the GIL: one share per CPU, side by side.
            shares = max(1, min(_CPUS, len(items) // _INLINE))
            size = -(-len(items) // shares)
            parts = await asyncio.gather(
                *(
                    asyncio.to_thread(
                        lambda part: [verify_record(item, roster) for item in part], items[i : i + size]
                    )
                    for i in range(0, len(items), size)
                )
            )
            checked = [result for part in parts for result in part]
        good = [c for c in checked if not isinstance(c, Refusal)]
        stored, cursor = await self.store.push(good, self.book.entries_allowed, self._clock())
        answers = iter(stored)
        results: list[PushResult] = []
        for item in checked:
            if isinstance(item, Refusal):
                results.append(PushResult(item.uuid, "rejected", item.error, item.detail))
            else:
                results.append(next(answers))
        if not good:
            cursor = await self.store.cursor()
        return {"results": [r.as_dict() for r in results], "cursor": cursor}

    async def pull(self, after: int, limit: int) -> dict[str, Any]:
        """Servable records after the pull cursor ``after``."""
        records, cursor, more = await self.store.pull(after, limit)
        return {"records": records, "cursor": cursor, "more": more}

    async def validate(self, gate: str, request: ValidateRequest) -> dict[str, Any]:
        """Decide a scan as a gate would, storing an allowed check-in; idempotent by uuid."""
        manifest = self._manifest()
        where = Checkpoint(request.zone, request.session)
        problems = where.problems(manifest)
        if problems:
            raise bad(
                ("zone: " if request.zone and request.zone not in manifest.zones else "session: ")
                + problems[0]
            )
        now = self._clock()
        found = identify(request.payload, manifest, now)
        judge: Decision | Callable[[LedgerFacts], Decision]
        if self.bridge is not None:
            try:
                judge = await self.bridge.validate(
                    gate, request.zone, request.uuid, request.payload, request.kind.value
                )
            except PretixError as exc:
                raise ApiError("unavailable", f"pretix did not decide: {exc.name}", 503) from None
            ticket_id = judge.ticket_id
        elif isinstance(found, Decision):
            judge, ticket_id = found, None
        else:
            ticket = found
            ticket_id = ticket.ticket_id

            def judge(facts: LedgerFacts) -> Decision:
                return decide(ticket, manifest, where, facts, now, request.kind)

        digest = hashlib.sha256(f"{request.kind.value}\n{request.payload}".encode("utf-8", "surrogatepass"))
        decision = await self.store.validate(
            request.uuid, gate, digest.hexdigest(), judge, ticket_id, request.kind.value, now
        )
        return {"uuid": request.uuid, "decision": decision}

    async def release(self, gate: str, uuid: str) -> dict[str, Any]:
        """Take back a validation's check-in that its gate did not admit after all."""
        released = await self.store.release(uuid, gate, self.book.entries_allowed, self._clock())
        if released:
            log.info("gate %s took back validation %s", gate, uuid)
        return {"uuid": uuid, "released": released}

    async def participants(self, q: str, limit: int) -> dict[str, Any]:
        """Tickets matching ``q``, each with its latest check-ins."""
        manifest = self._manifest()
        found = None
        if self.bridge is not None:
            try:
                named = await self.bridge.search(q, limit)
                found = await asyncio.to_thread(search.listed, manifest.entries(), named, "pretix")
            except PretixError as exc:
                log.info("pretix search failed (%s): searching the manifest", exc.name)
        if found is None:
            found = await asyncio.to_thread(search.search, manifest.entries(), q, limit)
        results = []
        for hit in found:
            shown = hit.as_dict()
            shown["checkins"] = await self.store.checkins_of(hit.entry.ticket_id)
            results.append(shown)
        return {"query": q, "results": results}

    async def evidence(self, gate: str, scans: list[EvidenceScan]) -> dict[str, Any]:
        """Keep a gate's evidence rows (its own scans: the caller is the gate); idempotent by uuid."""
        stored, duplicate = await self.store.store_evidence(gate, scans, self._clock())
        return {"stored": stored, "duplicate": duplicate}

    async def heartbeat(self, gate: str, beat: Heartbeat) -> dict[str, Any]:
        """Keep a gate's heartbeat; what the central knows that the gate may want."""
        now = self._clock()
        await self.store.heartbeat(gate, beat.sent_at, beat.counters, beat.status, now)
        latest = self.book.latest
        return {
            "cursor": await self.store.cursor(),
            "manifest_version": latest.version if latest is not None else None,
            "received_at": now,
            "commands": await self.commands.pending(gate, beat.acked, now),
        }

    async def command(self, envelope: object) -> dict[str, Any]:
        """Verify a supervisor's command against the latest manifest and keep it for its gate.

        ``CommandRefused`` naming why it was not kept. The gate verifies it again, on its
        own manifest and clock, when its heartbeat brings it.
        """
        manifest = self._manifest()
        now = self._clock()
        signed = parse_envelope(envelope)
        command = verify(
            signed, manifest.supervisors, event=manifest.event_id, gate=None, now_ms=int(now * 1000)
        )
        if command.gate not in (self.roster() or {}):
            raise CommandRefused("wrong_gate", f"gate {command.gate} is not in the manifest's roster")
        kept = await self.commands.add(signed, now)
        if kept == "reused":
            raise CommandRefused("replayed", "another command with this nonce was taken already")
        if kept == "queued":
            log.warning("command for gate %s queued: %s", command.gate, command.describe())
        return {"queued": kept == "queued", "command": command.body()}

    async def listed(self, gate: str) -> dict[str, Any]:
        """The latest commands for ``gate`` (acknowledged or not), and the event commands are for."""
        manifest = self._manifest()
        return {"event": manifest.event_id, "gate": gate, "commands": await self.commands.listed(gate)}
