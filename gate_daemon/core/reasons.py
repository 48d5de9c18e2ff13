"""The decision's vocabulary: what the gate shows (``Outcome``) and why (``Reason``).

The reasons are fixed and documented in docs/DECISIONS.md; each leads to one outcome.
``gate_daemon.core.decision`` gives them, and everything that shows, counts or reports a
decision reads them from here.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """What the gate shows: green, red, or one of the two yellows."""

    ALLOW = "allow"
    DENY = "deny"
    ALREADY_USED = "already_used"
    TOO_EARLY = "too_early"
    #: A staff badge scanned: never a ticket decision, and the relay stays locked.
    STAFF = "staff"


class Reason(StrEnum):
    """Why. The vocabulary is fixed and documented in docs/DECISIONS.md."""

    OK = "ok"
    LANE_CLOSED = "lane_closed"
    INVALID_PAYLOAD = "invalid_payload"
    MANIFEST_MISSING = "manifest_missing"
    MANIFEST_EXPIRED = "manifest_expired"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    WRONG_EVENT = "wrong_event"
    UNKNOWN_TICKET = "unknown_ticket"
    REVOKED = "revoked"
    BLOCKED = "blocked"
    UNPAID = "unpaid"
    CANCELED = "canceled"
    REFUNDED = "refunded"
    WRONG_ZONE = "wrong_zone"
    WRONG_SESSION = "wrong_session"
    TOO_EARLY = "too_early"
    TOO_LATE = "too_late"
    ALREADY_USED = "already_used"
    NOT_INSIDE = "not_inside"
    LEDGER_UNAVAILABLE = "ledger_unavailable"
    MANUAL_RELEASE = "manual_release"
    EXPIRED_CODE = "expired_code"
    # Staff badges (core/badges.py, gate/staff.py): a badge scan is a staff scan, never a ticket's.
    STAFF_SIGNED_IN = "staff_signed_in"
    STAFF_SIGNED_OUT = "staff_signed_out"
    BADGE_INVALID = "badge_invalid"
    BADGE_UNKNOWN_KEY = "badge_unknown_key"
    BADGE_BAD_SIGNATURE = "badge_bad_signature"
    BADGE_WRONG_EVENT = "badge_wrong_event"
    BADGE_REVOKED = "badge_revoked"
    BADGE_NOT_YET_VALID = "badge_not_yet_valid"
    BADGE_EXPIRED = "badge_expired"
    #: A supervisor's badge admitted the person a scan just refused: a forced entry.
    OVERRIDDEN = "overridden"
    OVERRIDE_NOT_SUPERVISOR = "override_not_supervisor"
    OVERRIDE_WINDOW_PASSED = "override_window_passed"
    #: The venue or the ticket's zone holds all it may (``gate_daemon.core.capacity``).
    VENUE_FULL = "venue_full"

    @property
    def outcome(self) -> Outcome:
        """The outcome this reason leads to."""
        if self in (Reason.OK, Reason.MANUAL_RELEASE, Reason.OVERRIDDEN):
            return Outcome.ALLOW
        if self in _STAFF_REASONS:
            return Outcome.STAFF
        if self is Reason.ALREADY_USED:
            return Outcome.ALREADY_USED
        if self in (Reason.TOO_EARLY, Reason.VENUE_FULL):
            # Full is "not now": yellow, like too early; a supervisor's override does not apply.
            return Outcome.TOO_EARLY
        return Outcome.DENY


#: A staff badge's answers (``core.badges``, ``gate.staff``): outcome ``staff``, never a ticket's.
_STAFF_REASONS = frozenset(
    {
        Reason.STAFF_SIGNED_IN, Reason.STAFF_SIGNED_OUT, Reason.BADGE_INVALID, Reason.BADGE_UNKNOWN_KEY,
        Reason.BADGE_BAD_SIGNATURE, Reason.BADGE_WRONG_EVENT, Reason.BADGE_REVOKED,
        Reason.BADGE_NOT_YET_VALID, Reason.BADGE_EXPIRED, Reason.OVERRIDE_NOT_SUPERVISOR,
        Reason.OVERRIDE_WINDOW_PASSED,
    }
)  # fmt: skip
