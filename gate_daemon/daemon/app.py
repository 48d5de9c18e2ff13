"""Wiring and lifecycle of a running gate.

Start: state directory, trusted keys, ledger, manifest, signals, gate, input, control
socket; then ``READY=1``. Run: the input loop, the manifest watch, the watchdog and the
status line, as tasks of one ``TaskGroup``. Stop (SIGTERM, SIGINT): ``STOPPING=1``, stop
taking scans, let scans in flight commit, close the ledger.

The watchdog ping is tied to the scan path: ``WATCHDOG=1`` is sent only after a probe
has gone through the ledger's lock and its database thread, the same road every scan
takes, and only while the input shows life (an input that polls, like the image folder,
reports each round; one that may wait silently for a person, like stdin, does not). A
hung commit or a stuck input stops the pings and systemd restarts the gate.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from gate_daemon.config.sections import ButtonAction, GateConfig, InputKind, SignalsKind
from gate_daemon.core.decision import Checkpoint, Decision
from gate_daemon.core.keys import PublicKey
from gate_daemon.core.times import format_instant, format_span
from gate_daemon.daemon.control import ControlServer
from gate_daemon.daemon.systemd import Notifier
from gate_daemon.errors import GateError
from gate_daemon.gate.clock import GateClock
from gate_daemon.gate.manifest_watch import ManifestWatch
from gate_daemon.gate.scan import Gate
from gate_daemon.gate.turnstile import Turnstile
from gate_daemon.hardware.ports import Contact, Decoder, ScanInput, Signals
from gate_daemon.provision.keyfiles import read_public, read_secret
from gate_daemon.store.conflicts import entry_limit
from gate_daemon.store.ledger import Ledger

if TYPE_CHECKING:
    from gate_daemon.net.discovery import Discovery
    from gate_daemon.net.lan import LanServer
    from gate_daemon.net.online import OnlineDecider, Switch
    from gate_daemon.net.peers import Replicator
    from gate_daemon.net.replication import Replication
    from gate_daemon.net.sync import UpstreamSync

log = logging.getLogger(__name__)

#: How often the one-line status sent to systemd is refreshed.
STATUS_INTERVAL = 15.0


class QuietSignals:
    """Signals for ``kind = "none"``: decisions are recorded and returned, not shown."""

    def show(self, decision: Decision) -> None:
        """Show nothing."""

    def service(self, problem: str | None) -> None:
        """Show nothing."""

    async def aclose(self) -> None:
        """Nothing to release."""


def trusted_keys(config: GateConfig) -> list[PublicKey]:
    """The manifest signing keys the config names (``KeyFileError`` if one is unusable)."""
    return [read_public(path) for path in config.manifest.trusted_keys]


def make_signals(config: GateConfig, pin_factory: Any = None) -> Signals:
    """The signals adapter the config asks for."""
    kind = config.signals.kind
    if kind is SignalsKind.CONSOLE:
        from gate_daemon.hardware.console_signals import ConsoleSignals

        return ConsoleSignals(color=config.signals.color)
    if kind is SignalsKind.GPIO:
        from gate_daemon.hardware.gpio_signals import GpioSignals

        try:
            return GpioSignals(
                config.signals.pins,
                config.signals.hold_ms / 1000,
                buzzer=config.signals.buzzer,
                pin_factory=pin_factory,
            )
        except Exception as exc:  # gpiozero raises its own tree for missing or busy pins
            raise GateError(
                f"cannot drive GPIO pins {config.signals.pins}: {type(exc).__name__}: {exc}"
            ) from None
    return QuietSignals()


def make_turnstile(config: GateConfig, ledger: Ledger, pin_factory: Any = None) -> Turnstile | None:
    """The turnstile's relay and passage sensor, when the config wires them."""
    section = config.turnstile
    if section.relay is None:
        return None
    from gate_daemon.hardware.turnstile_pins import GpioContact, GpioRelay

    relay: GpioRelay | None = None
    try:
        relay = GpioRelay(section.relay, section.pulse_ms / 1000, section.relay_active_low, pin_factory)
        passage = None
        if section.passage is not None:
            passage = GpioContact(section.passage, section.passage_active_low, pin_factory)
    except Exception as exc:  # gpiozero raises its own tree for missing or busy pins
        if relay is not None:
            relay.device.close()
        raise GateError(f"cannot drive the turnstile's pins: {type(exc).__name__}: {exc}") from None
    return Turnstile(ledger, relay, passage, pass_timeout=section.pass_timeout_ms / 1000)


def make_button(config: GateConfig, pin_factory: Any = None) -> Contact | None:
    """The steward's button, when the config wires one."""
    pin = config.turnstile.button
    if pin is None:
        return None
    from gate_daemon.hardware.turnstile_pins import GpioContact

    try:
        return GpioContact(pin, active_low=True, pin_factory=pin_factory)
    except Exception as exc:  # gpiozero raises its own tree for missing or busy pins
        raise GateError(f"cannot read the button on {pin}: {type(exc).__name__}: {exc}") from None


def make_decoder(config: GateConfig) -> Decoder:
    """The QR decoder the config asks for (``GateError`` when its library is missing)."""
    from gate_daemon.hardware.decoders import make_decoder as choose

    return choose(config.input.decoder)


def make_input(
    config: GateConfig,
    stdin: BinaryIO | None = None,
    *,
    on_unreadable: Callable[[], Awaitable[None]] | None = None,
) -> ScanInput | None:
    """The scan input the config asks for (None for ``kind = "none"``)."""
    kind = config.input.kind
    if kind is InputKind.STDIN:
        from gate_daemon.hardware.stdin_input import StdinInput

        return StdinInput(stdin)
    if kind is InputKind.IMAGES:
        from gate_daemon.hardware.image_folder import ImageFolderInput

        assert config.input.path is not None  # the config requires it for this kind
        if not config.input.path.is_dir():
            raise GateError(f"input.path {config.input.path} is not a folder")
        return ImageFolderInput(
            config.input.path,
            config.input.poll_ms / 1000,
            decoder=make_decoder(config),
            on_unreadable=on_unreadable,
        )
    if kind is InputKind.PICAMERA:
        from gate_daemon.hardware.picamera_input import PicameraInput

        return PicameraInput(config.input.camera, make_decoder(config))
    if kind is InputKind.HID:
        from gate_daemon.hardware.hid_scanner import HidScannerInput

        assert config.input.device is not None  # the config requires it for this kind
        return HidScannerInput(config.input.device, grab=config.input.grab)
    if kind is InputKind.SERIAL:
        from gate_daemon.hardware.serial_scanner import SerialScannerInput

        assert config.input.device is not None  # the config requires it for this kind
        return SerialScannerInput(config.input.device, config.input.baud)
    return None


@dataclass
class GateStatus:
    """What ``gatectl status`` and ``systemctl status`` show of a running gate."""

    config: GateConfig
    ledger: Ledger
    manifests: ManifestWatch
    gate: Gate
    source: ScanInput | None = None
    started_at: float = field(default_factory=time.time)
    #: Why the gate is out of service (kept by the service loop), or None.
    problem: str | None = None
    replication: Replication | None = None
    replicator: Replicator | None = None
    clock: GateClock = field(default_factory=GateClock)
    sync: UpstreamSync | None = None
    online: OnlineDecider | None = None

    async def snapshot(self) -> dict[str, Any]:
        """The full status as a JSON-ready object."""
        cfg = self.config
        manifest = self.manifests.current
        now = time.time()
        info: dict[str, Any] = {"active": manifest is not None}
        if manifest is not None:
            header = manifest.header
            info.update(
                version=manifest.version,
                event=manifest.event_id,
                tickets=len(manifest),
                issued_at=format_instant(header.issued_at),
                age_seconds=int(now - header.issued_at),
                expires_at=format_instant(header.expires_at),
                expired=now > header.expires_at,
            )
        if self.manifests.refusal is not None:
            refusal = self.manifests.refusal
            info["last_refusal"] = {
                "reason": refusal.reason,
                "detail": refusal.detail,
                "at": format_instant(refusal.at),
            }
        return {
            "gate": cfg.gate.id,
            "event": cfg.gate.event,
            "zone": cfg.gate.zone,
            "session": cfg.gate.session,
            "mode": cfg.gate.kind.value,
            "decision": cfg.gate.decision,
            "input": cfg.input.kind.value,
            "signals": cfg.signals.kind.value,
            "uptime_seconds": int(now - self.started_at),
            "in_service": self.problem is None,
            "problem": self.problem,
            "turnstile": self._turnstile(),
            "input_state": self._input(),
            "manifest": info,
            "ledger": {"path": str(self.ledger.path), "epoch": self.ledger.epoch},
            "counters": await self.ledger.counters(),
            "since_start": dict(self.gate.volatile),
            "replication": await self._replication(now),
            "upstream": None if self.sync is None else self.sync.status(),
            "online": None if self.online is None else self.online.status(),
            "clock": self.clock.status(),
        }

    async def _replication(self, now: float) -> dict[str, Any] | None:
        replication = self.replication
        if replication is None:
            return None
        callers = {
            seen.gate_id: {
                "requests": seen.requests,
                "last_seconds_ago": round(now - seen.last_at, 3),
                "clock_offset_ms": seen.clock_offset_ms,
            }
            for seen in replication.callers.values()
        }
        return {
            "problem": replication.problem,
            "key": replication.key.public.kid,
            "peers": self.replicator.snapshot() if self.replicator is not None else [],
            "callers": callers,
            "refused_requests": dict(replication.refusals),
            "logs": len(self.ledger.known()),
            "conflicts": await self.ledger.conflict_count(),
        }

    def _input(self) -> dict[str, Any] | None:
        source = self.source
        if source is None:
            return None
        state: dict[str, Any] = {"name": source.name, "problem": source.problem}
        stats = getattr(source, "stats", None)  # the camera counts frames and decode times
        if stats is not None:
            state["stats"] = stats.as_dict()
        return state

    def _turnstile(self) -> dict[str, Any] | None:
        turnstile = self.gate.turnstile
        if turnstile is None:
            return None
        return {
            "relay": True,
            "passage_sensor": turnstile.passage is not None,
            "pending": turnstile.pending,
            "problem": turnstile.problem,
        }

    def line(self) -> str:
        """One line for ``systemctl status``."""
        manifest = self.manifests.current
        gate = self.config.gate
        if manifest is None:
            return f"gate {gate.id}: OUT OF SERVICE, no valid manifest"
        if self.problem is not None:
            return f"gate {gate.id}: OUT OF SERVICE, {self.problem}"
        age = format_span(max(0.0, time.time() - manifest.header.issued_at))
        return f"gate {gate.id} ({gate.kind.value}): manifest v{manifest.version}, {age} old"


@dataclass
class RunningGate:
    """Everything a started gate holds, for serving and shutdown."""

    config: GateConfig
    ledger: Ledger
    manifests: ManifestWatch
    gate: Gate
    signals: Signals
    source: ScanInput | None
    control: ControlServer
    status: GateStatus
    lock: int
    turnstile: Turnstile | None = None
    button: Contact | None = None
    lan: LanServer | None = None
    replicator: Replicator | None = None
    discovery: Discovery | None = None
    in_flight: set[asyncio.Task[Any]] = field(default_factory=set)
    sync: UpstreamSync | None = None
    online: OnlineDecider | None = None


async def count_softly(ledger: Ledger, name: str) -> None:
    """Add one to a counter; a ledger that cannot take it is logged, never fatal."""
    try:
        await ledger.bump([name])
    except (sqlite3.Error, ValueError) as exc:
        log.error("cannot count %s in the ledger: %s", name, exc)


def claim_state_dir(state: Path) -> int:
    """Hold ``state/lock`` for this process: two gates on one ledger would number alike."""
    path = state / "lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o640)
    except OSError as exc:
        raise GateError(f"cannot open {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise GateError(f"another gate-daemon is using state_dir {state}") from None
    return fd


async def start(config: GateConfig, *, stdin: BinaryIO | None = None, pin_factory: Any = None) -> RunningGate:
    """Open everything the gate needs, in order; raise ``GateError`` naming what failed."""
    state = config.gate.state_dir
    try:
        state.mkdir(mode=0o750, parents=True, exist_ok=True)
    except OSError as exc:
        raise GateError(f"cannot create state_dir {state}: {exc.strerror}") from None
    keys = trusted_keys(config)
    lock = claim_state_dir(state)
    try:
        # Double entries are judged by the active manifest's entry rules from the first
        # judgement on, the manifest watch's own at start included: ``manifests`` is bound
        # below, before anything can ask.
        ledger = await Ledger.open(
            config.ledger_path,
            config.gate.id,
            entries_allowed=lambda ticket_id: entry_limit(manifests.current, ticket_id),
        )
    except BaseException:
        os.close(lock)
        raise
    signals: Signals | None = None
    turnstile: Turnstile | None = None
    button: Contact | None = None
    control: ControlServer | None = None
    lan: LanServer | None = None
    replicator: Replicator | None = None
    discovery: Discovery | None = None
    sync: UpstreamSync | None = None
    try:
        clock = await GateClock.load(ledger, warn_offset=config.upstream.clock_warn_s)
        checkpoint = Checkpoint(config.gate.zone, config.gate.session)
        manifests = ManifestWatch(
            drop_path=config.manifest.path,
            private_path=config.active_manifest_path,
            trusted=keys,
            ledger=ledger,
            event_id=config.gate.event,
            checkpoint=checkpoint,
            clock=clock.now,
        )
        await manifests.start()
        if manifests.current is not None:
            # A Pi that booted at 1970 decides no earlier than its manifest was made.
            clock.raise_floor(float(manifests.current.header.issued_at), "manifest")
        clock.ceiling = lambda: (
            None if manifests.current is None else float(manifests.current.header.expires_at)
        )
        signals = make_signals(config, pin_factory)
        turnstile = make_turnstile(config, ledger, pin_factory)
        button = make_button(config, pin_factory)
        gate = Gate(
            gate_id=config.gate.id,
            event_id=config.gate.event,
            checkpoint=checkpoint,
            kind=config.gate.kind,
            ledger=ledger,
            manifests=manifests,
            signals=signals,
            repeat_window=config.gate.repeat_window_ms / 1000,
            turnstile=turnstile,
            clock=clock.now,
        )
        source = make_input(config, stdin, on_unreadable=lambda: count_softly(ledger, "unreadable_images"))
        status = GateStatus(config, ledger, manifests, gate, source, clock=clock)
        replication = _replication(config, ledger, manifests)
        if config.upstream.url is not None and replication is not None:
            sync = await _upstream(config, replication, manifests, clock, status)
            status.sync = sync
            if config.gate.decision == "online-first":
                gate.online = status.online = _online(config, sync, checkpoint, ledger)
        server = ControlServer(
            config.control.socket, gate, status.snapshot, None if sync is None else sync.client.search
        )
        await server.start()
        control = server  # closed (its socket file removed) on a failure only once it is ours
        await ledger.recheck_conflicts(time.time())  # the manifest may have changed while stopped
        if config.lan.enabled:
            # Imported here: aiohttp takes a while to import on a Pi Zero, and a gate
            # without [lan] listen never needs it.
            from gate_daemon.net.lan import LanServer, create_app

            assert config.lan.host is not None
            if replication is not None and (config.lan.peers or config.lan.discover):
                from gate_daemon.net.peers import Replicator

                replicator = Replicator(
                    replication,
                    list(config.lan.peers),
                    pull_interval=config.lan.pull_interval_ms / 1000,
                    timeout=config.lan.timeout_ms / 1000,
                )
                ledger.subscribe(replicator.committed)
            status.replication, status.replicator = replication, replicator
            listening = LanServer(create_app(status.snapshot, rate=config.lan.rate, replication=replication))
            await listening.start(config.lan.host, config.lan.port)
            lan = listening  # closed on a failure only once it listens
            if replication is not None and replication.problem is not None:
                log.warning("replication: %s", replication.problem)
            if replicator is not None and config.lan.discover:
                discovery = await _discovery(config, listening.port, replicator)
    except BaseException:
        if sync is not None:
            await sync.client.aclose()
        if lan is not None:
            await lan.aclose()
        if control is not None:
            await control.aclose()
        for device in (button, turnstile, signals):
            if device is not None:
                with contextlib.suppress(Exception):
                    await device.aclose()
        await ledger.close()
        os.close(lock)
        raise
    return RunningGate(
        config, ledger, manifests, gate, signals, source, server, status, lock, turnstile, button, lan,
        replicator=replicator, discovery=discovery, sync=sync, online=status.online,
    )  # fmt: skip


def _replication(config: GateConfig, ledger: Ledger, manifests: ManifestWatch) -> Replication | None:
    """This gate's side of sharing redemptions, when it has a key."""
    if config.lan.key is None:
        return None
    from gate_daemon.net.replication import Replication

    return Replication(ledger, read_secret(config.lan.key), lambda: manifests.current)


async def _upstream(
    config: GateConfig,
    replication: Replication,
    manifests: ManifestWatch,
    clock: GateClock,
    status: GateStatus,
) -> UpstreamSync:
    """The central's client and the loops that keep the gate and the central in step."""
    # Imported here: a gate without [upstream] never loads httpx.
    import httpx

    from gate_daemon.net.sync import SyncSettings, UpstreamSync
    from gate_daemon.net.upstream import UpstreamClient
    from gate_daemon.store.upstream_marks import UpstreamMarks

    up = config.upstream
    assert up.url is not None
    timeout = up.timeout_ms / 1000
    client = UpstreamClient(
        up.url,
        config.gate.id,
        replication.key,
        client=httpx.AsyncClient(timeout=timeout, trust_env=False),
        timeout=timeout,
        on_date=clock.saw_server,
    )
    settings = SyncSettings(
        batch=up.batch,
        push_interval=up.push_interval_ms / 1000,
        pull_interval=up.pull_interval_ms / 1000,
        manifest_interval=up.manifest_interval_s,
        manifest_timeout=up.manifest_timeout_s,
        heartbeat_interval=up.heartbeat_interval_s,
    )
    marks = await UpstreamMarks.load(replication.ledger)
    return UpstreamSync(
        client,
        replication,
        marks,
        manifests,
        clock,
        settings,
        download_dir=config.gate.state_dir,
        status=status.snapshot,
    )


def _online(config: GateConfig, sync: UpstreamSync, checkpoint: Checkpoint, ledger: Ledger) -> OnlineDecider:
    """Online-first decisions through the central's validate call, behind a breaker."""
    from gate_daemon.net.online import BreakerSettings, OnlineDecider

    up = config.upstream
    settings = BreakerSettings(
        timeout=up.validate_timeout_ms / 1000,
        max_latency=up.breaker_latency_ms / 1000,
        failures=up.breaker_failures,
        probe_interval=up.probe_interval_ms / 1000,
        probes=up.probes,
    )
    counting: set[asyncio.Task[None]] = set()

    def switched(switch: Switch) -> None:
        # Persisted, so fleet ops see every switch even across restarts.
        task = asyncio.get_running_loop().create_task(count_softly(ledger, f"mode_switch:{switch.to}"))
        counting.add(task)
        task.add_done_callback(counting.discard)

    return OnlineDecider(sync.client, checkpoint, settings, on_switch=switched)


async def _discovery(config: GateConfig, port: int, replicator: Replicator) -> Discovery:
    """Announce the gate with zeroconf and link to the roster gates of this event it finds."""
    try:
        from gate_daemon.net.discovery import Discovery
    except ImportError:
        raise GateError(
            "[lan] discover needs zeroconf: pip install 'gate-daemon[discovery]' (or set discover = false)"
        ) from None

    def found(gate_id: str, address: str) -> None:
        roster = replicator.replication.roster() or {}
        if gate_id in roster and replicator.add(gate_id, address):
            log.info("linked to discovered gate %s at %s", gate_id, address)

    assert config.lan.host is not None
    discovery = Discovery(
        gate_id=config.gate.id, event_id=config.gate.event, host=config.lan.host, port=port, found=found
    )
    await discovery.start()
    return discovery


async def _input_loop(running: RunningGate) -> None:
    source = running.source
    if source is None:
        return
    async for payload in source.payloads():
        # Shielded: a shutdown lets the scan commit and show rather than cut it off.
        task = asyncio.ensure_future(running.gate.sighted(payload, device=source.name))
        running.in_flight.add(task)
        task.add_done_callback(running.in_flight.discard)
        await asyncio.shield(task)
    log.info("input %s ended; the gate keeps serving its control socket", source.name)


async def _watchdog(running: RunningGate, notifier: Notifier) -> None:
    interval = notifier.watchdog_interval
    if interval is None:
        return
    period = interval / 3
    while True:
        source = running.source
        alive = source.last_alive if source is not None else None
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation that
            # arrives as the probe answers, and the task group then waits for this forever.
            async with asyncio.timeout(period):
                await running.ledger.ping()
        except (TimeoutError, sqlite3.Error, ValueError) as exc:
            log.error("watchdog: the ledger did not answer (%r); withholding WATCHDOG=1", exc)
        else:
            if alive is not None and time.monotonic() - alive > interval / 2:
                log.error(
                    "watchdog: input %s has shown no life for %.1f s; withholding WATCHDOG=1",
                    source.name if source else "?",
                    time.monotonic() - alive,
                )
            else:
                notifier.watchdog()
        await asyncio.sleep(period)


async def _status_loop(running: RunningGate, notifier: Notifier) -> None:
    while True:
        await asyncio.sleep(STATUS_INTERVAL)
        notifier.status(running.status.line())


#: How often the lights are told whether the gate is in service.
SERVICE_INTERVAL = 1.0
#: Ledger probes in a row that must fail before the gate is out of service for it.
LEDGER_PROBES = 3


def service_problem(running: RunningGate, ledger_ok: bool) -> str | None:
    """Why the gate is out of service now, or None when it can admit people."""
    manifest = running.manifests.current
    if manifest is None:
        return "no valid manifest"
    if time.time() > manifest.header.expires_at:
        return "the manifest has expired"
    if not ledger_ok:
        return "the ledger does not answer"
    source = running.source
    if source is not None and source.problem is not None:
        return f"input {source.name}: {source.problem}"
    return None


async def _service_loop(running: RunningGate) -> None:
    failed = 0  # ledger probes in a row that did not answer within the interval
    while True:
        try:
            async with asyncio.timeout(SERVICE_INTERVAL):  # not wait_for: see _watchdog
                await running.ledger.ping()
            failed = 0
        except (TimeoutError, sqlite3.Error, ValueError):
            failed += 1
        # One slow probe (an SD card stalling an fsync) is not an outage: the lights would
        # flicker out of service while the gate works.
        problem = service_problem(running, ledger_ok=failed < LEDGER_PROBES)
        running.status.problem = problem
        try:
            running.signals.service(problem)
        except Exception:  # a broken light must not stop the gate
            log.exception("signals failed to show the service state")
        await asyncio.sleep(SERVICE_INTERVAL)


def _button_pressed(running: RunningGate) -> None:
    section = running.config.turnstile
    if section.button_action is ButtonAction.EXIT:
        running.gate.arm_exit(section.button_operator, section.exit_arm_ms / 1000)
        log.info("button: the next scan within %d s is an exit", section.exit_arm_ms // 1000)
        return
    task = asyncio.ensure_future(running.gate.release(device="button", operator=section.button_operator))
    running.in_flight.add(task)
    task.add_done_callback(running.in_flight.discard)


async def serve(running: RunningGate, notifier: Notifier, stop: asyncio.Event) -> int:
    """Run a started gate until ``stop`` is set, then close it; the process's exit status."""
    failure: BaseException | None = None
    try:
        async with asyncio.TaskGroup() as group:
            input_task = group.create_task(_input_loop(running), name="input")
            group.create_task(running.manifests.run(running.config.manifest.poll_ms / 1000), name="manifest")
            group.create_task(_watchdog(running, notifier), name="watchdog")
            group.create_task(_status_loop(running, notifier), name="status")
            group.create_task(_service_loop(running), name="service")
            if running.turnstile is not None:
                running.turnstile.start()
                group.create_task(running.turnstile.run(), name="turnstile")
            if running.button is not None:
                running.button.listen(lambda: _button_pressed(running))
            if running.replicator is not None:
                group.create_task(running.replicator.run(), name="peers")
            if running.sync is not None:
                group.create_task(running.sync.run(), name="upstream")
            if running.online is not None:
                group.create_task(running.online.run(), name="online-probe")
            notifier.ready(running.status.line())
            log.info("gate %s ready: %s", running.config.gate.id, running.status.line())
            stopper = group.create_task(stop.wait(), name="stop")
            done, _ = await asyncio.wait({stopper, input_task}, return_when=asyncio.FIRST_COMPLETED)
            if input_task in done and input_task.exception() is None:
                await stopper
            raise _Stop
    except* _Stop:
        pass
    except* Exception as group_error:
        failure = group_error.exceptions[0]
        log.critical("gate stopped by an internal error: %r", failure, exc_info=failure)
    finally:
        notifier.stopping()
        await shutdown(running)
    return 0 if failure is None else 1


class _Stop(Exception):
    """Raised inside the task group to end it on request."""


async def shutdown(running: RunningGate) -> None:
    """Stop taking scans, let those in flight commit, then close everything."""
    await running.control.aclose()
    if running.discovery is not None:
        await running.discovery.aclose()
    if running.lan is not None:
        await running.lan.aclose()
    if running.button is not None:  # no release may start once the gate is stopping
        with contextlib.suppress(Exception):
            await running.button.aclose()
    if running.in_flight:
        await asyncio.wait(running.in_flight, timeout=10)
    if running.sync is not None:  # after the scans in flight: one may be asking the central
        with contextlib.suppress(Exception):
            await running.sync.client.aclose()
        with contextlib.suppress(sqlite3.Error, ValueError):
            await running.status.clock.save(running.ledger)
    if running.source is not None:
        await running.source.aclose()
    # The relay locks (after a pulse under way ends) before the ledger closes: its last
    # counters are written, and no release can follow a scan that could not be recorded.
    if running.turnstile is not None:
        with contextlib.suppress(Exception):
            await running.turnstile.aclose()
    # The ledger before the lights: a scan still running commits (or not) before they go dark.
    await running.ledger.close()
    with contextlib.suppress(Exception):
        await running.signals.aclose()
    os.close(running.lock)
    log.info("gate %s stopped", running.config.gate.id)


async def run(config: GateConfig, notifier: Notifier | None = None) -> int:
    """Start the gate and serve until SIGTERM or SIGINT; the process's exit status.

    The signal handlers are in place before anything is opened: a stop asked for during
    a slow start (a large manifest to verify) ends the gate cleanly once it is up.
    """
    notifier = notifier or Notifier()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    stops = (signal.SIGTERM, signal.SIGINT)
    for signum in stops:
        loop.add_signal_handler(signum, stop.set)
    try:
        running = await start(config)
        if stop.is_set():
            notifier.stopping()
            await shutdown(running)
            return 0
        return await serve(running, notifier, stop)
    finally:
        for signum in stops:
            loop.remove_signal_handler(signum)
