"""The gate's configuration as frozen section types: what adapters and services import.

``load.py`` reads and validates a file into these; nothing here reads a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from gate_daemon.core.decision import ScanKind


class InputKind(StrEnum):
    """Where scans come from."""

    STDIN = "stdin"
    IMAGES = "images"
    PICAMERA = "picamera"
    HID = "hid"
    SERIAL = "serial"
    NONE = "none"


class DecoderKind(StrEnum):
    """Which QR decoder reads camera frames and image files."""

    AUTO = "auto"
    ZXING = "zxing"
    ZBAR = "zbar"


class BuzzerKind(StrEnum):
    """A plain (on/off) buzzer or a tonal one driven with PWM."""

    PLAIN = "plain"
    TONAL = "tonal"


class ButtonAction(StrEnum):
    """What the gate's push button does."""

    RELEASE = "release"
    EXIT = "exit"


class SignalsKind(StrEnum):
    """Where decisions are shown."""

    CONSOLE = "console"
    GPIO = "gpio"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class GateSection:
    """Who and where the gate is."""

    id: str
    event: str
    zone: str | None
    session: str | None
    state_dir: Path
    #: What the gate's input scans are, entries or exits (the TOML key ``mode``).
    kind: ScanKind
    repeat_window_ms: int
    #: "local" (the gate decides alone) or "online-first" (the central first, within a deadline).
    decision: str = "local"
    #: A supervised lane's allow waits this long for a steward's confirmation, then is voided.
    confirm_timeout_ms: int = 15000
    #: A signed-in operator (staff badge) is signed out after this long without a scan.
    operator_idle_s: int = 1800
    #: A supervisor's badge overrides a refusal scanned at most this long before it.
    override_window_s: int = 60


@dataclass(frozen=True, slots=True)
class ManifestSection:
    """Where the manifest is dropped and which keys may sign it."""

    path: Path
    trusted_keys: tuple[Path, ...]
    poll_ms: int


@dataclass(frozen=True, slots=True)
class CameraSettings:
    """The Pi camera: the low-resolution stream that is decoded, its rate, focus and exposure."""

    width: int = 640
    height: int = 480
    fps: int = 15
    #: ``continuous`` autofocus, or ``fixed`` at ``focus_cm`` (Camera Module 3; ignored by
    #: fixed-focus cameras).
    focus: str = "continuous"
    focus_cm: int = 25
    #: 0 for automatic exposure, else the exposure time in microseconds.
    exposure_us: int = 0
    #: 0 for automatic gain, else the analogue gain (1.0 to 16.0).
    gain: float = 0.0
    #: Which camera, for a Pi with two.
    index: int = 0
    #: Digital zoom on the sensor (``ScalerCrop``): the centre 1/zoom of the field of view
    #: fills the decoded stream, for more pixels on a code without a larger frame.
    zoom: float = 1.0

    @property
    def lens_position(self) -> float:
        """The libcamera lens position for ``focus_cm``, in dioptres (1 / metres)."""
        return 100.0 / self.focus_cm


@dataclass(frozen=True, slots=True)
class InputSection:
    """The scan input."""

    kind: InputKind
    path: Path | None
    poll_ms: int
    decoder: DecoderKind = DecoderKind.AUTO
    #: The scanner's device node, for kinds ``hid`` and ``serial``.
    device: Path | None = None
    #: Serial line speed, for kind ``serial``.
    baud: int = 9600
    #: Take the HID scanner for the gate alone (no keystrokes reach a console or a desktop).
    grab: bool = True
    camera: CameraSettings = CameraSettings()


@dataclass(frozen=True, slots=True)
class GpioPins:
    """gpiozero pin names (``GPIO17``, ``BOARD11``, or a BCM number) for the outputs."""

    green: str
    red: str
    yellow: str
    buzzer: str | None


@dataclass(frozen=True, slots=True)
class SignalsSection:
    """How decisions are shown."""

    kind: SignalsKind
    color: str
    hold_ms: int
    pins: GpioPins
    buzzer: BuzzerKind = BuzzerKind.PLAIN


@dataclass(frozen=True, slots=True)
class TurnstileSection:
    """The turnstile's relay, its passage sensor and the steward's button (all optional)."""

    relay: str | None = None
    relay_active_low: bool = False
    pulse_ms: int = 1000
    passage: str | None = None
    passage_active_low: bool = True
    pass_timeout_ms: int = 8000
    button: str | None = None
    button_action: ButtonAction = ButtonAction.RELEASE
    button_operator: str = "button"
    exit_arm_ms: int = 10_000

    @property
    def present(self) -> bool:
        """Whether any turnstile device is wired."""
        return any(pin is not None for pin in (self.relay, self.passage, self.button))


@dataclass(frozen=True, slots=True)
class ControlSection:
    """The local control socket."""

    socket: Path


@dataclass(frozen=True, slots=True)
class LanSection:
    """The gate's HTTP API on the venue LAN and its peers; off unless ``listen`` is set."""

    host: str | None = None
    port: int = 0
    #: Requests a second one client may make, on average (bursts of twice as many pass).
    rate: int = 20
    #: This gate's Ed25519 secret key file: with it, the gate shares redemptions.
    key: Path | None = None
    #: Other gates to push to and pull from, as "HOST:PORT".
    peers: tuple[str, ...] = ()
    pull_interval_ms: int = 1000
    timeout_ms: int = 2000
    #: Find peer gates of the same event with zeroconf (``_gate._tcp``) too.
    discover: bool = False

    @property
    def replicates(self) -> bool:
        """Whether the gate shares redemptions with peers (it has a key and listens)."""
        return self.key is not None and self.enabled

    @property
    def enabled(self) -> bool:
        """Whether the gate listens on the LAN at all."""
        return self.host is not None


@dataclass(frozen=True, slots=True)
class UpstreamSection:
    """The central server; off unless ``url`` is set. Times as in ``[upstream]`` (docs/UPSTREAM.md)."""

    url: str | None = None
    timeout_ms: int = 10_000
    batch: int = 500
    push_interval_ms: int = 1000
    pull_interval_ms: int = 5000
    manifest_interval_s: int = 60
    manifest_timeout_s: int = 300
    heartbeat_interval_s: int = 15
    validate_timeout_ms: int = 500
    breaker_latency_ms: int = 300
    breaker_failures: int = 3
    probe_interval_ms: int = 5000
    probes: int = 2
    clock_warn_s: int = 5


@dataclass(frozen=True, slots=True)
class ScreenSection:
    """The gate screen (docs/SCREEN.md): off unless the config has a ``[screen]`` table."""

    host: str | None = None
    port: int = 8080
    #: Whether holders' names are shown (by default only on a loopback address).
    names: bool = False
    #: Whether the steward's manual-entry field scans (by default only on a loopback address).
    manual_entry: bool = False
    #: Whether the steward may confirm a supervised lane's held allow (by default only on loopback).
    confirm: bool = False
    #: Off loopback, the names a request's ``Host`` may give (lowercase; the listen address's first).
    hosts: tuple[str, ...] = ()
    #: Off loopback, the file holding the pairing token the page must send.
    token: Path | None = None

    @property
    def enabled(self) -> bool:
        """Whether the gate serves its screen."""
        return self.host is not None


@dataclass(frozen=True, slots=True)
class GateConfig:
    """A whole, valid gate configuration."""

    source: Path
    gate: GateSection
    manifest: ManifestSection
    input: InputSection
    signals: SignalsSection
    control: ControlSection
    turnstile: TurnstileSection = TurnstileSection()
    lan: LanSection = LanSection()
    upstream: UpstreamSection = UpstreamSection()
    screen: ScreenSection = ScreenSection()

    @property
    def ledger_path(self) -> Path:
        """The ledger's SQLite file."""
        return self.gate.state_dir / "ledger.sqlite"

    @property
    def active_manifest_path(self) -> Path:
        """The gate's private copy of the manifest it has verified and activated."""
        return self.gate.state_dir / "manifest.active"


DEFAULT_PINS = GpioPins(green="GPIO17", red="GPIO27", yellow="GPIO22", buzzer="GPIO23")
