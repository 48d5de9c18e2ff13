"""The gate service: payload -> decide -> commit -> signal.

Every scan, from an input or from the control socket, goes through ``Gate.scan``. The
payload is identified against the active manifest, then the ledger's unit of work
(``Ledger.record_scan``) decides it on the ticket's facts (``core.decision.decide``) and
commits it with its evidence row and counters; only then is it shown.
A scan that cannot be committed is refused with ``ledger_unavailable``: the gate never
shows a decision that a power cut could take back.

Inputs call ``Gate.sighted`` instead: a camera sees one QR code in many frames, so the
same payload again within ``repeat_window`` of its last sighting is the same scan and is
dropped (counted in memory as a repeat); for a rotating code, the same page (its
certificate), whatever step its code is for.

With a turnstile, an ``allow`` pulses its relay once committed and shown; a steward's
button can release it by hand (``Gate.release``, recorded like a scan) or make the next
input scan an exit (``Gate.arm_exit``).

The lane (``gate_daemon.gate.lane``), set by supervisors' signed commands: a closed lane
refuses every scan with ``lane_closed`` (recorded, never released); a supervised lane
commits an allow and holds it, unshown and unreleased, until ``Gate.confirm``.
"""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from gate_daemon.core.badges import is_badge
from gate_daemon.core.decision import Checkpoint, Decision, LedgerFacts, ScanKind, Ticket, decide, identify
from gate_daemon.core.manifest import Manifest
from gate_daemon.core.reasons import Outcome, Reason
from gate_daemon.core.rotating import repeat_key
from gate_daemon.core.tokens import payload_fingerprint
from gate_daemon.errors import GateError, ManifestRefused
from gate_daemon.gate.capacity import Capacity
from gate_daemon.gate.feed import ResultFeed, Subscription
from gate_daemon.gate.lane import Held, Lane
from gate_daemon.gate.staff import BadgeVerdict, Shift
from gate_daemon.gate.turnstile import Turnstile
from gate_daemon.hardware.ports import Signals
from gate_daemon.store.ledger import Ledger
from gate_daemon.store.scans import PolicyConflict, RecordedScan, Route, Scan, new_scan_id

log = logging.getLogger(__name__)

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
    #: A supervised lane's allow, held until a steward confirms it (``Gate.confirm``).
    pending: bool = False

    def as_dict(self, client_id: str | None = None) -> dict[str, Any]:
        """The JSON answer the control socket returns: the decision, and the scan's ids and state.

        ``record_id`` is the ledger's id for the scan (its evidence row, its redemption);
        ``scan_id`` is the client's own id when it gave one (``client_id``, to retry with:
        the gate records it under ``gate_scan_id``), else the same.
        """
        out = self.decision.as_dict()
        out["scan_id"] = client_id or self.scan_id
        out["recorded"] = self.recorded
        if self.duplicate:
            out["duplicate"] = True
        if self.pending:
            out["pending"] = True
        out["record_id"] = self.scan_id
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
        kind: ScanKind,
        ledger: Ledger,
        manifests: ManifestSource,
        signals: Signals,
        repeat_window: float = 3.0,
        turnstile: Turnstile | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        online: RemoteDecider | None = None,
        lane: Lane | None = None,
        shift: Shift | None = None,
    ) -> None:
        self.gate_id = gate_id
        self.online = online
        self.event_id = event_id
        self.checkpoint = checkpoint
        #: What this gate's input scans are: entries, or exits (an exit lane).
        self.kind = kind
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
        #: Open, supervised or closed, by supervisors' signed commands (an open one when not given).
        self.lane = lane or Lane(ledger, manifests, gate_id=gate_id, event_id=event_id, clock=clock)
        #: Every result shown, for its subscribers (the gate screen); a held allow too, as pending.
        self.results: ResultFeed[ScanResult] = ResultFeed(monotonic=monotonic)
        #: Who is signed in by badge, and the refusal a supervisor may override (``gate.staff``).
        self.shift = shift or Shift(idle_s=1800, window_s=60, monotonic=monotonic)
        #: The venue's and zones' capacities, weighed on every admission (docs/CAPACITY.md).
        self.capacity = Capacity(ledger, gate_id, lambda: self.manifests.current, checkpoint.zone)

    def subscribe(self) -> Subscription[ScanResult]:
        """Every result this gate shows from now on, as it is shown (``gate_daemon.gate.feed``)."""
        return self.results.subscribe()

    async def sighted(self, payload: str, *, device: str) -> ScanResult | None:
        """A payload an input decoded; None when it repeats one seen within the window."""
        now = self._monotonic()
        fingerprint = payload_fingerprint(self.event_id, payload)
        key = repeat_key(payload, fingerprint)  # a rotating code's page, not its step's payload
        last = self._seen.get(key)
        self._seen[key] = now
        if last is not None and now - last < self.repeat_window:
            self.volatile["repeats"] += 1
            return None
        if len(self._seen) > _REPEAT_MEMORY:
            self._forget(now)
        armed, self._armed = self._armed, None
        if armed is not None and now < armed[0]:
            result = await self._scan(payload, fingerprint, device, operator=armed[1], kind=ScanKind.EXIT)
            if result.decision.ticket_id is None and self._armed is None:
                # Not a ticket (a stray code in view): the exit still waits for the one that is.
                self._armed = armed
            return result
        return await self._scan(payload, fingerprint, device)

    def arm_exit(self, operator: str, seconds: float) -> None:
        """Make the next input scan of a ticket within ``seconds`` an exit scan made by ``operator``."""
        self._armed = (self._monotonic() + seconds, operator)

    async def release(self, *, device: str, operator: str) -> ScanResult:
        """Release the turnstile by hand: recorded in the evidence log, then shown and pulsed.

        At a closed lane the release is recorded refused (``lane_closed``) and the relay stays locked.
        """
        decision = Decision(Reason.MANUAL_RELEASE, "Released by staff")
        if self.lane.closed:
            decision = _closed(None)
        # No payload, so no fingerprint; decided here, on whatever manifest is active.
        scan = self._scan_of(
            new_scan_id(), "", device, operator, self.kind, route="offline", manifest=self.manifests.current
        )
        try:
            await self.ledger.record_scan(scan, None, lambda _facts: decision)
        except (sqlite3.Error, ValueError, PolicyConflict) as exc:
            # Not recorded, not released: the button is pressed again, or the steward
            # opens the turnstile with its own key, which leaves no gap in the record.
            return self._unrecorded(scan.uuid, f"ledger error: {exc}")
        self._show(decision)
        if self.turnstile is not None and decision.reason is Reason.MANUAL_RELEASE:
            self.turnstile.release(None)
        self.shift.scanned(scan.uuid, decision, self.kind, recorded=True)  # no override after it
        result = ScanResult(scan.uuid, decision)
        self.results.publish(result)
        return result

    def confirm(self, device: str) -> bool:
        """A steward confirms the oldest allow a supervised lane holds: shown, then released.

        False when no allow is waiting (none held, or voided meanwhile).
        """
        held = self.lane.take(device, self._confirmed)
        if held is None:
            return False
        log.info("lane: scan %s confirmed at %s", held.scan_id, device)
        return True

    def _confirmed(self, held: Held) -> None:
        """A held allow's confirmation is in the ledger: shown, then released."""
        self._show(held.decision)
        if self.turnstile is not None:
            self.turnstile.release(held.scan_id)
        self.results.publish(ScanResult(held.scan_id, held.decision))

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
        fingerprint = payload_fingerprint(self.event_id, payload)
        return await self._scan(payload, fingerprint, device, operator=operator, kind=kind, scan_id=scan_id)

    async def _scan(
        self,
        payload: str,
        fingerprint: str,
        device: str,
        *,
        operator: str | None = None,
        kind: ScanKind | None = None,
        scan_id: str | None = None,
    ) -> ScanResult:
        if scan_id is not None:
            # A client's id is made this gate's own: the same id retried at another gate
            # must make another record there, not one that every gate takes for this one.
            client, scan_id = scan_id, gate_scan_id(self.gate_id, scan_id)
            try:
                prior = await self._prior(scan_id, fingerprint)
            except ScanIdReused:
                raise ScanIdReused(f"scan id {client} was recorded for another payload") from None
            if prior is not None:
                return prior
        scan_id = scan_id or new_scan_id()
        if is_badge(payload):
            return await self._badge(payload, fingerprint, device, scan_id)
        operator = operator or self.shift.operator()
        intended = self.lane.supervised
        if intended:
            try:  # before the scan commits: a crash while it is held leaves a trace to void at start
                await self.lane.intend(scan_id)
            except (sqlite3.Error, ValueError) as exc:
                return self._unrecorded(scan_id, f"ledger error: {exc}")
        result = await self._record(payload, fingerprint, device, operator, kind or self.kind, scan_id)
        if self.online is not None and not result.duplicate:
            admitted = result.recorded and result.decision.outcome is Outcome.ALLOW
            self.online.settled(result.scan_id, admitted)
        if not result.duplicate:
            decision = result.decision
            self.shift.scanned(result.scan_id, decision, kind or self.kind, recorded=result.recorded)
            admits = decision.reason is Reason.OK and decision.ticket_id is not None
            if admits and result.recorded and self.lane.supervised and intended:
                self.lane.hold(result.scan_id, decision)  # shown and released once confirmed
                held = replace(result, pending=True)
                self.results.publish(held)  # the screen asks the steward to confirm it
                return held
            self._show(decision)
            if self.turnstile is not None and admits:
                self.turnstile.release(result.scan_id)
            self.results.publish(result)
        if intended:
            await self.lane.forget(scan_id)
        return result

    async def force(
        self,
        payload: str,
        badge: str,
        *,
        device: str,
        operator: str | None = None,
        scan_id: str | None = None,
    ) -> ScanResult:
        """``gatectl scan --force``: the ticket is scanned, and a refusal is put to the badge at once.

        Nothing is admitted by force without a supervisor's badge: ``badge`` is scanned as
        any badge is (verified against the manifest's staff keys), so a steward's is refused.
        The ticket's own result when it was not refused (or not a ticket's refusal). With
        ``scan_id`` (a retried request) the badge's scan has an id made from it, so a retry
        is answered with the override already recorded.
        """
        if not is_badge(badge):
            refused = Decision(Reason.BADGE_INVALID, "Badge refused: not a staff badge")
            return ScanResult(new_scan_id(), refused, recorded=False)
        badge_id = None if scan_id is None else str(uuid.uuid5(_SCAN_IDS, f"force\n{scan_id}"))
        if badge_id is not None:
            fingerprint = payload_fingerprint(self.event_id, badge)
            done = await self._prior(gate_scan_id(self.gate_id, badge_id), fingerprint)
            if done is not None:
                return done
        first = await self.scan(payload, device=device, operator=operator, scan_id=scan_id)
        pending = self.shift.pending
        if pending is None or pending.scan_id != first.scan_id:
            return first
        return await self.scan(badge, device=device, scan_id=badge_id)

    async def _badge(self, payload: str, fingerprint: str, device: str, scan_id: str) -> ScanResult:
        """A staff badge's scan: decided by the shift, recorded as a staff scan (or a forced entry)."""
        manifest = self.manifests.current
        scan = self._scan_of(
            scan_id, fingerprint, device, None, self.kind, route="offline", manifest=manifest
        )
        verdict: BadgeVerdict = self.shift.judge(payload, manifest, scan.wall, closed=self.lane.closed)
        forced = verdict.decision.reason is Reason.OVERRIDDEN
        scan = replace(scan, operator=verdict.decision.staff, kind=ScanKind.ENTRY if forced else self.kind)

        def weighed(_facts: LedgerFacts) -> Decision:
            # A forced entry is weighed like any entry, under the ledger's lock: at a full
            # venue or zone it is refused (venue_full) and admits nobody (docs/CAPACITY.md).
            if not forced:
                return verdict.decision
            return self.capacity.bound(verdict.decision, manifest, ScanKind.ENTRY)

        try:
            recorded = await self.ledger.record_scan(
                scan, verdict.decision.ticket_id if forced else None, weighed
            )
        except (sqlite3.Error, ValueError, PolicyConflict) as exc:
            return self._unrecorded(scan_id, f"ledger error: {exc}")
        if isinstance(recorded, RecordedScan):
            return _duplicate(scan_id, fingerprint, recorded)
        decision = recorded.evidence.decision
        forced = decision.reason is Reason.OVERRIDDEN
        self.shift.settle(replace(verdict, decision=decision), scan.wall)
        self._show(decision)
        if forced and self.turnstile is not None:
            self.turnstile.release(scan_id)
        result = ScanResult(scan_id, decision)
        self.results.publish(result)
        return result

    async def _prior(self, scan_id: str, fingerprint: str) -> ScanResult | None:
        try:
            recorded = await self.ledger.find_scan(scan_id)
        except (sqlite3.Error, ValueError):
            return None
        return None if recorded is None else _duplicate(scan_id, fingerprint, recorded)

    async def _record(
        self, payload: str, fingerprint: str, device: str, operator: str | None, kind: ScanKind, scan_id: str
    ) -> ScanResult:
        # Online-first: the central's word, asked before the ledger is locked (other scans
        # must not wait on the network); None when it did not answer in time.
        remote = None
        if self.online is not None and not self.lane.closed:  # a closed lane refuses without asking
            remote = await self.online.decide(scan_id, payload, kind)
        route: Route = "offline" if remote is None else "online"
        manifest = self.manifests.current
        scan = self._scan_of(scan_id, fingerprint, device, operator, kind, route=route, manifest=manifest)
        found = self._identify(payload, manifest, scan.wall)

        def verdict(facts: LedgerFacts) -> Decision:
            if self.lane.closed:
                return _closed(found)
            if isinstance(found, Decision):
                local = found
            else:
                assert manifest is not None  # identify() answers manifest_missing without one
                local = decide(found, manifest, self.checkpoint, facts, scan.wall, kind)
                local = self.capacity.bound(local, manifest, kind)
            return local if remote is None else _both_allow(local, remote, scan_id)

        ticket_id = found.ticket_id if isinstance(found, Ticket) else None
        try:
            recorded = await self.ledger.record_scan(scan, ticket_id, verdict)
        except PolicyConflict as exc:
            return self._unrecorded(scan_id, str(exc))
        except (sqlite3.Error, ValueError) as exc:
            # ValueError: aiosqlite's answer once the connection is closed (a scan that
            # outlived shutdown's wait).
            return self._unrecorded(scan_id, f"ledger error: {exc}")
        if isinstance(recorded, RecordedScan):
            # The same scan id committed meanwhile (a retried request): that is its answer.
            return _duplicate(scan_id, fingerprint, recorded)
        return ScanResult(scan_id, recorded.evidence.decision)

    def _scan_of(
        self,
        scan_id: str,
        fingerprint: str,
        device: str,
        operator: str | None,
        kind: ScanKind,
        *,
        route: Route,
        manifest: Manifest | None,
    ) -> Scan:
        """The scan as the ledger records it: made now, decided on ``manifest``."""
        return Scan(
            uuid=scan_id,
            wall=self._clock(),
            device=device,
            operator=operator,
            fingerprint=fingerprint,
            kind=kind,
            route=route,
            manifest_version=manifest.version if manifest is not None else None,
        )

    def _identify(self, payload: str, manifest: Manifest | None, wall: float) -> Ticket | Decision:
        try:
            return identify(payload, manifest, wall)
        except ManifestRefused as exc:
            # Only a manifest whose signed body is corrupt gets here: treat as none.
            log.error("the active manifest is unusable (%s); denying scans as manifest_missing", exc)
            return Decision(Reason.MANIFEST_MISSING, "Out of service: the ticket list is unusable")

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


def _duplicate(scan_id: str, fingerprint: str, recorded: RecordedScan) -> ScanResult:
    """A retried scan's answer: what was recorded under its id, if for the same payload."""
    if recorded.fingerprint != fingerprint:
        raise ScanIdReused(f"scan id {scan_id} was recorded for another payload")
    return ScanResult(scan_id, Decision.from_dict(recorded.decision), duplicate=True)


def _closed(found: Ticket | Decision | None) -> Decision:
    """A closed lane's answer to any scan (with the ticket's id, when it named one, for the record)."""
    ticket = found.ticket_id if found is not None else None
    return Decision(Reason.LANE_CLOSED, "Lane closed: please use another gate", ticket_id=ticket)


def _both_allow(local: Decision, remote: Decision, scan_id: str) -> Decision:
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
