"""A gate assembled from real parts for in-process tests: a ledger file, a manifest watch, a gate.

Only the signals port is a test double (``RecordingSignals``, which remembers what it was
asked to show). Everything else is the package's own code on real files.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gate_daemon.config.sections import GateConfig
from gate_daemon.core.decision import Checkpoint, Decision, ScanKind
from gate_daemon.daemon import app
from gate_daemon.daemon.systemd import Notifier
from gate_daemon.gate.manifest_watch import ManifestWatch
from gate_daemon.gate.scan import Gate
from gate_daemon.store.ledger import Ledger
from tests.support import EVENT_ID, SAT_START, World

GATE_ID = "north-1"

# Distinct modification times for every file dropped, so the watch (which looks at inode,
# size and mtime) sees each drop as new even when an inode is reused within one clock tick.
_mtimes = itertools.count(1_790_000_000_000_000_000, 1_000_000)


class Clock:
    """A wall clock a test sets by hand (seconds since the epoch)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecordingSignals:
    """Signals that remember every decision shown; ``check`` runs first on each one."""

    def __init__(self, check: Callable[[Decision], None] | None = None) -> None:
        self.shown: list[Decision] = []
        self.service_states: list[str | None] = []
        self.closed = False
        self.check = check
        self.failures: list[BaseException] = []

    def show(self, decision: Decision) -> None:
        if self.check is not None:
            try:
                self.check(decision)
            except BaseException as exc:  # the gate swallows errors from show(); keep them for the test
                self.failures.append(exc)
                raise
        self.shown.append(decision)

    def service(self, problem: str | None) -> None:
        self.service_states.append(problem)

    async def aclose(self) -> None:
        self.closed = True


def drop(path: Path, data: bytes) -> None:
    """Put a manifest file in place the way a tech should: write beside it, then rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    stamp = next(_mtimes)
    os.utime(tmp, ns=(stamp, stamp))
    tmp.replace(path)


def query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows from the ledger file through a separate, plain sqlite3 connection."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql, params).fetchall()


def scalar(db: Path, sql: str, params: tuple[Any, ...] = ()) -> Any:
    """The one value a query returns."""
    return query(db, sql, params)[0][0]


@dataclass
class Rig:
    """A gate on real files, with its parts exposed for assertions."""

    world: World
    dir: Path
    ledger: Ledger
    watch: ManifestWatch
    gate: Gate
    signals: RecordingSignals
    clock: Clock
    mono: Clock

    @property
    def db(self) -> Path:
        return self.ledger.path

    @property
    def drop_path(self) -> Path:
        return self.watch.drop_path

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return query(self.db, sql, params)

    def scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return scalar(self.db, sql, params)


async def make_watch(
    world: World,
    state: Path,
    ledger: Ledger,
    *,
    clock: Callable[[], float],
    zone: str | None = "floor",
    session: str | None = None,
    event_id: str = EVENT_ID,
) -> ManifestWatch:
    """A manifest watch over ``state/drop.gdm`` with its private copy in ``state``."""
    return ManifestWatch(
        drop_path=state / "drop.gdm",
        private_path=state / "manifest.active",
        trusted=world.trusted,
        ledger=ledger,
        event_id=event_id,
        checkpoint=Checkpoint(zone, session),
        clock=clock,
    )


@asynccontextmanager
async def gate_rig(
    world: World,
    state: Path,
    *,
    manifest: bytes | None = b"",
    now: float = SAT_START,
    zone: str | None = "floor",
    kind: ScanKind = ScanKind.ENTRY,
    repeat_window: float = 3.0,
    signals: RecordingSignals | None = None,
    gate_id: str = GATE_ID,
) -> AsyncIterator[Rig]:
    """Open a ledger in ``state``, drop ``manifest`` (the world's v1 unless None), start a gate.

    The gate's wall clock and monotonic clock are ``rig.clock`` and ``rig.mono``.
    """
    state.mkdir(parents=True, exist_ok=True)
    clock = Clock(now)
    mono = Clock(1000.0)
    ledger = await Ledger.open(state / "ledger.sqlite", gate_id)
    try:
        watch = await make_watch(world, state, ledger, clock=clock, zone=zone)
        if manifest is not None:
            drop(watch.drop_path, manifest or world.manifest_bytes)
        await watch.start()
        signals = signals or RecordingSignals()
        gate = Gate(
            gate_id=gate_id,
            event_id=EVENT_ID,
            checkpoint=Checkpoint(zone),
            kind=kind,
            ledger=ledger,
            manifests=watch,
            signals=signals,
            repeat_window=repeat_window,
            clock=clock,
            monotonic=mono,
        )
        yield Rig(world, state, ledger, watch, gate, signals, clock, mono)
    finally:
        await ledger.close()


@asynccontextmanager
async def serving_config(config: GateConfig, *, pin_factory: Any = None) -> AsyncIterator[app.RunningGate]:
    """A whole gate started from ``config`` (``app.start``) and served (``app.serve``) until the block
    ends; it must then stop cleanly (exit status 0)."""
    running = await app.start(config, pin_factory=pin_factory)
    stop = asyncio.Event()
    task = asyncio.create_task(app.serve(running, Notifier(None), stop))
    try:
        yield running
    finally:
        stop.set()
        assert await task == 0
