"""The central's manifests: versions built from event.toml + tickets.csv, deltas on demand.

Built exactly as ``gatectl manifest build`` builds them (``provision.event``,
``provision.tickets``, ``provision.build``), signed with the central's key, with two
rules of the central's own:

- Versions only grow, across restarts too: a new version is ``1 +`` the highest ever
  recorded in the database, and it is built only when the inputs' content changes (the
  files are checked every ``poll_ms``; a change of mtime, size or inode makes the
  central load them and compare what it would build with the latest version).
- Tickets are never removed: each version holds every ticket of the one before, those
  dropped from tickets.csv as canceled tombstones (``core.delta.plan_delta``). So a
  delta from any older version, built on demand from that version and the latest's own
  header and tickets, produces exactly the latest's body; deltas are cached on disk.

Every version's file is kept beside the database (``manifests/N.gdm``) and verified
with the central's public key when opened. A held version that no longer verifies (the
key was changed) is not used as a base: the gate gets the full latest instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gate_daemon.core.delta import plan_delta
from gate_daemon.core.keys import PublicKey, SecretKey
from gate_daemon.core.manifest import Manifest, peek_header
from gate_daemon.core.manifest_header import RosterGate
from gate_daemon.core.ticket_record import TicketEntry
from gate_daemon.errors import GateError, ManifestRefused
from gate_daemon.files import read_regular, write_atomic
from gate_daemon.net.central_time import signed_time
from gate_daemon.provision.build import MAX_VERSION, build_manifest, default_expiry
from gate_daemon.provision.event import EventSpec, load_event
from gate_daemon.provision.tickets import load_tickets
from gate_daemon.store.central.checkin_book import CentralStore, ManifestRow
from gate_daemon.store.conflicts import entry_limit
from gate_daemon.store.manifest_file import MAX_MANIFEST, read_manifest

log = logging.getLogger(__name__)

#: A version is renewed (same content, later expiry) once less than this share of its
#: lifetime is left and the inputs allow a later expiry.
RENEW_AT = 0.5


@dataclass(frozen=True, slots=True)
class Served:
    """What ``GET /v1/manifest`` answers: a file, or nothing new (``data`` None)."""

    version: int
    kind: str  # "full" | "delta" | "same"
    data: bytes | None


class GateAhead(GateError):
    """A gate holds a newer version than the central has built."""


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """How the input files looked when last read (a change makes the central read them again)."""

    stats: tuple[tuple[int, int, int] | None, ...]


class Inputs(Protocol):
    """What manifests are built from: the files (``FileInputs``) or the pretix bridge's copy."""

    def fingerprint(self) -> object:
        """Something that changes whenever ``load`` may answer differently."""

    def load(self) -> tuple[EventSpec, list[TicketEntry], dict[str, Any]]:
        """The event, its tickets and extra header keys now (runs in a thread); a ``GateError`` if not."""


@dataclass(frozen=True, slots=True)
class FileInputs:
    """event.toml + tickets.csv (``[central] event``, ``tickets``)."""

    event: Path
    tickets: Path

    def fingerprint(self) -> object:
        """The files' mtime, size and inode."""
        return Fingerprint(tuple(_stat(p) for p in (self.event, self.tickets)))

    def load(self) -> tuple[EventSpec, list[TicketEntry], dict[str, Any]]:
        """Both files read and checked (no extra header keys)."""
        event = load_event(self.event)
        return event, load_tickets(self.tickets, event), {}


class ManifestBook:
    """The versions built, the latest as a verified ``Manifest``, and how to serve any gate."""

    def __init__(
        self,
        store: CentralStore,
        directory: Path,
        key: SecretKey,
        event_path: Path,
        tickets_path: Path,
        *,
        clock: Callable[[], float] = time.time,
        inputs: Inputs | None = None,
        enrolled: Callable[[], Awaitable[tuple[RosterGate, ...]]] | None = None,
    ) -> None:
        self._store = store
        self._enrolled = enrolled
        self._dir = directory
        self._key = key
        self._inputs: Inputs = inputs if inputs is not None else FileInputs(event_path, tickets_path)
        self._clock = clock
        self._rows: dict[int, ManifestRow] = {}
        self._highest = 0
        self.latest: Manifest | None = None
        self._roster: Mapping[str, PublicKey] | None = None
        self._seen: object = None
        self._lock = asyncio.Lock()
        self._deltas: dict[tuple[int, int], asyncio.Lock] = {}

    @property
    def trusted(self) -> list[PublicKey]:
        """The key the central's manifests verify with."""
        return [self._key.public]

    @property
    def signer(self) -> SecretKey:
        """The manifest key: it also signs enrollment answers (``central.enroll``)."""
        return self._key

    def sign_time(self, request_signature: str) -> str:
        """The central's time now, signed with the manifest key for one request (``net.central_time``)."""
        return signed_time(self._key, self._clock(), request_signature)

    def roster(self) -> Mapping[str, PublicKey] | None:
        """The latest manifest's gates with their keys; None before any manifest."""
        return self._roster

    def entries_allowed(self, ticket_id: str) -> int | None:
        """A ticket's entry limit for double entries, derived as a gate derives it; None for re-entry."""
        return entry_limit(self.latest, ticket_id)

    async def open(self) -> None:
        """Load the versions recorded, then build one if the inputs changed (or none exists).

        Raises (``SourceError``, ``BuildError``, ``KeyFileError``) only when there is no
        usable version at all: otherwise a bad input is logged and the latest is served.
        """
        self._dir.mkdir(parents=True, exist_ok=True)
        rows = await self._store.manifests()
        self._rows = {row.version: row for row in rows}
        self._highest = rows[-1].version if rows else 0
        if rows:
            try:
                self._activate(await asyncio.to_thread(self._read, rows[-1].version))
            except ManifestRefused as exc:
                log.warning(
                    "manifest version %d cannot be used (%s): building a new one", rows[-1].version, exc
                )
        try:
            await self.refresh(force=True)
        except GateError:
            if self.latest is None:
                raise
            log.exception("the event's inputs cannot be built; serving version %d", self.latest.version)

    async def poll(self) -> None:
        """Build a new version if the input files changed; a bad input is logged, never raised."""
        try:
            await self.refresh()
        except GateError as exc:
            log.warning(
                "manifest inputs not built: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            )

    async def refresh(self, *, force: bool = False) -> bool:
        """Read the inputs when they changed (or with ``force``); whether a new version was built."""
        async with self._lock:
            enrolled = await self._enrolled() if self._enrolled is not None else ()
            seen = (self._inputs.fingerprint(), enrolled)
            if not force and seen == self._seen:
                return False
            self._seen = seen
            built = await asyncio.to_thread(self._build_if_changed, enrolled)
            if built is None:
                return False
            row, manifest = built
            await self._store.add_manifest(row, self._clock())
            self._rows[row.version] = row
            self._highest = row.version
            self._activate(manifest)
            log.info("built manifest version %d: %s, %d tickets", row.version, row.event_id, row.tickets)
            return True

    def _activate(self, manifest: Manifest) -> None:
        self.latest = manifest
        self._roster = {gate.id: gate.key for gate in manifest.header.gates}

    def _build_if_changed(self, enrolled: tuple[RosterGate, ...] = ()) -> tuple[ManifestRow, Manifest] | None:
        """A new version when the inputs say something the latest does not (runs in a thread)."""
        event, tickets, extra = self._inputs.load()
        event = with_enrolled(event, enrolled)
        latest = self.latest
        now = int(self._clock())
        if latest is not None and latest.event_id == event.event_id:
            # Strict capacity's initial split is carried forward, never made again: a
            # roster change (a gate enrolled) must not move places under the gates' feet.
            event = dataclasses.replace(event, capacity_shares=latest.header.capacity_shares)
            sessions, zones = {s.id for s in event.sessions}, {z.id for z in event.zones}
            tickets = plan_delta(event.event_id, latest.entries(), tickets, sessions, zones).entries
            h = latest.header
            same = build_manifest(
                event,
                tickets,
                self._key,
                version=h.version,
                issued_at=h.issued_at,
                expires_at=h.expires_at,
                extra_header=extra,
            )
            if peek_header(same)[1].raw == h.raw and not _due(h.issued_at, h.expires_at, event, now):
                return None
        version = self._highest + 1
        if version > MAX_VERSION:
            raise GateError("manifest versions are exhausted")
        data = build_manifest(event, tickets, self._key, version=version, issued_at=now, extra_header=extra)
        path = self._file(version)
        write_atomic(path, data)
        manifest = read_manifest(path, self.trusted)
        h = manifest.header
        row = ManifestRow(version, h.event_id, h.issued_at, h.expires_at, h.body_sha256, h.tickets, path.name)
        return row, manifest

    def _file(self, version: int) -> Path:
        return self._dir / f"{version}.gdm"

    def _read(self, version: int) -> Manifest:
        return read_manifest(self._dir / self._rows[version].file, self.trusted)

    async def serve(self, have: int | None) -> Served:
        """The answer to a gate holding version ``have`` (None: nothing); ``GateAhead`` if it is newer."""
        latest = self.latest
        if latest is None:
            raise ManifestRefused("malformed", "no manifest")  # the caller checks first
        version = latest.version
        if have is not None and have > version:
            raise GateAhead(f"the gate holds version {have}, the central's latest is {version}")
        if have == version:
            return Served(version, "same", None)
        if have is not None and have in self._rows:
            delta = await self._delta(have, latest)
            if delta is not None:
                return Served(version, "delta", delta)
        path = self._dir / self._rows[version].file
        return Served(version, "full", await asyncio.to_thread(read_regular, path, MAX_MANIFEST))

    async def _delta(self, have: int, latest: Manifest) -> bytes | None:
        """The delta from ``have`` to ``latest`` (cached on disk); None when it cannot be made."""
        path = self._dir / f"{have}-{latest.version}.delta"
        lock = self._deltas.setdefault((have, latest.version), asyncio.Lock())
        async with lock:
            try:
                return await asyncio.to_thread(self._delta_file, have, latest, path)
            except (GateError, OSError) as exc:
                log.warning(
                    "no delta from version %d to %d (%s): serving the full file", have, latest.version, exc
                )
                return None

    def _delta_file(self, have: int, latest: Manifest, path: Path) -> bytes:
        if path.is_file():
            return read_regular(path, MAX_MANIFEST)
        base = self._read(have)
        h = latest.header
        try:
            data = build_manifest(
                spec_of(latest),
                list(latest.entries()),
                self._key,
                version=h.version,
                issued_at=h.issued_at,
                expires_at=h.expires_at,
                base=base,
                extra_header=extra_of(latest),
            )
        finally:
            base.release()
        write_atomic(path, data)
        return data


def spec_of(manifest: Manifest) -> EventSpec:
    """The event a manifest was built from, as its signed header tells it."""
    h = manifest.header
    return EventSpec(
        event_id=h.event_id,
        name=h.event_name,
        sessions=h.sessions,
        zones=h.zones,
        revoked=tuple(sorted(h.revoked)),
        legacy_codes=h.legacy_codes,
        ticket_keys=h.ticket_keys,
        gates=h.gates,
        supervisors=h.supervisors,
        revoked_holders=tuple(sorted(h.revoked_holders)),
        rotating_tolerance=h.rotating_tolerance,
        staff_keys=h.staff_keys,
        revoked_staff=tuple(sorted(h.revoked_staff)),
        capacity=h.capacity,
        capacity_mode=h.capacity_mode,
        capacity_shares=h.capacity_shares,
    )


def with_enrolled(event: EventSpec, enrolled: tuple[RosterGate, ...]) -> EventSpec:
    """The event's roster: event.toml's ``[[gates]]``, then the gates enrolled by token.

    An id in both is the file's: the enrolled one is left out (``gate-central token``
    refuses such an id, and so does an enrollment; the file may have gained it since).
    """
    listed = {gate.id for gate in event.gates}
    extra = tuple(gate for gate in enrolled if gate.id not in listed)
    for gate in enrolled:
        if gate.id in listed:
            log.warning("gate %s is in event.toml's [[gates]] and enrolled: the file's entry stands", gate.id)
    return dataclasses.replace(event, gates=event.gates + extra) if extra else event


def extra_of(manifest: Manifest) -> dict[str, Any]:
    """The optional header keys a manifest was built with beyond its event's (a pretix event's)."""
    return {k: v for k, v in manifest.header.raw.items() if k.startswith("pretix_")}


def _due(issued_at: int, expires_at: int, event: EventSpec, now: int) -> bool:
    """Whether the latest version should be renewed: little lifetime left, a later expiry possible."""
    left = expires_at - now
    return left < (expires_at - issued_at) * RENEW_AT and default_expiry(event, now) > expires_at


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
