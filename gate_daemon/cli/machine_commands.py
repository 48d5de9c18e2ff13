"""``gatectl bench`` and ``hwtest``: the gate's machine, measured and walked through.

Both import their suites when run, so the rest of gatectl starts without them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gate_daemon.cli.command_line import positive
from gate_daemon.errors import GateError


def cmd_bench(args: argparse.Namespace) -> int:
    """Run a benchmark and print its figures."""
    if args.suite == "gate":
        from gate_daemon.bench import gate

        return gate.run(args)
    if args.suite == "decode":
        from gate_daemon.bench import decode

        return decode.run(args)
    if args.suite == "peers":
        from gate_daemon.bench import peers

        return peers.run(args)
    if args.suite == "upstream":
        from gate_daemon.bench import upstream

        return upstream.run(args)
    if args.suite == "commands":
        from gate_daemon.bench import commands

        return commands.run(args)
    if args.suite == "reports":
        from gate_daemon.bench import reports

        return reports.run(args)
    if args.suite == "fleet":
        from gate_daemon.bench import fleet

        return fleet.run(args)
    if args.suite == "pretix":
        from gate_daemon.bench import pretix

        return pretix.run(args)
    from gate_daemon.bench import core

    return core.run(args)


def cmd_hwtest(args: argparse.Namespace) -> int:
    """Walk through the gate's lights, buzzer, relay, sensor, button, camera and scanner."""
    from gate_daemon.cli.hwtest import STEPS, run_hwtest
    from gate_daemon.config.load import load_pins_config

    steps = tuple(s.strip() for s in args.only.split(",")) if args.only else STEPS
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise GateError(f"--only: unknown step {', '.join(unknown)} (steps: {', '.join(STEPS)})")
    return run_hwtest(load_pins_config(args.config), steps, args.yes, args.wait)


# ------------------------------------------------------------------- parser


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``bench`` and ``hwtest`` to gatectl's commands."""
    p = sub.add_parser("bench", help="measure the gate's budgets")
    p.add_argument(
        "suite",
        choices=["core", "gate", "decode", "peers", "upstream", "commands", "reports", "fleet", "pretix"],
        help="core: decision and manifests; gate: committed scans; decode: QR decoders on camera frames; "
        "peers: gates sharing redemptions on loopback; upstream: the reference central (drain, "
        "online-first); commands: supervisors' commands verified and applied; "
        "reports: the evidence upload's reads, a ticket's report, an incident report; "
        "fleet: heartbeats and /v1/fleet at the central; "
        "pretix: a real pretix's online redeem beside the gate's own decision",
    )
    p.add_argument("--sizes", default="100000,1000000", help="core: manifest sizes (comma separated)")
    p.add_argument(
        "--rounds",
        type=positive,
        help="decisions, lookups or propagations to time (default: core 20000, gate 2000, peers 1000, "
        "upstream 500, commands 500, pretix 200 tickets; "
        "peers --process: idle scans in each of its three idle phases, 200; "
        "fleet: /v1/fleet reads, 200)",
    )
    p.add_argument("--workdir", type=Path, help="keep generated files here (default: a temp dir)")
    p.add_argument("--frames", type=positive, help="decode: frames of each kind to decode (default 50)")
    p.add_argument(
        "--gates",
        type=positive,
        help="peers: gates sharing redemptions (default 5; with --process, 2 to 17); "
        "fleet: gates (default 200)",
    )
    p.add_argument(
        "--records",
        type=positive,
        help="peers: redemptions made apart, then shared (default 10000; with --process, the feeders' "
        "backlog, 20000); upstream: to drain (default 50000); reports: scans in the evidence log and at the "
        "central (default 50000)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="decode, peers, upstream, commands, reports, pretix: print the figures as JSON",
    )
    p.add_argument(
        "--capacity",
        action="store_true",
        help="gate: give the venue a strict capacity of --rounds places, so every admission weighs it "
        "(docs/CAPACITY.md)",
    )
    p.add_argument(
        "--process",
        action="store_true",
        help="peers: the measured gate as a gate-daemon process of its own, its scans timed while it "
        "learns a backlog from peer processes and drains it to gate-central (--records, default 20000)",
    )
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "hwtest", help="walk through the gate's hardware (stop the gate first: it holds the pins)"
    )
    p.add_argument(
        "--config", type=Path, default=Path("/etc/gate-daemon/gate.toml"), help="the gate's config file"
    )
    p.add_argument(
        "--only", metavar="STEPS", help="comma-separated: lights,buzzer,relay,sensor,button,camera,scanner"
    )
    p.add_argument("--yes", action="store_true", help="answer yes to every question (the relay is released)")
    p.add_argument(
        "--wait", type=positive, default=20, help="seconds to wait for the sensor, button or scanner"
    )
    p.set_defaults(func=cmd_hwtest)
