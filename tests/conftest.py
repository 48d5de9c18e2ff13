"""Fixtures: a demo event's keys, event.toml, tickets.csv and signed manifest, as real files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.gate_process import Launcher, launcher
from tests.live import LiveWorld, make_live_world
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
