"""Real gates whose system clock is wrong (libfaketime): they decide as the true time would, wherever
their own history or the central's signed time can tell them.

A gate refuses a ticket whose window has ended, at the real time, and loses power (kill -9).
Restarted with its clock at 1970 or a day behind, with no central, it must still refuse a
ticket of that window (its ledger saw that time pass), and time must keep passing for it
(a window that opens a few seconds later opens). A gate whose clock is a day ahead decides
with the central's signed time once it has one: today's tickets in, tomorrow's too early.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from gate_daemon.net.metrics import render
from tests.central_fixtures import CentralWorld
from tests.central_process import CONVERGE, CentralProcess, manifest_version, upstream_config
from tests.faked_clock import faked
from tests.gate_process import Launcher, wait_until
from tests.live import LiveWorld, write_gate_config

DAY = 86400


def outcome(decision: dict[str, Any]) -> tuple[str, str]:
    return decision["outcome"], decision["reason"]


def latest_scan(ledger: Path) -> float:
    """The time of the gate's latest scan, as its evidence log holds it."""
    with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as conn:
        return float(conn.execute("SELECT MAX(wall) FROM scans").fetchone()[0])


@pytest.mark.parametrize("wrong", ["@1970-01-01 00:00:00", "-1d"])
def test_a_gate_rebooted_with_a_wrong_clock_decides_from_its_history(
    live: LiveWorld, launch: Launcher, tmp_path: Path, wrong: str
) -> None:
    config = write_gate_config(tmp_path / "gate.toml", live)
    gate = launch(config)
    ended = int(time.time()) - 5  # the window of these tickets ended five seconds ago
    assert outcome(gate.scan(live.sign("S-0001", valid_until=ended))) == ("deny", "too_late")
    gate.kill()  # the power goes: nothing is saved on the way out

    seen = latest_scan(gate.ledger_path)
    again = launch(config, env=faked(wrong))
    # No central, no network: the gate's own refusal says that time has passed.
    assert outcome(again.scan(live.sign("S-0002", valid_until=ended))) == ("deny", "too_late")
    clock = again.status()["clock"]
    assert clock["source"] == "floor" and clock["floor_source"] == "history"

    # And time passes from there: a window that opens three seconds after that scan opens.
    opens = int(seen) + 3
    wait_until(lambda: again.status()["clock"]["now"] > opens + 0.5, 20, "the gate's time past the opening")
    assert outcome(again.scan(live.sign("S-0003", valid_from=opens))) == ("allow", "ok")


def test_a_gate_a_day_ahead_decides_with_the_centrals_signed_time(
    central_world: CentralWorld, gate_central: CentralProcess, launch: Launcher, tmp_path: Path
) -> None:
    config = upstream_config(central_world, tmp_path / "north-1", gate_central.url)
    gate = launch(config, env=faked("+1d"))
    wait_until(lambda: manifest_version(gate) == 1, CONVERGE, "the central's manifest")
    wait_until(lambda: gate.status()["clock"].get("source") == "central", CONVERGE, "the central's time")

    now = time.time()
    today = central_world.live.sign("S-TODAY", valid_from=int(now - 3600), valid_until=int(now + 3 * 3600))
    tomorrow = central_world.live.sign(
        "S-TOMORROW", valid_from=int(now + DAY - 3600), valid_until=int(now + DAY + 3 * 3600)
    )
    assert outcome(gate.scan(today)) == ("allow", "ok")
    assert outcome(gate.scan(tomorrow)) == ("too_early", "too_early")

    status = gate.status()
    clock = status["clock"]
    assert clock["authenticated"] and clock["known"] and clock["offset_s"] > DAY - 60
    assert "ahead of the central's signed time; deciding with the central's time" in clock["warning"]
    assert 'gate_clock_source{source="central"} 1.0' in render(status).decode()
    assert "this gate cannot know" not in gate.stderr()
