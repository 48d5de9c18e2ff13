"""Fixtures: a demo event's keys, event.toml, tickets.csv and signed manifest, as real files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from gate_daemon.net import peers
from tests.browser import chromium, page  # noqa: F401  (fixtures: pages in Debian's Chromium)
from tests.central_fixtures import CentralWorld
from tests.central_process import CentralProcess, numbered_central_world
from tests.fleet_fixtures import venue  # noqa: F401  (fixture: a central and gates that beat to it)
from tests.gate_process import Launcher, launcher
from tests.live import LiveWorld, make_live_world
from tests.loop_thread import LoopThread
from tests.pretix_server import pretix  # noqa: F401  (fixture: a real pretix, seeded)
from tests.support import World, make_world

# Property tests: 300 examples each keeps the suite fast; HYPOTHESIS_PROFILE=deep for a long hunt.
settings.register_profile("default", max_examples=300, deadline=None)
settings.register_profile("deep", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def world(tmp_path: Path) -> World:
    """Everything for one event in this test's own tmp_path (safe to modify)."""
    return make_world(tmp_path)


@pytest.fixture(scope="session")
def shared_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The same, built once per run: for read-only use (decision tables, hypothesis)."""
    return make_world(tmp_path_factory.mktemp("shared"))


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    """Start gate-daemon processes; whatever still runs at the end of the test is killed."""
    yield from launcher(tmp_path)


@pytest.fixture
def live(tmp_path: Path) -> LiveWorld:
    """An event around the real clock, with manifest version 1 dropped where a gate looks for it."""
    world = make_live_world(tmp_path / "world")
    (tmp_path / "drop.gdm").write_bytes(world.manifest(1))
    return world


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    """An event loop on a thread of its own, for servers and links that serve while the test blocks."""
    with LoopThread() as thread:
        yield thread


@pytest.fixture
def central_world(tmp_path: Path) -> CentralWorld:
    """The reference central's files: roster north-1 and south-1, numbered tickets (not started)."""
    return numbered_central_world(tmp_path / "central")


@pytest.fixture
def gate_central(central_world: CentralWorld, tmp_path: Path) -> Iterator[CentralProcess]:
    """``gate-central`` serving ``central_world`` on 127.0.0.1; stopped (resumed first) at the end."""
    with CentralProcess(central_world.config_path, tmp_path).start() as central:
        yield central


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry a failing peer link within a third of a second rather than five: a state machine's
    example heals many links."""
    monkeypatch.setattr(peers, "MAX_BACKOFF", 0.3)
