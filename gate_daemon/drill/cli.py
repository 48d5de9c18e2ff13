"""``gate-drill``: a venue's outage drill on one Linux machine (root), with its report.

    gate-drill --scenario central-outage --gates 8 --out /tmp/drill
    gate-drill --list

Builds the venue (``venue.Venue``), waits until every gate holds the manifest, lets the
crowd in (``driver.Driver``) while the scenario's faults come and go
(``faults.Timeline``), waits for the venue to settle, and writes ``OUT/report.json`` and
``OUT/report.html``. Exit 0 when the invariants hold, 2 when they do not, 1 on an error,
130 on Ctrl-C; the venue is torn down in every case. SIGTERM and SIGHUP end a drill as
Ctrl-C does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from gate_daemon.daemon.control import ask
from gate_daemon.drill import network, page
from gate_daemon.drill.crowd import plan_crowd
from gate_daemon.drill.driver import Driver
from gate_daemon.drill.faults import Timeline, skewed_gates
from gate_daemon.drill.report import build_report, settle
from gate_daemon.drill.scenario import Scenario, bundled, load_scenario
from gate_daemon.drill.venue import START_TIMEOUT, DrillError, Venue
from gate_daemon.errors import GateError, run_command

#: How long the drill may run past the scenario's end for the queues to drain.
DRAIN_S = 120.0


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="gate-drill", description="Run an outage drill of a venue in network namespaces."
    )
    p.add_argument("--scenario", help="a bundled scenario's name or a scenario file")
    p.add_argument("--gates", type=int, default=8, help="how many gates (default 8)")
    p.add_argument("--out", type=Path, help="the folder for report.json, report.html and the venue's files")
    p.add_argument("--settle", type=float, default=180.0, help="seconds to wait for convergence at the end")
    p.add_argument("--list", action="store_true", help="list the bundled scenarios")
    p.add_argument(
        "--sweep", action="store_true", help="remove what a drill that was killed left behind, and exit"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run gate-drill; errors become one line on stderr."""
    args = parser().parse_args(argv)
    return run_command(lambda: drill(args))


def drill(args: argparse.Namespace) -> int:
    """The command's work."""
    if args.list:
        for name in bundled():
            print(f"{name}: {load_scenario(name).description}")
        return 0
    if args.sweep:
        network.check_host()
        for line in network.sweep():
            print(f"gate-drill: removed {line}")
        return 0
    if not args.scenario or args.out is None:
        raise GateError("give --scenario NAME|FILE and --out DIR (or --list)")
    scenario = load_scenario(args.scenario)
    plan = plan_crowd(scenario, args.gates)
    args.out.mkdir(parents=True, exist_ok=True)
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        with Venue(args.out / "venue", args.gates, plan, skewed=skewed_gates(scenario, args.gates)) as venue:
            print(f"gate-drill: starting a central and {args.gates} gates", flush=True)
            venue.start()
            _wait_manifests(venue)
            print(
                f"gate-drill: doors open: {len(plan.visits)} visits over {scenario.duration_s:.0f} s",
                flush=True,
            )
            driver, timeline = asyncio.run(_run(scenario, venue))
            print("gate-drill: the crowd is in; waiting for the venue to settle", flush=True)
            holdings, settle_s = settle(venue, args.settle)
            report = build_report(scenario, venue, driver, timeline, holdings, settle_s)
            report["scan_log"] = [scan.as_dict() for scan in driver.scans]
            _write(args.out, report)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    _summary(report, args.out)
    return 0 if report["invariants_hold"] else 2


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


async def _run(scenario: Scenario, venue: Venue) -> tuple[Driver, Timeline]:
    driver = Driver(
        venue.plan,
        {n: venue.socket(n) for n in venue.machines},
        venue.payloads,
        pace_s=scenario.crowd.pace_s,
        seed=scenario.seed,
    )
    timeline = Timeline(scenario, venue, driver)
    crowd = asyncio.create_task(driver.run(scenario.duration_s + DRAIN_S))
    await asyncio.sleep(0)  # the driver sets doors-open before the first fault is timed
    faults = asyncio.create_task(timeline.run())
    try:
        await asyncio.gather(crowd, faults)
    finally:
        crowd.cancel()
        faults.cancel()
    return driver, timeline


def _wait_manifests(venue: Venue) -> None:
    """Until every gate decides with a manifest (fetched from the central at start)."""
    deadline = time.monotonic() + START_TIMEOUT
    waiting = set(venue.machines)
    while waiting:
        for number in sorted(waiting):
            try:
                status = ask(venue.socket(number), {"op": "status"}, timeout=10)["status"]
            except GateError:
                continue
            if status["manifest"]["active"]:
                waiting.discard(number)
        if waiting and time.monotonic() > deadline:
            raise DrillError(f"gates {sorted(waiting)} have no manifest after {START_TIMEOUT:.0f} s")
        time.sleep(0.3)


def _write(out: Path, report: dict[str, Any]) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=1, sort_keys=False) + "\n")
    (out / "report.html").write_text(page.render(report))


def _summary(report: dict[str, Any], out: Path) -> None:
    k = report["kpis"]
    print(
        f"gate-drill: {report['scenario']} at {report['gates']} gates: "
        f"{'invariants hold' if report['invariants_hold'] else 'INVARIANTS BROKEN'}; "
        f"lost {report['lost']}, converged {report['converged']}, "
        f"conflicts {report['conflicts_expected']} expected / {report['conflicts_found']} found; "
        f"mode switch {k['mode_switch_s']} s, throughput drop {k['throughput_drop_pct']} %, "
        f"conflict rate {k['conflict_rate']}, sync restoration {k['sync_restoration_s']} s; "
        f"report in {out / 'report.html'}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
