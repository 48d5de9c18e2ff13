"""A whole gate started from its config, in process, whose clock is ahead of its system clock: what it
records and how it judges its manifest go by the time it decides with, not by the system clock."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from gate_daemon.config.load import load_config
from gate_daemon.core.reasons import Outcome
from gate_daemon.daemon import app
from tests.gate_fixtures import serving_config
from tests.live import LiveWorld, write_gate_config
from tests.waiting import eventually

TURNSTILE = """
[turnstile]
relay = "GPIO24"
pulse_ms = 100
passage = "GPIO25"
pass_timeout_ms = 500
"""
HOUR = 3600.0


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    made = MockFactory(pin_class=MockPWMPin)
    yield made
    made.close()


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, live: LiveWorld, pins: MockFactory) -> AsyncIterator[app.RunningGate]:
    path = write_gate_config(tmp_path / "gate.toml", live, extra=TURNSTILE)
    async with serving_config(load_config(path, {}), pin_factory=pins) as running:
        yield running


def walls(ledger: Path, sql: str) -> list[float]:
    """The times ``sql`` selects from the ledger's file, as committed so far."""
    with contextlib.closing(sqlite3.connect(ledger)) as conn:
        return [float(row[0]) for row in conn.execute(sql)]


async def test_a_void_is_stamped_with_the_decision_time(
    tmp_path: Path, live: LiveWorld, pins: MockFactory
) -> None:
    async with serving(tmp_path, live, pins) as running:
        ahead = time.time() + HOUR
        running.status.clock.raise_floor(ahead, "central")  # decisions an hour past the system clock
        assert (await running.gate.scan("A100-2", device="test")).decision.outcome is Outcome.ALLOW
        ledger = running.ledger.path
        voids = "SELECT wall FROM redemptions WHERE kind = 'void'"
        await eventually(lambda: walls(ledger, voids))  # nobody passed
    # The void carries the time decisions are made with, as the scan does: never the system clock's.
    (scan,) = walls(ledger, "SELECT wall FROM scans")
    (void,) = walls(ledger, voids)
    assert scan >= ahead and void >= scan


async def test_the_manifest_expires_by_the_decision_time(
    tmp_path: Path, live: LiveWorld, pins: MockFactory
) -> None:
    async with serving(tmp_path, live, pins) as running:
        manifest = running.manifests.current
        assert manifest is not None and app.service_problem(running, True) is None
        assert time.time() < manifest.header.expires_at
        running.status.clock.raise_floor(manifest.header.expires_at + 1, "central")
        assert app.service_problem(running, True) == "the manifest has expired"
        assert (await running.status.snapshot())["manifest"]["expired"] is True


async def test_a_manifest_that_comes_after_start_brings_the_history_floor(
    tmp_path: Path, live: LiveWorld, pins: MockFactory
) -> None:
    drop = tmp_path / "drop.gdm"
    async with serving(tmp_path, live, pins) as running:
        ahead = time.time() + HOUR
        running.status.clock.raise_floor(ahead, "central")
        assert (await running.gate.scan("A100-2", device="test")).decision.outcome is Outcome.ALLOW
        active = running.manifests.private_path
    # Killed before it kept its floor (as by kill -9), then started with no manifest at all:
    # nothing is admitted, and the history has no cap yet.
    with contextlib.closing(sqlite3.connect(running.ledger.path)) as conn, conn:
        conn.execute("DELETE FROM meta WHERE key = 'time_floor'")
    drop.unlink()
    active.unlink()
    async with serving(tmp_path, live, pins) as running:
        clock = running.status.clock
        assert running.manifests.current is None and clock.earliest() < ahead
        drop.write_bytes(live.manifest(1))  # the tech drops it again
        await eventually(lambda: running.manifests.current is not None)
        # The gate's own scan an hour ahead is history it has seen: the floor comes with the manifest.
        assert clock.earliest() >= ahead and clock.floor_source == "history"
