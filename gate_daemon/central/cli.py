"""``gate-central``: run the reference central server, check its config, report what it holds.

    gate-central --config FILE                 serve until SIGTERM or SIGINT
    gate-central check-config FILE             validate the config and the event's inputs
    gate-central report --config FILE [--json] check-ins, conflicts, gates' heartbeats
    gate-central report ticket ID --config FILE [--json|--csv]   a ticket at every gate
    gate-central report incident --from T --to T --config FILE -o incident.html [--json]
    gate-central token --gate ID [--zone Z] [--valid 24h] --config FILE   a one-time enrollment token
    gate-central gates [--remove ID] --config FILE                         the roster, how each joined

Errors are one ``ErrorName: message`` (a config's problems follow, one a line) and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gate_daemon.core.times import format_instant
from gate_daemon.errors import GateError, run_command
from gate_daemon.provision.event import load_event
from gate_daemon.provision.keyfiles import read_secret
from gate_daemon.provision.tickets import load_tickets
from gate_daemon.store.central.checkin_book import read_report
from gate_daemon.store.central.reports import read_overrides

from .config import CentralConfig, load_central_config
from .enroll_cli import add_enroll_commands
from .report_commands import cmd_report_incident, cmd_report_ticket

log = logging.getLogger("gate_daemon.central")


async def serve(config: CentralConfig, stop: asyncio.Event | None = None) -> None:
    """Serve ``config`` until ``stop`` is set (by SIGTERM or SIGINT when not given)."""
    from aiohttp import web  # imported here: check-config and report never need it

    from .app import CENTRAL, create_app

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(create_app(config), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise GateError(
                f"cannot listen on {config.host}:{config.port} ([central] listen): {exc.strerror or exc}"
            ) from None
        host, port = next(iter(runner.addresses))[:2]
        latest = runner.app[CENTRAL].book.latest
        version = latest.version if latest is not None else "none"
        print(f"gate-central {config.id}: serving http://{host}:{port} (manifest {version})", flush=True)
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the server."""
    if args.config is None:
        raise GateError("give --config FILE (or a command: check-config, report)")
    config = load_central_config(args.config)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    asyncio.run(serve(config))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate a config file and the inputs it names, without starting anything."""
    config = load_central_config(args.file)
    read_secret(config.key)
    if config.source is not None:
        venue = load_event(config.event, venue=True)
        source = config.source
        kept = (config.state_dir / "pretix-device.json").is_file()
        if not kept and not source.init_token.is_file():
            raise GateError(f"{source.init_token}: no initialization token file ([source] init_token)")
        zones = ", ".join(f"{zone} = list {list_id}" for zone, list_id in source.lists)
        print(
            f"ok: {args.file}: central {config.id} on {config.host}:{config.port},"
            f" event {venue.event_id} from pretix {source.url} {source.organizer}/{source.event} ({zones}),"
            f" {len(venue.gates)} gates in the roster"
        )
        return 0
    event = load_event(config.event)
    tickets = load_tickets(config.tickets, event)
    print(
        f"ok: {args.file}: central {config.id} on {config.host}:{config.port}, event {event.event_id}, "
        f"{len(tickets)} tickets, {len(event.gates)} gates in the roster"
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Print what the central's database holds, a ticket's history or an incident report."""
    if args.what == "ticket":
        return cmd_report_ticket(args)
    if args.what == "incident":
        return cmd_report_incident(args)
    if args.ticket_id is not None or args.csv or args.output or args.period_from or args.period_to:
        raise GateError("report without ticket or incident takes only --config and --json")
    config = load_central_config(args.config)
    report = read_report(config.database)
    report["overrides"] = [row.as_dict() for row in read_overrides(config.database)]
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
        return 0
    _print_report(report)
    return 0


def _print_report(report: dict[str, Any]) -> None:
    manifest = report["manifest"]
    if manifest is None:
        print("manifest   none built")
    else:
        print(
            f"manifest   {manifest['event_id']} version {manifest['version']}, {manifest['tickets']} tickets,"
            f" expires {format_instant(manifest['expires_at'])}"
        )
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(report["by_kind"].items())) or "none"
    print(
        f"check-ins  {report['checkins']} ({kinds}); {report['awaiting_signature']} awaiting their gate's "
        f"signed record; pull cursor {report['cursor']}; {report['validations']} online validations"
    )
    print(f"conflicts  {len(report['conflicts'])}")
    for c in report["conflicts"]:
        found = format_instant(c["detected_at"])
        print(f"  {c['ticket_id']}: {c['loser']} lost to {c['winner']} (found {found})")
    # Forced entries take no part in the conflicts' verdicts: they stand beside them.
    print(f"overrides  {len(report['overrides'])} (forced entries: no part in conflicts)")
    for o in report["overrides"]:
        print(
            f"  {o['ticket_id']}: admitted at {o['gate']} {o['at']} by supervisor {o['supervisor']}"
            f" over {o['refused_outcome']} ({o['refused_reason']}), scan {o['refused_scan']}"
        )
    print(f"gates      {len(report['gates'])} heard from")
    now = time.time()
    for g in report["gates"]:
        counters = ", ".join(f"{k}={v}" for k, v in sorted(g["counters"].items())) or "no counters"
        ago = max(0, int(now - g["last_seen"]))
        print(f"  {g['gate']}: last heartbeat {ago} s ago, {g['beats']} beats; {counters}")


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog="gate-central", description="The reference central server for gates.")
    p.add_argument("--config", type=Path, help="the central's TOML config: serve it")
    p.set_defaults(func=cmd_run)
    sub = p.add_subparsers(dest="command")
    c = sub.add_parser("check-config", help="validate a config and the event's inputs; exit 1 on problems")
    c.add_argument("file", type=Path)
    c.set_defaults(func=cmd_check_config)
    r = sub.add_parser(
        "report",
        help="what the central holds: check-ins, conflicts, gates' heartbeats; a ticket; an incident",
    )
    r.add_argument(
        "what",
        nargs="?",
        choices=["ticket", "incident"],
        help="ticket ID: every scan and record of a ticket at every gate; incident: a page for a period",
    )
    r.add_argument("ticket_id", nargs="?", metavar="ID", help="the ticket (report ticket)")
    r.add_argument("--config", type=Path, required=True)
    output = r.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="as JSON")
    output.add_argument("--csv", action="store_true", help="report ticket: the rows as CSV")
    r.add_argument("--from", dest="period_from", metavar="TIME", help="report incident: from (RFC 3339)")
    r.add_argument("--to", dest="period_to", metavar="TIME", help="report incident: to (RFC 3339)")
    r.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="report incident: write the HTML page here"
    )
    r.set_defaults(func=cmd_report)
    add_enroll_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run gate-central; errors become one line on stderr and a non-zero exit."""
    args = parser().parse_args(argv)
    return run_command(lambda: int(args.func(args)))


if __name__ == "__main__":
    sys.exit(main())
