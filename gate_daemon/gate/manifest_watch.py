"""The active manifest: loaded at start, hot-swapped when a new file is dropped in place.

The tech (or the sync) drops a manifest at ``[manifest] path``. The gate notices a
changed file by polling its identity (inode, size, modification time), copies it into
its state directory, verifies the copy (signature, digests, expiry, no rollback against
the version the ledger remembers, this gate's event, zone and session) and only then
swaps it in. Scans in flight finish on the manifest they started with; the next scan
sees the new one. A refused file changes nothing but a counter and a loud log line.

At start the gate's private copy (``state_dir/manifest.active``) is opened first, so a
gate restarts with what it last activated even if the drop file is gone or bad.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gate_daemon.core.counters import Family, labelled
from gate_daemon.core.decision import Checkpoint
from gate_daemon.core.keys import PublicKey
from gate_daemon.core.manifest import Manifest, check_successor
from gate_daemon.core.times import format_instant
from gate_daemon.errors import ManifestRefused
from gate_daemon.gate.counts import count_softly
from gate_daemon.store.ledger import Ledger, LedgerError
from gate_daemon.store.manifest_file import install_manifest, read_manifest, sweep_partial_installs
from gate_daemon.store.manifest_state import ManifestState

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Refusal:
    """The last manifest file refused, and why."""

    reason: str
    detail: str
    at: float


class ManifestWatch:
    """Holds the active manifest and replaces it when a valid newer one is dropped."""

    def __init__(
        self,
        *,
        drop_path: Path,
        private_path: Path,
        trusted: Sequence[PublicKey],
        ledger: Ledger,
        event_id: str,
        checkpoint: Checkpoint,
        clock: Callable[[], float] = time.time,
        activated: Callable[[Manifest], None] | None = None,
    ) -> None:
        self.drop_path = drop_path
        self.private_path = private_path
        self.trusted = tuple(trusted)
        self.ledger = ledger
        self.event_id = event_id
        self.checkpoint = checkpoint
        self._clock = clock
        #: Told of every manifest that becomes active, at start or later (the clock's bounds).
        self._activated = activated
        self._current: Manifest | None = None
        self._seen: tuple[int, int, int] | None = None
        self.refusal: Refusal | None = None
        self.activated_at: float | None = None
        #: One install at a time: the drop file's and the central's (``offer``) may meet.
        self._installing = asyncio.Lock()

    @property
    def current(self) -> Manifest | None:
        """The manifest scans are decided against, or None."""
        return self._current

    def _activate(self, manifest: Manifest) -> None:
        self._current = manifest
        if self._activated is not None:
            self._activated(manifest)

    async def start(self) -> None:
        """Open the private copy, then take the drop file if it is newer."""
        sweep_partial_installs(self.private_path)
        try:
            state = await self.ledger.manifest_state()
        except (sqlite3.Error, ValueError) as exc:
            raise LedgerError(f"cannot read the active manifest's record from the ledger: {exc}") from None
        if self.private_path.exists():
            try:
                manifest = await asyncio.to_thread(read_manifest, self.private_path, self.trusted)
                check_successor(manifest, state.version, state.body_sha256)
                self._check_gate(manifest)
            except ManifestRefused as exc:
                log.error("the gate's own manifest copy %s is refused: %s", self.private_path, exc)
                detail = f"the gate's own copy {self.private_path}: {exc.detail}"
                self.refusal = Refusal(exc.reason, detail, self._clock())
                await count_softly(self.ledger, labelled(Family.MANIFEST_REFUSED, exc.reason))
            else:
                self._activate(manifest)
                self.activated_at = state.activated_at
                if manifest.version > state.version:
                    # Killed between installing the copy and recording it: record it now, so
                    # the version floor holds even if this copy is lost later.
                    self.activated_at = self._clock()
                    try:
                        await self.ledger.record_manifest(
                            ManifestState(
                                manifest.version,
                                manifest.body_sha256,
                                manifest.header.issued_at,
                                self.activated_at,
                            )
                        )
                    except (sqlite3.Error, ValueError) as exc:
                        log.error("manifest version %d could not be recorded: %s", manifest.version, exc)
                log.info(
                    "manifest version %d of %s active (%d tickets)",
                    manifest.version,
                    manifest.event_id,
                    len(manifest),
                )
        await self.check()
        if self._current is None:
            log.critical(
                "OUT OF SERVICE: no valid manifest (drop one at %s); every scan is denied "
                "with manifest_missing",
                self.drop_path,
            )

    async def check(self) -> bool:
        """Look at the drop file once; True when a new manifest was activated."""
        try:
            st = self.drop_path.stat()
        except FileNotFoundError:
            self._seen = None
            return False
        except OSError as exc:
            return await self._refuse(
                ManifestRefused("unreadable", f"cannot stat {self.drop_path}: {exc.strerror}"), self.drop_path
            )
        identity = (st.st_ino, st.st_size, st.st_mtime_ns)
        if identity == self._seen:
            return False
        try:
            state = await self.ledger.manifest_state()
        except (sqlite3.Error, ValueError) as exc:
            log.error("cannot read the manifest state from the ledger (%s); will look again", exc)
            return False
        try:
            activated = await self._take(self.drop_path, state)
        except ManifestRefused as exc:
            if exc.reason != "unreadable":
                self._seen = identity  # its content is refused: look again only when it changes
            return await self._refuse(exc, self.drop_path)
        self._seen = identity
        return activated

    async def offer(self, source: Path) -> bool:
        """Verify and activate a manifest file from elsewhere (the central's); True when activated.

        False when it is the manifest already active. A refused file changes nothing but
        the refusal shown in status; ``ManifestRefused`` says why.
        """
        try:
            state = await self.ledger.manifest_state()
        except (sqlite3.Error, ValueError) as exc:
            raise ManifestRefused(
                "unreadable", f"cannot read the manifest state from the ledger ({exc})"
            ) from None
        try:
            return await self._take(source, state)
        except ManifestRefused as exc:
            await self._refuse(exc, source)
            raise

    async def _take(self, source: Path, state: ManifestState) -> bool:
        """Install ``source`` if it verifies and is newer; whether it was activated."""
        # Two installs side by side would each check against the same active version, and
        # the older could land last: the private copy a rollback of what the ledger holds.
        async with self._installing:
            return await self._install(source, state)

    async def _install(self, source: Path, state: ManifestState) -> bool:
        current = self._current
        manifest = await asyncio.to_thread(
            install_manifest,
            source,
            self.private_path,
            self.trusted,
            now=self._clock(),
            last_version=max(state.version, current.version if current else 0),
            last_sha256=_same_version_sha(state, current),
            check=self._check_gate,  # before it replaces the gate's own copy
        )
        if current is not None and manifest.version == current.version:
            return False  # the very manifest already active, offered again
        now = self._clock()
        try:
            await self.ledger.record_manifest(
                ManifestState(manifest.version, manifest.body_sha256, manifest.header.issued_at, now)
            )
        except (sqlite3.Error, ValueError) as exc:
            # Verified and installed: use it. Its version is recorded at the next start,
            # which opens the installed copy.
            log.error("manifest version %d could not be recorded in the ledger: %s", manifest.version, exc)
        self._activate(manifest)
        self.activated_at = now
        self.refusal = None
        await self._recheck_conflicts(now)
        old = f"version {current.version}" if current else "no manifest"
        log.info(
            "manifest version %d of %s activated (%d tickets, expires %s), replacing %s",
            manifest.version,
            manifest.event_id,
            len(manifest),
            format_instant(manifest.header.expires_at),
            old,
        )
        return True

    async def _recheck_conflicts(self, now: float) -> None:
        """Judge double entries again under the new manifest's entry policies."""
        try:
            found = await self.ledger.recheck_conflicts(now)
        except (sqlite3.Error, ValueError) as exc:
            log.error("conflicts could not be judged again under the new manifest: %s", exc)
            return
        if found:
            log.warning("%d double entries found under the new manifest's entry policies", found)

    def _check_gate(self, manifest: Manifest) -> None:
        check_gate(manifest, self.event_id, self.checkpoint)

    async def _refuse(self, exc: ManifestRefused, source: Path) -> bool:
        again = (
            exc.reason == "unreadable"
            and self.refusal is not None
            and (self.refusal.reason, self.refusal.detail) == (exc.reason, exc.detail)
        )
        self.refusal = Refusal(exc.reason, exc.detail, self._clock())
        if again:
            return False  # an unreadable file looked at again at each poll: said and counted once
        kept = f"keeping version {self._current.version}" if self._current else "the gate has NO manifest"
        log.error("manifest %s refused (%s): %s; %s", source, exc.reason, exc.detail, kept)
        await count_softly(self.ledger, labelled(Family.MANIFEST_REFUSED, exc.reason))
        return False

    async def run(self, interval: float) -> None:
        """Check the drop file every ``interval`` seconds until cancelled; nothing stops it."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check()
            except Exception:
                log.exception("unexpected error while looking at the manifest drop file; will look again")


def check_gate(manifest: Manifest, event_id: str, checkpoint: Checkpoint) -> None:
    """Refuse a manifest for another event (``wrong_event``), or without the gate's zone or session."""
    if manifest.event_id != event_id:
        raise ManifestRefused(
            "wrong_event", f"manifest is for event {manifest.event_id!r}, this gate is {event_id!r}"
        )
    problems = checkpoint.problems(manifest)
    if problems:
        raise ManifestRefused("wrong_checkpoint", "; ".join(problems))


def _same_version_sha(state: ManifestState, current: Manifest | None) -> str | None:
    """The digest a manifest of the remembered version must have."""
    if current is not None and current.version >= state.version:
        return current.body_sha256
    return state.body_sha256
