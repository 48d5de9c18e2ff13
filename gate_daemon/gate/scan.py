"""The gate service: payload -> decide -> commit -> signal.

Every scan, from an input or from the control socket, goes through ``Gate.scan``. The
decision is computed against the active manifest and the ledger's facts inside one
ledger transaction, committed with its evidence row and counters, and only then shown.
A scan that cannot be committed is refused with ``ledger_unavailable``: the gate never
shows a decision that a power cut could take back.

Inputs call ``Gate.frame`` instead: a camera sees one QR code in many frames, so the same
payload again within ``repeat_window`` of its last sighting is the same scan and is
dropped (counted in memory as a repeat).

With a turnstile, an ``allow`` pulses its relay once committed and shown; a steward's
button can release it by hand (``Gate.release``, recorded like a scan) or make the next
input scan an exit (``Gate.arm_exit``).
"""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gate_daemon.core.decision import (
    Checkpoint,
    Decision,
    LedgerFacts,
    Outcome,
    Reason,
    ScanKind,
    Ticket,
    decide,
    identify,
)
from gate_daemon.core.manifest import Manifest
from gate_daemon.core.tokens import payload_fingerprint
from gate_daemon.errors import GateError, ManifestRefused
from gate_daemon.gate.turnstile import Turnstile
from gate_daemon.hardware.ports import Signals
from gate_daemon.store.ledger import Ledger, PolicyConflict, ScanEvidence, new_scan_id

log = logging.getLogger(__name__)

#: How often a scan is re-decided when its redemption lost a race on stale facts.
_RETRIES = 3
#: Distinct payloads remembered for repeat suppression.
_REPEAT_MEMORY = 1024


class ScanIdReused(GateError):
    """A scan id given with a payload other than the one it was recorded for."""


class RemoteDecider(Protocol):
    """Online-first: the central's decision for a scan, or None to decide locally (net.online)."""

    async def decide(self, uuid: str, payload: str, kind: ScanKind) -> Decision | None:
        """Within a hard deadline; never raises."""
        ...

    def settled(self, uuid: str, admitted: bool) -> None:
        """The scan's end at this gate: a mark the central holds for one not admitted is taken back."""
        ...


class ManifestSource(Protocol):
    """Whatever holds the active manifest (it may be swapped between scans)."""

    @property
    def current(self) -> Manifest | None:
        """The manifest to decide against now, or None when the gate has no valid one."""


@dataclass(frozen=True, slots=True)
class ScanResult:
    """A scan's decision, as committed, and its id."""

    scan_id: str
    decision: Decision
    recorded: bool = True
    duplicate: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The JSON answer the control socket returns."""
        out = self.decision.as_dict()
        out["scan_id"] = self.scan_id
        out["recorded"] = self.recorded
        if self.duplicate:
            out["duplicate"] = True
        return out


#: The namespace of scan ids made from a client's (``gate_scan_id``).
_SCAN_IDS = uuid.UUID("3c6f1d0e-8a51-4f8e-9d0c-6b2f5e7a9c41")


def gate_scan_id(gate_id: str, client_id: str) -> str:
    """The id a scan with the client's ``client_id`` is recorded under at gate ``gate_id``."""
    return str(uuid.uuid5(_SCAN_IDS, f"{gate_id}\n{client_id}"))


class Gate:
    """One gate: its identity, its ledger, its manifest and its signals."""

    def __init__(
        self,
        *,
        gate_id: str,
        event_id: str,
        checkpoint: Checkpoint,
        mode: ScanKind,
        ledger: Ledger,
        manifests: ManifestSource,
        signals: Signals,
        repeat_window: float = 3.0,
        turnstile: Turnstile | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        online: RemoteDecider | None = None,
    ) -> None:
        self.gate_id = gate_id
        self.online = online
        self.event_id = event_id
        self.checkpoint = checkpoint
        self.mode = mode
        self.ledger = ledger
        self.manifests = manifests
        self.signals = signals
        self.repeat_window = repeat_window
        self.turnstile = turnstile
        self._armed: tuple[float, str] | None = None  # (until, operator) of an armed exit
        self._clock = clock
        self._monotonic = monotonic
        self._seen: dict[str, float] = {}
        #: Counts kept in memory only: events too frequent or too broken to persist.
        self.volatile: dict[str, int] = {"repeats": 0, "unrecorded": 0}

    async def frame(self, payload: str, *, device: str) -> ScanResult | None:
        """A payload seen by an input; None when it repeats one seen within the window."""
        now = self._monotonic()
        key = payload_fingerprint(self.event_id, payload)
        last = self._seen.get(key)
        self._seen[key] = now
        if last is not None and now - last < self.repeat_window:
            self.volatile["repeats"] += 1
            return None
        if len(self._seen) > _REPEAT_MEMORY:
            self._forget(now)
        armed, self._armed = self._armed, None
        if armed is not None and now < armed[0]:
            result = await self.scan(payload, device=device, operator=armed[1], kind=ScanKind.EXIT)
            if result.decision.ticket_id is None and self._armed is None:
                # Not a ticket (a stray code in view): the exit still waits for the one that is.
                self._armed = armed
            return result
        return await self.scan(payload, device=device)

    def arm_exit(self, operator: str, seconds: float) -> None:
        """Make the next input scan of a ticket within ``seconds`` an exit scan made by ``operator``."""
        self._armed = (self._monotonic() + seconds, operator)

    async def release(self, *, device: str, operator: str) -> ScanResult:
        """Release the turnstile by hand: recorded in the evidence log, then shown and pulsed."""
        scan_id = new_scan_id()
        manifest = self.manifests.current
        decision = Decision(Reason.MANUAL_RELEASE, "Released by staff")
        try:
            async with self.ledger.serial:
                wall = self._clock()
                evidence = ScanEvidence(
                    uuid=scan_id,
                    hlc=self.ledger.clock.tick(int(wall * 1000)),
                    wall=wall,
                    gate=self.gate_id,
                    device=device,
                    operator=operator,
                    fingerprint="",
                    ticket_id=None,
                    kind=self.mode,
                    outcome=decision.outcome.value,
                    reason=decision.reason.value,
                    resolution="released",
                    mode="offline",
                    manifest_version=manifest.version if manifest is not None else None,
                    decision=decision.as_dict(),
                )
                await self.ledger.commit_scan(evidence, ("manual_releases",))
        except (sqlite3.Error, ValueError, PolicyConflict) as exc:
            # Not recorded, not released: the button is pressed again, or the steward
            # opens the turnstile with its own key, which leaves no gap in the record.
            return self._unrecorded(scan_id, f"ledger error: {exc}")
        self._show(decision)
        if self.turnstile is not None:
            self.turnstile.release(None)
        return ScanResult(scan_id, decision)

    def _forget(self, now: float) -> None:
        stale = [k for k, seen in self._seen.items() if now - seen >= self.repeat_window]
        for key in stale:
            del self._seen[key]
        while len(self._seen) > _REPEAT_MEMORY:
            del self._seen[next(iter(self._seen))]

    async def scan(
        self,
        payload: str,
        *,
        device: str,
        operator: str | None = None,
        kind: ScanKind | None = None,
        scan_id: str | None = None,
    ) -> ScanResult:
        """Decide, commit and show one scan. Never raises for any payload.

        A ``scan_id`` already recorded is answered with its recorded decision (a retried
        request); ``ScanIdReused`` if it was recorded for another payload.
        """
        if scan_id is not None:
            # A client's id is made this gate's own: the same id retried at another gate
            # must make another record there, not one that every gate takes for this one.
            client, scan_id = scan_id, gate_scan_id(self.gate_id, scan_id)
            try:
                prior = await self._prior(scan_id, payload)
            except ScanIdReused:
                raise ScanIdReused(f"scan id {client} was recorded for another payload") from None
            if prior is not None:
                return prior
        result = await self._commit(payload, device, operator, kind or self.mode, scan_id or new_scan_id())
        if self.online is not None and not result.duplicate:
            admitted = result.recorded and result.decision.outcome is Outcome.ALLOW
            self.online.settled(result.scan_id, admitted)
        if not result.duplicate:
            self._show(result.decision)
            decision = result.decision
            if self.turnstile is not None and decision.reason is Reason.OK and decision.ticket_id is not None:
                self.turnstile.release(result.scan_id)
        return result

    async def _prior(self, scan_id: str, payload: str) -> ScanResult | None:
        try:
            recorded = await self.ledger.find_scan(scan_id)
        except (sqlite3.Error, ValueError):
            return None
        if recorded is None:
            return None
        if recorded.fingerprint != payload_fingerprint(self.event_id, payload):
            raise ScanIdReused(f"scan id {scan_id} was recorded for another payload")
        return ScanResult(scan_id, Decision.from_dict(recorded.decision), duplicate=True)

    async def _commit(
        self, payload: str, device: str, operator: str | None, kind: ScanKind, scan_id: str
    ) -> ScanResult:
        # Online-first: the central's word, asked before the ledger is locked (other scans
        # must not wait on the network); None when it did not answer in time.
        remote = None if self.online is None else await self.online.decide(scan_id, payload, kind)
        mode = "offline" if remote is None else "online"
        manifest = self.manifests.current
        wall = self._clock()
        fingerprint = payload_fingerprint(self.event_id, payload)
        for _attempt in range(_RETRIES):
            try:
                async with self.ledger.serial:
                    hlc = self.ledger.clock.tick(int(wall * 1000))
                    decision, facts = await self._decide(payload, manifest, wall, kind)
                    if remote is not None:
                        decision = _together(decision, remote, scan_id)
                    admitted = decision.outcome is Outcome.ALLOW and decision.ticket_id is not None
                    resolution = "refused"
                    if admitted:
                        resolution = "admitted" if kind is ScanKind.ENTRY else "exited"
                    evidence = ScanEvidence(
                        uuid=scan_id,
                        hlc=hlc,
                        wall=wall,
                        gate=self.gate_id,
                        device=device,
                        operator=operator,
                        fingerprint=fingerprint,
                        ticket_id=decision.ticket_id,
                        kind=kind,
                        outcome=decision.outcome.value,
                        reason=decision.reason.value,
                        resolution=resolution,
                        mode=mode,
                        manifest_version=manifest.version if manifest is not None else None,
                        decision=decision.as_dict(),
                    )
                    counters = (
                        "scans",
                        f"{mode}_scans",
                        f"outcome:{decision.outcome.value}",
                        f"reason:{decision.reason.value}",
                        f"kind:{kind.value}",
                        f"resolution:{resolution}",
                    )
                    await self.ledger.commit_scan(evidence, counters, facts if admitted else None)
                return ScanResult(scan_id, decision)
            except PolicyConflict:
                # The same scan id committed meanwhile (a retried request): that is its answer.
                prior = await self._prior(scan_id, payload)
                if prior is not None:
                    return prior
                log.warning("scan %s lost a race for its ticket's entry; deciding again", scan_id)
            except (sqlite3.Error, ValueError) as exc:
                # ValueError: aiosqlite's answer once the connection is closed (a scan that
                # outlived shutdown's wait).
                return self._unrecorded(scan_id, f"ledger error: {exc}")
        return self._unrecorded(scan_id, "the ticket's entries kept changing under the scan")

    async def _decide(
        self, payload: str, manifest: Manifest | None, wall: float, kind: ScanKind
    ) -> tuple[Decision, LedgerFacts]:
        try:
            found = identify(payload, manifest, wall)
            if not isinstance(found, Ticket):
                return found, LedgerFacts()
            assert manifest is not None
            facts = await self.ledger.facts(found.ticket_id)
            return decide(found, manifest, self.checkpoint, facts, wall, kind), facts
        except ManifestRefused as exc:
            # Only a manifest whose signed body is corrupt gets here: treat as none.
            log.error("the active manifest is unusable (%s); denying scans as manifest_missing", exc)
            return Decision(
                Reason.MANIFEST_MISSING, "Out of service: the ticket list is unusable"
            ), LedgerFacts()

    def _unrecorded(self, scan_id: str, why: str) -> ScanResult:
        self.volatile["unrecorded"] += 1
        log.error("scan %s could not be recorded (%s); refusing it", scan_id, why)
        decision = Decision(Reason.LEDGER_UNAVAILABLE, "Out of service: this gate cannot record scans")
        return ScanResult(scan_id, decision, recorded=False)

    def _show(self, decision: Decision) -> None:
        try:
            self.signals.show(decision)
        except Exception:  # a broken light must not lose the scan, which is already recorded
            log.exception("signals failed to show a decision")


def _together(local: Decision, remote: Decision, scan_id: str) -> Decision:
    """Online-first: a ticket goes in only when both the central and this gate say so.

    The central's refusal stands (it knows of redemptions at devices this gate cannot
    hear). So does this gate's: it may know of one the central has not heard of yet (a
    peer's, over the LAN), and its ledger is what refuses a second admission here.
    """
    if remote.outcome is not Outcome.ALLOW:
        return remote
    if local.outcome is not Outcome.ALLOW:
        log.warning(
            "scan %s: the central allowed it, this gate refuses it (%s); its mark there is taken back",
            scan_id,
            local.reason.value,
        )
    return local
