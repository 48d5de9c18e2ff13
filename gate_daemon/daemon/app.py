"""Wiring and lifecycle of a running gate.

Start: state directory and its lock, trusted keys, signals, ledger, manifest, turnstile,
gate, input, the central's client, button, LAN, control socket; then ``READY=1``. Run:
the input loop, the manifest watch, the watchdog and the status line, as tasks of one
``TaskGroup``. Stop (SIGTERM, SIGINT): ``STOPPING=1``, stop taking scans, let scans in
flight commit, close the ledger.

Every resource is entered on one ``AsyncExitStack`` as it opens, so a start that fails
half-way closes exactly what it opened, in reverse order, and shutdown is that stack
closing. Resources open in the reverse of the order they must close in (see ``start``).

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
import functools
import logging
import os
import signal
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from gate_daemon.config.sections import ButtonAction, GateConfig
from gate_daemon.core import counters
from gate_daemon.core.decision import Checkpoint
from gate_daemon.core.keys import PublicKey
from gate_daemon.core.manifest import Manifest
from gate_daemon.daemon import network
from gate_daemon.daemon.control import ControlServer
from gate_daemon.daemon.status import GateStatus
from gate_daemon.daemon.systemd import Notifier
from gate_daemon.errors import GateError
from gate_daemon.gate.clock import GateClock
from gate_daemon.gate.counts import count_softly
from gate_daemon.gate.lane import Lane
from gate_daemon.gate.manifest_watch import ManifestWatch
from gate_daemon.gate.scan import Gate
from gate_daemon.gate.staff import Shift
from gate_daemon.gate.turnstile import Turnstile
from gate_daemon.hardware.factory import make_button, make_input, make_signals, make_turnstile_pins
from gate_daemon.hardware.ports import Contact, ScanInput, Signals
from gate_daemon.provision.keyfiles import read_public
from gate_daemon.store.conflicts import entry_limit
from gate_daemon.store.ledger import Ledger

if TYPE_CHECKING:
    from gate_daemon.net.lan import LanServer
    from gate_daemon.net.online import OnlineDecider
    from gate_daemon.net.peers import Replicator
    from gate_daemon.net.sync import UpstreamSync

log = logging.getLogger(__name__)

#: How often the one-line status sent to systemd is refreshed.
STATUS_INTERVAL = 15.0
#: How long shutdown waits for the scans in flight to commit and show.
SETTLE_TIMEOUT = 10.0


def trusted_keys(config: GateConfig) -> list[PublicKey]:
    """The manifest signing keys the config names (``KeyFileError`` if one is unusable)."""
    return [read_public(path) for path in config.manifest.trusted_keys]


@dataclass
class RunningGate:
    """Everything a started gate holds, for serving; ``resources`` closes it all."""

    config: GateConfig
    ledger: Ledger
    manifests: ManifestWatch
    gate: Gate
    signals: Signals
    source: ScanInput | None
    status: GateStatus
    #: Closes what ``start`` opened, in shutdown's order.
    resources: contextlib.AsyncExitStack
    turnstile: Turnstile | None = None
    button: Contact | None = None
    lan: LanServer | None = None
    replicator: Replicator | None = None
    #: Scans and releases under way: shutdown lets them commit before the ledger closes.
    in_flight: set[asyncio.Task[Any]] = field(default_factory=set)
    sync: UpstreamSync | None = None
    online: OnlineDecider | None = None


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
    """Open everything the gate needs, in order; raise ``GateError`` naming what failed.

    Each resource goes on the exit stack as it opens, in the reverse of shutdown's order: the control
    socket, the screen (its manual scan under way commits), discovery and the LAN close first (no new
    scans or requests), then the button (no release may start once the gate is stopping), then the
    scans in flight settle, then the central's client (one of them may be asking it), the input, the
    turnstile (its relay locks and its last counters are written while the ledger is open), the
    ledger (a scan still running commits, or not, before the lights go dark), the lights and the
    state directory's lock.
    """
    state = config.gate.state_dir
    try:
        state.mkdir(mode=0o750, parents=True, exist_ok=True)
    except OSError as exc:
        raise GateError(f"cannot create state_dir {state}: {exc.strerror}") from None
    keys = trusted_keys(config)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(os.close, claim_state_dir(state))
        signals = make_signals(config, pin_factory)
        stack.push_async_callback(_quietly, "the signals", signals.aclose)
        # Double entries are judged by the active manifest's entry rules from the first judgement
        # on, the manifest watch's own at start included: ``manifests`` is bound before it starts.
        ledger = await Ledger.open(
            config.ledger_path,
            config.gate.id,
            entries_allowed=lambda ticket_id: entry_limit(manifests.current, ticket_id),
        )
        stack.push_async_callback(ledger.close)
        clock = await GateClock.load(ledger, warn_offset=config.upstream.clock_warn_s)
        stack.push_async_callback(_save_clock, clock, ledger)  # the floor, carried on, kept at the end
        checkpoint = Checkpoint(config.gate.zone, config.gate.session)
        manifests = _manifest_watch(config, keys, ledger, checkpoint, clock)
        await _activate(manifests, clock)
        turnstile = _turnstile(config, ledger, pin_factory, clock)
        if turnstile is not None:
            stack.push_async_callback(_quietly, "the turnstile", turnstile.aclose)
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
            lane=await _lane(config, stack, ledger, manifests, clock),
            shift=Shift(idle_s=config.gate.operator_idle_s, window_s=config.gate.override_window_s),
        )
        unreadable = counters.UNREADABLE_IMAGES
        source = make_input(config, stdin, on_unreadable=lambda: count_softly(ledger, unreadable))
        if source is not None:
            stack.push_async_callback(source.aclose)
        status = GateStatus(config, ledger, manifests, gate, source, clock=clock)
        shared = network.replication(config, ledger, manifests)
        if config.upstream.url is not None and shared is not None:
            client = network.upstream_client(config, shared, clock, keys)
            stack.push_async_callback(_quietly, "the central's client", client.aclose)
            status.sync = await network.upstream_sync(config, client, shared, manifests, clock, status)
            if config.gate.decision == "online-first":
                _online_first(config, status, gate, checkpoint)
        in_flight: set[asyncio.Task[Any]] = set()
        stack.push_async_callback(_settle, in_flight)
        button = make_button(config, pin_factory)
        if button is not None:
            stack.push_async_callback(_quietly, "the button", button.aclose)
        await ledger.recheck_conflicts(clock.now())  # the manifest may have changed while stopped
        lan = await network.serve_lan(config, stack, status, shared) if config.lan.enabled else None
        await network.serve_screen(config, stack, gate, status, clock)
        search = None if status.sync is None else status.sync.client.search
        control = ControlServer(config.control.socket, gate, status.snapshot, search)
        await control.start()
        stack.push_async_callback(control.aclose)  # once it listens: its socket file is ours to remove
        resources = stack.pop_all()
    return RunningGate(
        config, ledger, manifests, gate, signals, source, status, resources, turnstile, button, lan,
        replicator=status.replicator, in_flight=in_flight, sync=status.sync, online=status.online,
    )  # fmt: skip


async def _quietly(what: str, close: Callable[[], Awaitable[None]]) -> None:
    """Close a device or client whose failure to close must not stop the rest from closing."""
    try:
        await close()
    except Exception as exc:
        log.warning("%s did not close cleanly: %r", what, exc)


async def _settle(in_flight: set[asyncio.Task[Any]]) -> None:
    """Let the scans and releases under way commit and show (the input and the button are closed)."""
    if in_flight:
        await asyncio.wait(in_flight, timeout=SETTLE_TIMEOUT)


async def _save_clock(clock: GateClock, ledger: Ledger) -> None:
    """Keep the clock's floor in the ledger; a ledger that cannot take it keeps the last one."""
    with contextlib.suppress(sqlite3.Error, ValueError):
        await clock.save(ledger)


def _manifest_watch(
    config: GateConfig, keys: list[PublicKey], ledger: Ledger, checkpoint: Checkpoint, clock: GateClock
) -> ManifestWatch:
    """The manifest watch, not yet started."""
    return ManifestWatch(
        drop_path=config.manifest.path,
        private_path=config.active_manifest_path,
        trusted=keys,
        ledger=ledger,
        event_id=config.gate.event,
        checkpoint=checkpoint,
        clock=clock.now,
        activated=functools.partial(_bound_clock, clock),
    )


async def _activate(manifests: ManifestWatch, clock: GateClock) -> None:
    """Start the manifest watch: the active manifest is verified and bounds the clock."""
    clock.ceiling = lambda: None if manifests.current is None else float(manifests.current.header.expires_at)
    await manifests.start()
    clock.check()  # what is wrong with the clock, and whether the gate can know the time, said once


def _bound_clock(clock: GateClock, manifest: Manifest) -> None:
    """A manifest became active (at start, dropped, or from the central): it bounds the clock."""
    # A Pi that booted at 1970 decides no earlier than its manifest was made, nor earlier
    # than the times its ledger's records show have passed, up to the manifest's expiry.
    clock.raise_floor(float(manifest.header.issued_at), "manifest")
    clock.remember()


async def _lane(
    config: GateConfig,
    stack: contextlib.AsyncExitStack,
    ledger: Ledger,
    manifests: ManifestWatch,
    clock: GateClock,
) -> Lane:
    """The lane as supervisors last set it (kept in the ledger); commands are timed by the decision clock."""
    lane = Lane(
        ledger,
        manifests,
        gate_id=config.gate.id,
        event_id=config.gate.event,
        confirm_timeout=config.gate.confirm_timeout_ms / 1000,
        clock=clock.now,
    )
    await lane.load()
    stack.push_async_callback(lane.aclose)  # closed before the ledger: its last counts go in
    return lane


def _online_first(config: GateConfig, status: GateStatus, gate: Gate, checkpoint: Checkpoint) -> None:
    """Online-first: the central asked first, unless a supervisor forced the route (as last applied)."""
    assert status.sync is not None
    count = functools.partial(count_softly, status.ledger)
    gate.online = status.online = network.online_decider(config, status.sync, checkpoint, count)
    gate.lane.on_mode = status.online.force
    status.online.force(gate.lane.state.mode_forced)


def _turnstile(config: GateConfig, ledger: Ledger, pin_factory: Any, clock: GateClock) -> Turnstile | None:
    """The turnstile service on the relay and passage sensor the config wires, if any.

    Its voids are stamped with the decision clock's time, as the scans are: the system
    clock may be a day off, and this gate's own records set its floor at the next start.
    """
    pins = make_turnstile_pins(config, pin_factory)
    if pins is None:
        return None
    relay, passage = pins
    return Turnstile(
        ledger, relay, passage, pass_timeout=config.turnstile.pass_timeout_ms / 1000, clock=clock.now
    )


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
    if running.status.clock.now() > manifest.header.expires_at:  # the time decisions use
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
    if section.button_action is ButtonAction.RELEASE and running.gate.confirm("button"):
        return  # a supervised lane's allow was waiting: the press confirmed it
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
            group.create_task(running.gate.lane.run(), name="lane")
            if running.turnstile is not None:
                running.turnstile.start()
                group.create_task(running.turnstile.run(), name="turnstile")
            if running.button is not None:
                running.button.listen(lambda: _button_pressed(running))
            if running.replicator is not None:
                group.create_task(running.replicator.run(), name="peers")
                _ask_for_places(running, running.replicator, group)
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
    """Stop taking scans, let those in flight commit, then close everything (the order: ``start``)."""
    await running.resources.aclose()
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


def _ask_for_places(running: RunningGate, replicator: Replicator, group: asyncio.TaskGroup) -> None:
    """Strict capacity: ask the peers for places when this gate runs low (docs/CAPACITY.md)."""
    desk = running.status.capacity_desk
    if desk is not None:
        group.create_task(desk.run(lambda: replicator.peers), name="capacity")
