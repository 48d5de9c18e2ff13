"""The gate's network side, built from its config: replication, the LAN API, peers, the central.

``gate_daemon.daemon.app.start`` calls these in order and owns their closing: what
listens or holds connections is entered on its exit stack as soon as it is open. The
libraries are imported inside: aiohttp takes a while to import on a Pi Zero and httpx
is not needed by a gate without ``[upstream]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from gate_daemon.config.sections import GateConfig
from gate_daemon.core.counters import Family, labelled
from gate_daemon.core.decision import Checkpoint
from gate_daemon.core.keys import PublicKey
from gate_daemon.daemon.status import GateStatus
from gate_daemon.errors import GateError
from gate_daemon.gate.clock import GateClock
from gate_daemon.gate.manifest_watch import ManifestWatch
from gate_daemon.provision.keyfiles import read_secret
from gate_daemon.store.ledger import Ledger

if TYPE_CHECKING:
    from gate_daemon.gate.scan import Gate
    from gate_daemon.net.discovery import Discovery
    from gate_daemon.net.lan import LanServer
    from gate_daemon.net.online import OnlineDecider, Switch
    from gate_daemon.net.peers import Replicator
    from gate_daemon.net.replication import Replication
    from gate_daemon.net.sync import UpstreamSync
    from gate_daemon.net.upstream import UpstreamClient

log = logging.getLogger(__name__)


def replication(config: GateConfig, ledger: Ledger, manifests: ManifestWatch) -> Replication | None:
    """This gate's side of sharing redemptions, when it has a key."""
    if config.lan.key is None:
        return None
    from gate_daemon.net.replication import Replication

    return Replication(ledger, read_secret(config.lan.key), lambda: manifests.current)


async def serve_lan(
    config: GateConfig,
    stack: contextlib.AsyncExitStack,
    status: GateStatus,
    shared: Replication | None,
) -> LanServer:
    """The LAN API listening on ``[lan] listen``, with the peer links and discovery it asks for."""
    from gate_daemon.net.lan import LanServer, create_app

    assert config.lan.host is not None
    replicator = None
    if shared is not None:  # peers: [lan] peers, else the manifest's roster addresses; discovered ones too
        from gate_daemon.net.peers import Replicator

        replicator = Replicator(
            shared,
            list(config.lan.peers),
            pull_interval=config.lan.pull_interval_ms / 1000,
            timeout=config.lan.timeout_ms / 1000,
            roster_peers=not config.lan.peers,
        )
        status.ledger.subscribe(replicator.committed)
    status.replication, status.replicator = shared, replicator
    desk = None
    if shared is not None:
        from gate_daemon.net.capacity import CapacityDesk

        desk = CapacityDesk(shared, status.gate.capacity, lambda: status.manifests.current)
        status.capacity_desk = desk
    app = create_app(
        status.snapshot, rate=config.lan.rate, replication=shared, lane=status.gate.lane, capacity=desk
    )
    listening = LanServer(app)
    await listening.start(config.lan.host, config.lan.port)
    stack.push_async_callback(listening.aclose)  # once it listens: a failed start cleans up itself
    if shared is not None and shared.problem is not None:
        log.warning("replication: %s", shared.problem)
    if replicator is not None and config.lan.discover:
        discovery = await _discovery(config, listening.port, replicator)
        stack.push_async_callback(discovery.aclose)
    return listening


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


def upstream_client(
    config: GateConfig, shared: Replication, clock: GateClock, trusted: list[PublicKey]
) -> UpstreamClient:
    """The central's client, signing with the gate's key; its answers' time (signed, checked with
    ``trusted``, else their ``Date``) feeds the clock."""
    import httpx

    from gate_daemon.net.upstream import UpstreamClient

    up = config.upstream
    assert up.url is not None
    timeout = up.timeout_ms / 1000
    return UpstreamClient(
        up.url,
        config.gate.id,
        shared.key,
        client=httpx.AsyncClient(timeout=timeout, trust_env=False),
        timeout=timeout,
        on_date=clock.saw_server,
        trusted=trusted,
        on_signed_time=clock.saw_signed_time,
        on_unsigned=clock.unsigned_answer,
    )


async def upstream_sync(
    config: GateConfig,
    client: UpstreamClient,
    shared: Replication,
    manifests: ManifestWatch,
    clock: GateClock,
    status: GateStatus,
) -> UpstreamSync:
    """The loops that keep the gate and the central in step."""
    from gate_daemon.net.sync import SyncSettings, UpstreamSync
    from gate_daemon.store.upstream_marks import UpstreamMarks

    up = config.upstream
    settings = SyncSettings(
        batch=up.batch,
        push_interval=up.push_interval_ms / 1000,
        pull_interval=up.pull_interval_ms / 1000,
        manifest_interval=up.manifest_interval_s,
        manifest_timeout=up.manifest_timeout_s,
        heartbeat_interval=up.heartbeat_interval_s,
    )
    marks = await UpstreamMarks.load(shared.ledger)
    sync = UpstreamSync(
        client,
        shared,
        marks,
        manifests,
        clock,
        settings,
        download_dir=config.gate.state_dir,
        status=status.snapshot,
    )
    sync.lane = status.gate.lane  # supervisors' commands in the heartbeat's answers
    return sync


def online_decider(
    config: GateConfig,
    sync: UpstreamSync,
    checkpoint: Checkpoint,
    count: Callable[[str], Coroutine[Any, Any, None]],
) -> OnlineDecider:
    """Online-first decisions through the central's validate call, behind a breaker.

    ``count`` persists a counter: every switch is counted, so fleet ops see them all
    across restarts.
    """
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
        name = labelled(Family.MODE_SWITCH, switch.to)
        task = asyncio.get_running_loop().create_task(count(name))  # kept: the loop holds tasks weakly
        counting.add(task)
        task.add_done_callback(counting.discard)

    return OnlineDecider(sync.client, checkpoint, settings, on_switch=switched)


async def serve_screen(
    config: GateConfig, stack: contextlib.AsyncExitStack, gate: Gate, status: GateStatus, clock: GateClock
) -> None:
    """The gate screen listening on ``[screen] listen`` (docs/SCREEN.md), if the config has one.

    The port it listens on goes into ``status.screen_port``.
    """
    section = config.screen
    if section.host is None:
        return
    from gate_daemon.config.screen import is_loopback
    from gate_daemon.net.screen import Screen, ScreenServer, ScreenSettings, create_app, read_token

    settings = ScreenSettings(
        hold_ms=config.signals.hold_ms,
        names=section.names,
        manual_entry=section.manual_entry,
        confirm=section.confirm,
        loopback=is_loopback(section.host),
        hosts=frozenset(section.hosts),
        token=None if section.token is None else read_token(section.token),
    )
    server = ScreenServer(create_app(Screen(gate, status.snapshot, clock.now, settings)))
    await server.start(section.host, section.port)
    stack.push_async_callback(server.aclose)  # once it listens: a failed start cleans up itself
    status.screen_port = server.port
    log.info("gate screen on http://%s:%d/screen", section.host, server.port)
