"""The shape of a gate's status snapshot: what status, metrics, the heartbeat and gatectl read.

One snapshot is made at a time by the running gate (``gate_daemon.daemon.status``) and
served as JSON as it is: by the control socket (``gatectl status``), by ``GET /v1/status``
and, in part, in the heartbeat to the central. ``/metrics`` renders the same object. Each
part is a ``TypedDict``, so the JSON is the object itself and a reader that gets it back
(``gatectl``) reads it typed. Times are seconds since 1970 unless a key says otherwise;
instants meant for people are RFC 3339 text.
"""

# No ``from __future__ import annotations``: a TypedDict reads ``NotRequired`` from its
# evaluated annotations at run time (``__optional_keys__``), and strings hide it.
from typing import NotRequired, TypedDict


class RefusalStatus(TypedDict):
    """The last manifest refused, and why."""

    reason: str
    detail: str
    at: str


class ManifestStatus(TypedDict):
    """The active manifest; only ``active`` (False) when there is none."""

    active: bool
    version: NotRequired[int]
    event: NotRequired[str]
    tickets: NotRequired[int]
    issued_at: NotRequired[str]
    age_seconds: NotRequired[int]
    expires_at: NotRequired[str]
    expired: NotRequired[bool]
    last_refusal: NotRequired[RefusalStatus]


class TurnstileStatus(TypedDict):
    """The turnstile's relay and passage sensor."""

    relay: bool
    passage_sensor: bool
    #: Admissions released and not yet seen passing.
    pending: int
    #: Why the passage sensor is not believed, or None.
    problem: str | None


class CameraStatus(TypedDict):
    """What the camera has seen since the input started (``PicameraInput.stats``)."""

    frames: int
    frames_with_code: int
    last_decode_ms: float | None
    brightness: float | None
    opens: int
    camera_errors: int
    decode_errors: int


class InputStatus(TypedDict):
    """The scan input; ``stats`` for the camera only."""

    name: str
    problem: str | None
    stats: NotRequired[CameraStatus]


class LedgerStatus(TypedDict):
    """Where the ledger is, and its epoch (a new one after a reset)."""

    path: str
    epoch: str


class PeerStatus(TypedDict):
    """One link to a peer gate (``[lan] peers`` or discovered)."""

    address: str
    gate: str | None
    up: bool
    #: Seconds since a pull last found nothing more; None before the first.
    lag_seconds: float | None
    last_error: str | None
    pushed: int
    pulled: int
    refused: int
    failures: int
    dropped: int


class CallerStatus(TypedDict):
    """A peer gate that called this one."""

    requests: int
    last_seconds_ago: float
    clock_offset_ms: int


class ReplicationStatus(TypedDict):
    """Sharing redemptions with peer gates (a gate with ``[lan] key``)."""

    problem: str | None
    key: str
    peers: list[PeerStatus]
    callers: dict[str, CallerStatus]
    refused_requests: dict[str, int]
    logs: int
    conflicts: int


class LoopStatus(TypedDict):
    """What one upstream loop last did."""

    ok_at: float | None
    error: str | None
    error_at: float | None
    failures: int


class DownloadStatus(TypedDict):
    """A manifest download under way."""

    bytes: int
    total: int | None
    started_at: float


class UpstreamStatus(TypedDict):
    """Keeping in step with the central (``[upstream]``)."""

    url: str
    up: bool
    pending: int
    cursor: int
    loops: dict[str, LoopStatus]
    pushed: int
    results: dict[str, int]
    pulled: int
    learned: int
    manifests: int
    download: DownloadStatus | None


class SwitchStatus(TypedDict):
    """Online-first's last switch."""

    to: str
    at: float
    why: str
    took_s: float


class OnlineStatus(TypedDict):
    """Online-first's breaker (``decision = "online-first"``)."""

    mode: str
    timeout_ms: float
    switches: dict[str, int]
    offline_seconds: float
    last_switch: SwitchStatus | None
    last_error: str | None
    calls: dict[str, int]
    to_release: int
    released: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None


class ClockStatus(TypedDict):
    """The gate's time and what is known of its error (``gate_daemon.gate.clock``)."""

    now: float
    #: The latest time known to have passed, carried on by the monotonic clock.
    floor: float | None
    floor_source: str | None
    #: The system clock minus the central's (its signed time, or its ``Date``).
    offset_s: float | None
    rtt_s: float | None
    synchronised: bool | None
    warning: str | None
    #: Where decisions take the time from: "system", "central" (its signed time) or "floor".
    source: str
    #: Whether ``offset_s`` comes from the central's signed time.
    authenticated: bool
    #: Seconds since the central's signed time that steers decisions was read; None without one.
    central_age_s: float | None
    #: Whether the gate knows the time (synchronised, or the central's signed time); None: cannot say.
    known: bool | None
    #: Answers of the central whose signed time was missing or did not verify.
    unsigned_answers: int


class PendingStatus(TypedDict):
    """A supervised lane's allow waiting for a steward's confirmation."""

    ticket: str
    #: The allow's reason (``ok``).
    reason: str
    #: When it is voided without a confirmation (unix milliseconds, the decision clock).
    until_ms: int


class LaneStatus(TypedDict):
    """What supervisors set at this gate (``gate_daemon.gate.lane``, docs/COMMANDS.md)."""

    #: "open", "supervised" or "closed".
    state: str
    #: When the lane state was applied here (unix ms); None while never commanded.
    since_ms: int | None
    #: The supervisor whose command set the lane state.
    by: str | None
    #: The one-line message for screens, or None.
    message: str | None
    #: "online" or "offline" when a supervisor forced the decision mode; None: the breaker's.
    mode_forced: str | None
    #: The oldest allow waiting for confirmation, or None.
    pending: PendingStatus | None
    #: Commands refused before their signature verified, by refusal, since the gate started
    #: (kept in memory only: anyone can send them).
    unverified: NotRequired[dict[str, int]]


class StaffStatus(TypedDict):
    """The operator a staff badge signed in at this gate."""

    operator: str
    name: str
    #: "steward" or "supervisor".
    role: str
    #: When they signed in (unix seconds, the gate's clock).
    since: float
    #: Seconds left before they are signed out for idleness.
    idle_left_s: int


class CapacityStatus(TypedDict):
    """One capacity: the venue's (scope ``*``) or a zone's, as this gate counts it."""

    scope: str
    capacity: int
    mode: str
    #: People inside (entries minus exits) from every record this gate holds.
    inside: int
    #: This gate's share of the free places (strict mode); None in count mode.
    share: int | None


class GateSnapshot(TypedDict):
    """The whole status of a running gate."""

    gate: str
    event: str
    zone: str | None
    session: str | None
    mode: str
    decision: str
    input: str
    signals: str
    uptime_seconds: int
    in_service: bool
    problem: str | None
    turnstile: TurnstileStatus | None
    input_state: InputStatus | None
    manifest: ManifestStatus
    ledger: LedgerStatus
    #: Every persisted counter (``gate_daemon.core.counters``).
    counters: dict[str, int]
    #: Counts kept in memory since start (repeats, unrecorded scans).
    since_start: dict[str, int]
    replication: ReplicationStatus | None
    upstream: UpstreamStatus | None
    online: OnlineStatus | None
    clock: ClockStatus
    lane: LaneStatus
    #: Who is signed in by staff badge (``gate_daemon.gate.staff``), or None.
    staff: NotRequired[StaffStatus | None]
    #: Each capacity the manifest sets (docs/CAPACITY.md); absent from older gates.
    capacity: NotRequired[list[CapacityStatus]]
