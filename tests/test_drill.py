"""The drill, whole: a venue of real processes in network namespaces, faults, the crowd, the report.

Runs ``gate-drill`` as a user does. Asserts the invariants only (nothing acknowledged lost,
convergence, every provoked double entry reported once at every gate and the central, no
conflict where there was none) and that nothing is left behind: no namespace, veth,
bridge or process. Never a timing. Needs root (namespaces); skipped, saying so, otherwise.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from gate_daemon.drill import network
from tests.gate_process import BIN

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the drill builds network namespaces: it needs root"),
]

GATE_DRILL = BIN / "gate-drill"
#: Bounds a failure only: a drill of about a minute on a loaded two-core machine.
TIMEOUT = 900

SHORT = """\
name = "ci"
description = "CI: the central hangs at the peak, then the LAN splits in two and heals"
duration_s = 60
seed = 11

[crowd]
per_gate = 25
peak_s = 15
spread_s = 12
pace_s = 0.5
screenshot_share = 0.3
screenshot_delay_s = [2, 12]

[[faults]]
kind = "central-down"
how = "hang"
at_s = 8
for_s = 15

[[faults]]
kind = "split"
islands = 2
at_s = 28
for_s = 15
"""


def processes_under(folder: Path) -> list[str]:
    """Processes whose command line names ``folder`` (the venue's gates and central)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(folder) in cmdline:
                found.append(f"{entry.name}: {cmdline}")
    return found


def test_a_short_drill_holds_the_invariants_and_leaves_nothing_behind(tmp_path: Path) -> None:
    scenario = tmp_path / "ci.toml"
    scenario.write_text(SHORT)
    out = tmp_path / "out"
    done = subprocess.run(
        [str(GATE_DRILL), "--scenario", str(scenario), "--gates", "4", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["lost"] == 0, report["lost_records"]
    assert report["converged"]
    assert report["conflicts_mismatched"] == {}
    assert report["conflicts_found"] == report["conflicts_expected"]
    assert set(report["conflicts_found_per_gate"].values()) == {report["conflicts_expected"]}
    assert report["invariants_hold"]
    assert [w["kind"] for w in report["windows"]] == ["central-down", "split"]
    assert report["unanswered"] == 0 and report["scans"] == len(report["scan_log"])
    assert set(report["kpis"]) >= {
        "mode_switch_s",
        "throughput_drop_pct",
        "conflict_rate",
        "sync_restoration_s",
    }
    assert "Invariants hold" in (out / "report.html").read_text()
    assert network.leftovers() == []
    assert processes_under(out) == []


def _start(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    scenario = tmp_path / "long.toml"
    scenario.write_text(SHORT.replace("duration_s = 60", "duration_s = 600"))
    out = tmp_path / "out"
    drill = subprocess.Popen(
        [str(GATE_DRILL), "--scenario", str(scenario), "--gates", "2", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert drill.stdout is not None
    try:
        for line in drill.stdout:
            if "doors open" in line:
                break
        assert drill.poll() is None, "the drill ended before doors-open"
        assert network.leftovers() and processes_under(out)
    except BaseException:
        with drill:
            drill.kill()
        raise
    return drill, out


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_drill_interrupted_tears_its_venue_down(tmp_path: Path, signum: int) -> None:
    drill, out = _start(tmp_path)
    with drill:
        drill.send_signal(signum)
        assert drill.wait(timeout=TIMEOUT) == 130
    assert network.leftovers() == []
    assert processes_under(out) == []


def test_what_a_killed_drill_left_is_swept(tmp_path: Path) -> None:
    drill, out = _start(tmp_path)
    with drill:
        drill.kill()
        drill.wait(timeout=TIMEOUT)
    assert network.leftovers(), "a drill killed outright cannot clean up"
    swept = subprocess.run(
        [str(GATE_DRILL), "--sweep"], capture_output=True, text=True, timeout=120, check=False
    )
    assert swept.returncode == 0, swept.stderr
    assert "removed namespace drl-g1" in swept.stdout
    assert network.leftovers() == []
    deadline = time.monotonic() + 60
    while processes_under(out) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_under(out) == []
