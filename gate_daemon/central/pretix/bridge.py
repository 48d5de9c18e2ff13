"""The central as a pretix device: a sync loop that keeps the gates' manifests and pretix converged.

Every ``interval_s`` (``[source]``), one run:

1. the device token (initialized once, ``device.py``);
2. the event, its subevents and check-in lists; the orders (whole the first time, then
   changes since pretix's last ``X-Page-Generated``), revoked and blocked secrets; all
   stored with the secrets' cursors in one transaction (``download.py``);
3. a new manifest version when the tickets say something new (``mapping.py`` ->
   ``ManifestBook``);
4. check-ins other pretix devices made on a served list become records of gate ``pretix``
   (``learned.py``); only then the orders cursor moves past them (a run that stops
   earlier reads them again);
5. the gates' records not sent yet go to pretix (``upload.py``), for one ``interval_s`` at
   most: the rest of a backlog goes in the next rounds, each after a sync, so a
   cancellation in pretix never waits for a backlog to be sent.

When pretix fails (unreachable, slow, 5xx, garbage, a list it will not serve), the run
stops where it is, the error is kept by name for ``status()`` and the log, the gates keep
the last manifest, and the next run (after a backoff up to ``MAX_BACKOFF``) resumes by the
cursors. Secrets and tokens are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gate_daemon.central.config import PretixSource
from gate_daemon.central.manifests import ManifestBook
from gate_daemon.core.decision import Decision
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.pretix_sig import ticket_id_for
from gate_daemon.core.reasons import Reason
from gate_daemon.core.ticket_record import TicketEntry
from gate_daemon.errors import GateError, WireError
from gate_daemon.provision.event import EventSpec, load_event
from gate_daemon.store.central.checkin_book import CentralStore
from gate_daemon.store.central.pretix import PositionRow, PretixState
from gate_daemon.store.conflicts import EntriesAllowed

from . import download, learned, online
from .client import PretixClient, PretixError
from .device import Device, device
from .failed import report_refusals
from .mapping import CheckinList, build_inputs, served_lists
from .upload import Uploader

log = logging.getLogger(__name__)

#: The longest wait between runs while pretix keeps failing.
MAX_BACKOFF = 60.0


#: What a manifest is built from: the event, its tickets, the pretix header keys.
Made = tuple[EventSpec, list[TicketEntry], dict[str, Any]]


class NoDataYet(GateError):
    """The bridge has not read its event from pretix yet."""


class PretixInputs:
    """The manifest's inputs as the last sync left them (``ManifestBook`` ``Inputs``)."""

    def __init__(self) -> None:
        self.generation = 0
        self._made: Made | None = None

    def set(self, made: Made) -> None:
        """New inputs: the next refresh builds from them."""
        self._made = made
        self.generation += 1

    def fingerprint(self) -> object:
        """Changes with every ``set``."""
        return self.generation

    def load(self) -> Made:
        """The latest inputs; ``NoDataYet`` before the first sync."""
        if self._made is None:
            raise NoDataYet("no data from pretix yet")
        return self._made


@dataclass
class BridgeStatus:
    """How the bridge is doing, for the fleet and the log."""

    synced_at: float | None = None
    error: str | None = None
    failures: int = 0
    learned: int = 0
    uploaded: int = 0
    refusals: int = 0
    tickets: int = 0
    cursors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The status as ``/v1/fleet`` shows it."""
        return {
            "source": "pretix",
            "synced_at": self.synced_at,
            "error": self.error,
            "failures": self.failures,
            "learned": self.learned,
            "uploaded": self.uploaded,
            "refusals": self.refusals,
            "tickets": self.tickets,
        }


class PretixBridge:
    """One pretix event bridged to the gates."""

    def __init__(
        self,
        source: PretixSource,
        venue: Path,
        state_dir: Path,
        store: CentralStore,
        key: SecretKey,
        http: httpx.AsyncClient,
    ) -> None:
        self.source = source
        self._venue = venue
        self._state_dir = state_dir
        self._store = store
        self._key = key
        self.client = PretixClient(http, source.url, source.organizer, timeout=source.timeout_s)
        self.state = PretixState(store)
        self.inputs = PretixInputs()
        self.status = BridgeStatus()
        self.device: Device | None = None
        self.lists: dict[str, CheckinList] = {}
        #: The venue file's event id (what ticket ids are made under), once read.
        self.event_id = ""
        self.positions: dict[str, PositionRow] = {}
        self._by_secret: dict[str, str] = {}
        #: Ticket id -> its secret: positions, and revoked secrets' tickets (``revoked-<id>``).
        self._secrets: dict[str, str] = {}
        self.uploader = Uploader(
            self.client,
            self.state,
            lists=lambda: self.lists,
            positions=lambda: self.positions,
            secret_of=lambda ticket_id: self._secrets.get(ticket_id),
        )
        self._run_lock = asyncio.Lock()

    async def sync(self, entries_allowed: EntriesAllowed) -> None:
        """Read pretix's changes into new inputs (and learned records); ``WireError``/``GateError`` if not."""
        async with self._run_lock:
            if self.device is None:
                self.device = await device(self.client, self._state_dir, self.source.init_token)
            await self._sync(entries_allowed)

    async def upload(self) -> bool:
        """Send the records not sent yet, for about ``interval_s`` at most; whether some are left."""
        async with self._run_lock:
            if self.device is None:
                return False
            started = time.monotonic()
            sent, more = await self.uploader.run(self.source.interval_s)
            self.status.uploaded += sent
            if not more:  # check-ins first; refusals with what is left of the round
                left = max(0.0, self.source.interval_s - (time.monotonic() - started))
                reported, more = await report_refusals(
                    self.client, self.source.event, self.state, self.lists, self._secrets.get, left
                )
                self.status.refusals += reported
            self.status.synced_at = time.time()
            self.status.error = None
            self.status.failures = 0
            return more

    async def validate(self, gate: str, zone: str | None, uuid: str, payload: str, kind: str) -> Decision:
        """pretix's decision on a gate's scan (online-first); ``PretixError`` when it has none in time."""
        if self.device is None or not self.lists:
            raise PretixError("unreachable", "the bridge has not reached pretix yet")
        served = zone or await self.state.gate_zone(gate) or ""
        chosen = self.lists.get(served)
        if chosen is None:
            # Never another zone's list: pretix would check the ticket in where the gate is not.
            missing = f"zone {served or '(none)'!r} has no check-in list in [source.lists]"
            raise PretixError("no_list", missing)
        decision = await online.redeem(
            self.client,
            payload,
            chosen.id,
            kind,
            uuid,
            self._by_secret.get(payload),
            event_id=self.event_id,
            timeout=self.source.online_timeout_ms / 1000,
        )
        if decision.reason is Reason.OK:
            await self.state.mark_sent(uuid, "applied", time.time())
        return decision

    async def _sync(self, entries_allowed: EntriesAllowed) -> None:
        event = self.source.event
        venue = await asyncio.to_thread(load_event, self._venue, venue=True)
        facts = await download.event_facts(self.client, event)
        lists = served_lists(facts.lists, self.source.lists)
        meta = await self.state.meta()
        page = await download.orders(self.client, event, meta.get("orders_since"), venue.event_id)
        changed, cursors = await download.secrets(self.client, event, meta)
        # The orders cursor moves only once this page's check-ins are learned (below): a run
        # that stops before then reads the page again, and learning it twice stores it once.
        await self.state.save(page.positions, changed, cursors)
        self.lists = lists
        self.event_id = venue.event_id
        rows = await self.state.positions()
        self.positions = {p.ticket_id: p for p in rows}
        self._by_secret = {p.secret: p.ticket_id for p in rows}
        secrets = await self.state.secrets()
        self._secrets = {p.ticket_id: p.secret for p in rows}
        self._secrets |= {
            ticket_id_for(venue.event_id, s): s for s, (kind, _) in secrets.items() if kind == "revoked"
        }
        made = build_inputs(venue, self._key.public, facts, lists, rows, secrets)
        self.inputs.set(made)
        self.status.tickets = len(made[1])
        assert self.device is not None
        self.status.learned += await learned.learn(
            self._store,
            self.state,
            self._key,
            page.checkins,
            our_device=self.device.device_id,
            where=(self.source.url, self.source.organizer, event),
            held=set(self.positions),
            served={found.id for found in lists.values()},
            entries_allowed=entries_allowed,
            seq=int(meta.get("learned_seq", "0")),
        )
        if page.cursor:
            await self.state.put_meta({"orders_since": page.cursor})

    async def search(self, query: str, limit: int) -> list[str]:
        """The ticket ids pretix's ``checkinrpc/search`` finds on the served lists, at most ``limit``.

        ``PretixError`` when pretix does not answer (the caller searches the manifest instead).
        """
        if self.device is None or not self.lists:
            raise PretixError("unreachable", "the bridge has not reached pretix yet")
        found: list[str] = []
        for checkin_list in self.lists.values():
            params = {"list": checkin_list.id, "search": query}
            async for page, _ in self.client.pages("checkinrpc/search/", params):
                for position in page:
                    secret = position.get("secret")
                    if isinstance(secret, str) and secret:
                        found.append(ticket_id_for(self.event_id, secret))
                if len(found) >= limit:
                    break
        return list(dict.fromkeys(found))[:limit]

    def failed(self, exc: Exception) -> float:
        """Keep a run's failure by name; the wait before the next run."""
        name = f"{exc.name}: {exc.detail}" if isinstance(exc, WireError) else f"{type(exc).__name__}: {exc}"
        self.status.error = name.splitlines()[0][:300]
        self.status.failures += 1
        log.warning("pretix sync failed (%d in a row): %s", self.status.failures, self.status.error)
        backoff: float = self.source.interval_s * 2.0 ** min(self.status.failures, 10)
        return min(MAX_BACKOFF, backoff)

    def summary(self) -> Mapping[str, Any]:
        """The bridge's status."""
        return self.status.as_dict()

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()


async def open_bridge(
    source: PretixSource,
    venue: Path,
    state_dir: Path,
    store: CentralStore,
    key: SecretKey,
    book_for: Callable[[PretixInputs], ManifestBook],
) -> tuple[PretixBridge, ManifestBook]:
    """The bridge and its manifest book, after a first sync when pretix answers.

    A pretix that cannot be reached only delays the first manifest (the latest one built
    is served meanwhile); a list the bridge will not serve, a device it cannot be, or a
    venue file in error stops the start when there is no manifest to serve at all.
    """
    # httpx logs every request at INFO: one a second or more here, and the bridge names its failures.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    http = httpx.AsyncClient(follow_redirects=False)
    bridge = PretixBridge(source, venue, state_dir, store, key, http)
    try:
        book = book_for(bridge.inputs)
        first: Exception | None = None
        try:
            await bridge.sync(book.entries_allowed)
        except (WireError, GateError) as exc:
            bridge.failed(exc)
            first = exc
        try:
            await book.open()
        except NoDataYet:
            if isinstance(first, GateError) and not isinstance(first, WireError):
                raise first from None
            log.warning("no manifest yet: waiting for pretix (%s)", bridge.status.error)
    except BaseException:
        await http.aclose()
        raise
    return bridge, book


async def keep_synced(bridge: PretixBridge, book: ManifestBook) -> None:
    """Sync, build and upload every ``interval_s``, backing off while pretix fails (runs until cancelled)."""
    wait = 0.0 if bridge.status.error else bridge.source.interval_s
    while True:
        await asyncio.sleep(wait)
        try:
            await bridge.sync(book.entries_allowed)
            await book.refresh()
            # A backlog goes in rounds of one interval each, a sync between: pretix's changes
            # (a cancellation) reach the gates while it is sent.
            more = await bridge.upload()
            wait = 0.0 if more else bridge.source.interval_s
        except (WireError, GateError, OSError, sqlite3.Error) as exc:
            wait = bridge.failed(exc)
