"""Who works this gate: staff badges signing in and out, and a supervisor's override.

A staff badge (``gate_daemon.core.badges``) scanned at the gate is a staff scan, never a
ticket's: ``Shift.judge`` decides it, the gate records it in the evidence log (outcome
``staff``; the relay never opens for it) and ``Shift.settle`` applies it once committed:

* a badge that verifies signs its holder in: every later scan here is recorded with that
  operator, until another badge signs in, the same badge is scanned again (sign-out) or
  no scan was made for ``idle_s`` seconds;
* a supervisor's badge within ``window_s`` of an entry refused with ``deny`` or
  ``already_used`` (the last scan here, of a ticket) admits that person instead: a forced
  entry (``overridden``) recorded with the supervisor, naming the refused scan, its
  outcome and reason. A steward's badge then is refused (``override_not_supervisor``), a
  supervisor's after the window too (``override_window_passed``); either way nobody is
  admitted and the refusal is no longer pending, so the next scan of a badge signs in.
  ``override_window_passed`` is the answer only for ``OVERRIDE_GRACE_S`` after the window:
  later the refusal is forgotten and a badge is a sign-in (a shift change hours on).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gate_daemon.core.badges import BadgeClaims, BadgeError, Role, check_badge
from gate_daemon.core.decision import Decision, ScanKind
from gate_daemon.core.manifest import Manifest
from gate_daemon.core.reasons import Outcome, Reason
from gate_daemon.core.snapshot import StaffStatus


@dataclass(frozen=True, slots=True)
class OnDuty:
    """The operator signed in at this gate, from their badge."""

    operator: str
    name: str
    role: Role
    #: When they signed in (the gate's wall clock).
    since: float


@dataclass(frozen=True, slots=True)
class Refusal:
    """The last scan here, when it refused a ticket's entry a supervisor may override."""

    scan_id: str
    decision: Decision
    at: float  # monotonic


@dataclass(frozen=True, slots=True)
class BadgeVerdict:
    """A badge scan's decision and the claims it was decided on (None when the badge was refused)."""

    decision: Decision
    claims: BadgeClaims | None


#: After the window, how long a badge is still told ``override_window_passed`` (a supervisor
#: who came for that refusal, a little late) before the refusal is forgotten and a badge signs in.
OVERRIDE_GRACE_S = 120.0

_OVERRIDABLE = (Outcome.DENY, Outcome.ALREADY_USED)
#: Refusals that are the gate's, not the ticket's: no supervisor's badge admits through them.
_NOT_OVERRIDABLE = (Reason.LANE_CLOSED, Reason.LEDGER_UNAVAILABLE, Reason.MANIFEST_MISSING)


#: A badge's answers to a pending refusal: each spends it.
_SPENT = (
    Reason.OVERRIDDEN,
    Reason.OVERRIDE_NOT_SUPERVISOR,
    Reason.OVERRIDE_WINDOW_PASSED,
    Reason.LANE_CLOSED,
)


class Shift:
    """The staff state of one gate: who is signed in, and the refusal a supervisor may override."""

    def __init__(
        self, *, idle_s: float, window_s: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.idle_s = idle_s
        self.window_s = window_s
        self._monotonic = monotonic
        self._on_duty: OnDuty | None = None
        self._last_scan = 0.0
        self._refusal: Refusal | None = None

    @property
    def on_duty(self) -> OnDuty | None:
        """Who is signed in now (None once idle for ``idle_s``)."""
        if self._on_duty is not None and self._monotonic() - self._last_scan >= self.idle_s:
            self._on_duty = None
        return self._on_duty

    def status(self) -> StaffStatus | None:
        """Who is signed in, for the status snapshot (and the screen's strip)."""
        on_duty = self.on_duty
        if on_duty is None:
            return None
        left = self.idle_s - (self._monotonic() - self._last_scan)
        return {
            "operator": on_duty.operator,
            "name": on_duty.name,
            "role": on_duty.role.value,
            "since": on_duty.since,
            "idle_left_s": max(0, int(left)),
        }

    def operator(self) -> str | None:
        """The operator a scan made now is recorded with; the scan keeps them signed in."""
        on_duty = self.on_duty
        self._last_scan = self._monotonic()
        return on_duty.operator if on_duty is not None else None

    def scanned(self, scan_id: str, decision: Decision, kind: ScanKind, *, recorded: bool) -> None:
        """A ticket's scan was shown: an entry it refused may be overridden; anything else ends that."""
        overridable = (
            recorded
            and kind is ScanKind.ENTRY
            and decision.ticket_id is not None
            and decision.outcome in _OVERRIDABLE
            and decision.reason not in _NOT_OVERRIDABLE
        )
        self._refusal = Refusal(scan_id, decision, self._monotonic()) if overridable else None

    @property
    def pending(self) -> Refusal | None:
        """The refusal a badge scanned now answers, if any: in the window, or in the grace after it.

        Once the window and ``OVERRIDE_GRACE_S`` have passed the refusal is forgotten: nobody
        came for it, and the next badge is a sign-in, not a late override.
        """
        refusal = self._refusal
        if refusal is not None and self._monotonic() - refusal.at > self.window_s + OVERRIDE_GRACE_S:
            self._refusal = refusal = None
        return refusal

    def judge(
        self, payload: str, manifest: Manifest | None, wall: float, *, closed: bool = False
    ) -> BadgeVerdict:
        """A badge scan's decision: refused, an override (or its refusal), a sign-in or a sign-out.

        ``closed``: the lane is closed (a supervisor's command), so an override admits nobody.
        """
        if manifest is None:
            return BadgeVerdict(
                Decision(Reason.BADGE_INVALID, "Badge refused: this gate has no valid manifest"), None
            )
        header = manifest.header
        try:
            claims = check_badge(
                payload,
                staff_keys=header.staff_keys,
                revoked=header.revoked_staff,
                event_tag=manifest.event_tag,
                now=wall,
            )
        except BadgeError as exc:
            return BadgeVerdict(Decision(Reason(exc.refusal.value), exc.detail), None)
        refusal = self.pending
        if refusal is not None:
            return BadgeVerdict(self._override(refusal, claims, closed), claims)
        on_duty = self.on_duty
        if on_duty is not None and on_duty.operator == claims.operator:
            return BadgeVerdict(
                Decision(
                    Reason.STAFF_SIGNED_OUT,
                    f"Signed out: {claims.name}",
                    staff=claims.operator,
                    staff_name=claims.name,
                ),
                claims,
            )
        return BadgeVerdict(
            Decision(
                Reason.STAFF_SIGNED_IN,
                f"Signed in: {claims.name}",
                staff=claims.operator,
                staff_name=claims.name,
            ),
            claims,
        )

    def _override(self, refusal: Refusal, claims: BadgeClaims, closed: bool) -> Decision:
        refused = refusal.decision
        if closed:
            return Decision(
                Reason.LANE_CLOSED,
                "Lane closed: nobody is admitted here, not even by a supervisor",
                ticket_id=refused.ticket_id,
                staff=claims.operator,
                staff_name=claims.name,
            )
        ago = self._monotonic() - refusal.at
        if ago > self.window_s:
            return Decision(
                Reason.OVERRIDE_WINDOW_PASSED,
                f"Override refused: the refusal was {ago:.0f} s ago, more than {self.window_s:.0f} s",
                ticket_id=refused.ticket_id,
                staff=claims.operator,
                staff_name=claims.name,
            )
        if claims.role is not Role.SUPERVISOR:
            return Decision(
                Reason.OVERRIDE_NOT_SUPERVISOR,
                f"Override refused: {claims.name} is a steward; only a supervisor can override",
                ticket_id=refused.ticket_id,
                staff=claims.operator,
                staff_name=claims.name,
            )
        return Decision(
            Reason.OVERRIDDEN,
            f"Admitted by supervisor {claims.name} (was {refused.reason.value})",
            ticket_id=refused.ticket_id,
            session=refused.session,
            zone=refused.zone,
            overrides=refusal.scan_id,
            overridden_outcome=refused.outcome.value,
            overridden_reason=refused.reason.value,
            staff=claims.operator,
            staff_name=claims.name,
        )

    def settle(self, verdict: BadgeVerdict, wall: float) -> None:
        """A badge scan is committed: sign in or out, and the pending refusal is spent."""
        reason, claims = verdict.decision.reason, verdict.claims
        if reason in _SPENT:
            self._refusal = None
        elif reason is Reason.STAFF_SIGNED_IN and claims is not None:
            self._on_duty = OnDuty(claims.operator, claims.name, claims.role, wall)
            self._last_scan = self._monotonic()
        elif reason is Reason.STAFF_SIGNED_OUT:
            self._on_duty = None
