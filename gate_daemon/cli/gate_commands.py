"""``gatectl scan``, ``status``, ``counters``, ``search`` and ``report``: a gate on this machine.

They ask the running gate over its control socket; ``counters`` and ``report`` can read
a stopped gate's ledger file instead.
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from pathlib import Path
from typing import Any

from gate_daemon.cli.command_line import EXIT_CODES, payload_argument, positive, read_payload
from gate_daemon.cli.override_report import report_overrides
from gate_daemon.cli.supervisor_commands import print_lane
from gate_daemon.cli.ticket_report import report_ticket
from gate_daemon.core import counters
from gate_daemon.core.counters import Family, by_label, labelled
from gate_daemon.core.reasons import Outcome
from gate_daemon.core.snapshot import (
    CapacityStatus,
    ClockStatus,
    GateSnapshot,
    OnlineStatus,
    ReplicationStatus,
    UpstreamStatus,
)
from gate_daemon.core.times import format_span
from gate_daemon.daemon.control import DEFAULT_SOCKET, ask
from gate_daemon.errors import GateError
from gate_daemon.store.offline_reads import read_conflicts, read_counters


def _socket(args: argparse.Namespace) -> Path:
    return Path(args.socket) if args.socket else Path(os.environ.get("GATE_SOCKET") or DEFAULT_SOCKET)


def cmd_scan(args: argparse.Namespace) -> int:
    """Scan PAYLOAD through the running gate: recorded, signalled, printed as JSON."""
    payload = read_payload(args.payload)
    request: dict[str, Any] = {"op": "scan", "payload": payload, "kind": args.kind}
    if args.operator:
        request["operator"] = args.operator
    if args.force or args.badge:
        if not (args.force and args.badge):
            raise GateError(
                "--force needs --badge PAYLOAD, a supervisor's staff badge (and --badge needs --force)"
            )
        request["force"], request["badge"] = True, read_payload(args.badge)
    # Made here, so that a scan whose answer was lost can be retried without a second entry.
    request["scan_id"] = args.scan_id or str(uuid.uuid4())
    try:
        answer = ask(_socket(args), request)
    except GateError as exc:
        if "did not answer" not in str(exc) and "unreadable answer" not in str(exc):
            raise
        # The request went out: the scan may have been recorded.
        raise GateError(f"{exc}; retry with --scan-id {request['scan_id']} to get its answer") from None
    decision = answer["decision"]
    print(json.dumps(decision, ensure_ascii=False))
    return EXIT_CODES[Outcome(decision["outcome"])]


def cmd_status(args: argparse.Namespace) -> int:
    """Print the running gate's identity, manifest and counters."""
    status: GateSnapshot = ask(_socket(args), {"op": "status"})["status"]
    if args.json:
        print(json.dumps(status, indent=2, ensure_ascii=False))
        return 0
    place = (("zone", status["zone"]), ("session", status["session"]))
    where = "".join(f", {key} {value}" for key, value in place if value)
    up = format_span(status["uptime_seconds"])
    print(f"gate      {status['gate']} ({status['mode']}{where}), event {status['event']}")
    print(f"input     {status['input']}, signals {status['signals']}, up {up}")
    if status["problem"]:
        print(f"SERVICE   OUT OF SERVICE: {status['problem']}")
    turnstile = status["turnstile"]
    if turnstile:
        sensor = "passage sensor" if turnstile["passage_sensor"] else "no passage sensor"
        print(f"turnstile relay, {sensor}, {turnstile['pending']} admitted and not yet through")
        if turnstile["problem"]:
            print(f"          {turnstile['problem']}")
    m = status["manifest"]
    if m["active"]:
        state = "EXPIRED" if m["expired"] else f"expires {m['expires_at']}"
        print(
            f"manifest  version {m['version']}, {m['tickets']} tickets, issued {m['issued_at']} "
            f"({format_span(m['age_seconds'])} ago), {state}"
        )
    else:
        print("manifest  NONE: out of service, every scan is denied (manifest_missing)")
    if "last_refusal" in m:
        r = m["last_refusal"]
        print(f"refused   {r['at']}: {r['reason']}: {r['detail']}")
    print_lane(status["lane"])
    if staff := status.get("staff"):
        who, left = (
            f"{staff['name']} ({staff['role']}, {staff['operator']})",
            format_span(staff["idle_left_s"]),
        )
        print(f"staff     {who} signed in; idle sign-out in {left}")
    _print_capacity(status.get("capacity", []))
    _print_counters(status["counters"])
    _print_replication(status["replication"])
    _print_upstream(status["upstream"], status["online"], status["clock"])
    return 0


def _print_capacity(scopes: list[CapacityStatus]) -> None:
    """The capacity lines of ``gatectl status``: inside per scope, and this gate's share in strict mode."""
    for scope in scopes:
        name = "venue" if scope["scope"] == "*" else f"zone {scope['scope']}"
        share = "" if scope["share"] is None else f", {scope['share']} places held here"
        print(f"capacity  {name}: {scope['inside']} of {scope['capacity']} inside ({scope['mode']}{share})")


def _print_counters(counted: dict[str, int]) -> None:
    """The scan, people and passage lines of ``gatectl status``."""
    outcomes = ", ".join(f"{label} {value}" for label, value in by_label(counted, Family.OUTCOME).items())
    print(f"scans     {counted.get(counters.SCANS, 0)} ({outcomes or 'none yet'})")
    print(
        f"people    {counted.get(labelled(Family.RESOLUTION, 'admitted'), 0)} admitted, "
        f"{counted.get(labelled(Family.RESOLUTION, 'exited'), 0)} exits recorded"
    )
    passage = [
        f"{label} {counted[name]}"
        for name, label in (
            (labelled(Family.PASSAGE, "passed"), "passed"),
            (labelled(Family.PASSAGE, "not_passed"), "not passed (ticket given back)"),
            (labelled(Family.PASSAGE, "unverified"), "unverified"),
            (labelled(Family.PASSAGE, "unreleased"), "pushed through"),
            (counters.MANUAL_RELEASES, "released by hand"),
        )
        if counted.get(name)
    ]
    if passage:
        print(f"passage   {', '.join(passage)}")


def _print_upstream(sync: UpstreamStatus | None, online: OnlineStatus | None, clock: ClockStatus) -> None:
    """The central's lines of ``gatectl status``."""
    if sync is not None:
        state = "up" if sync["up"] else "DOWN"
        print(
            f"central   {sync['url']} {state}, {sync['pending']} records to send, "
            f"pull cursor {sync['cursor']}"
        )
        for name, loop in sync["loops"].items():
            if loop["error"]:
                print(f"          {name}: {loop['error']} ({loop['failures']} failures in a row)")
        if sync["download"]:
            done, total = sync["download"]["bytes"], sync["download"]["total"]
            print(f"          downloading a manifest: {done} of {total or '?'} bytes")
    if online is not None:
        switches = online["switches"]
        print(
            f"decision  online-first, now {online['mode'].upper()}; {switches['offline']} switches offline, "
            f"{format_span(online['offline_seconds'])} offline"
        )
    if clock["warning"]:
        print(f"CLOCK     {clock['warning']}")


def cmd_search(args: argparse.Namespace) -> int:
    """Search the central's tickets through the running gate (a lost ticket, a typo)."""
    answer = ask(_socket(args), {"op": "search", "query": args.query, "limit": args.limit})
    results = answer["results"]
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return 0 if results else 1
    if not results:
        print(f"nothing matches {args.query!r}")
        return 1
    print(f"{'ticket':<20} {'order':<16} {'seat':<10} {'status':<10} {'match':<8} last check-in")
    for item in results:
        checkins = item.get("checkins") or []
        last = f"{checkins[0].get('kind')} at {checkins[0].get('gate')}" if checkins else "none"
        if checkins and checkins[0].get("operator"):
            last += f" ({checkins[0]['operator']})"
        cells = [str(item.get(key) or "") for key in ("ticket_id", "order_id", "seat", "status", "match")]
        print(f"{cells[0]:<20} {cells[1]:<16} {cells[2]:<10} {cells[3]:<10} {cells[4]:<8} {last}")
    return 0


def _print_replication(state: ReplicationStatus | None) -> None:
    """The peer lines of ``gatectl status``."""
    if state is None:
        return
    print(f"peers     key {state['key']}, {state['logs']} logs held, {state['conflicts']} conflicts")
    if state["problem"]:
        print(f"          NOT SHARING: {state['problem']}")
    for peer in state["peers"]:
        name = f"{peer['address']} ({peer['gate'] or '?'})"
        if peer["up"]:
            lag = (
                "never caught up"
                if peer["lag_seconds"] is None
                else f"caught up {peer['lag_seconds']:.1f} s ago"
            )
            print(f"          {name:<36} up, {lag}, pushed {peer['pushed']}, pulled {peer['pulled']}")
        else:
            print(f"          {name:<36} DOWN: {peer['last_error'] or 'not reached yet'}")


def cmd_counters(args: argparse.Namespace) -> int:
    """Print a gate's persisted counters: from the running gate, or from its ledger file."""
    if args.ledger is not None:
        counted = read_counters(args.ledger)
    else:
        counted = ask(_socket(args), {"op": "counters"})["counters"]
    if args.json:
        print(json.dumps(counted, indent=2, sort_keys=True))
    else:
        for name, value in sorted(counted.items()):
            print(f"{name:<32} {value}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Print a gate's double entries (records from other gates met its own), or a ticket's history."""
    if args.what == "ticket":
        return report_ticket(args)
    if args.what == "overrides":
        return report_overrides(args)
    if args.ticket_id is not None or args.csv or args.config is not None:
        raise GateError(
            "report conflicts takes no ticket id, --csv or --config (did you mean: report ticket ID?)"
        )
    if args.ledger is not None:
        conflicts = [conflict.as_dict() for conflict in read_conflicts(args.ledger)]
    else:
        conflicts = ask(_socket(args), {"op": "conflicts"})["conflicts"]
    if args.json:
        print(json.dumps(conflicts, indent=2))
        return 0
    if not conflicts:
        print("no conflicts: no ticket was admitted more often than it allows")
        return 0
    print(f"{'ticket':<20} {'stands (admitted first)':<40} {'conflict (admitted again)':<40}")
    for item in conflicts:
        stands, again = item["stands"], item["conflict"]
        first, second = f"{stands['gate']} {stands['at']}", f"{again['gate']} {again['at']}"
        print(f"{item['ticket_id']:<20} {first:<40} {second:<40}")
    print(f"{len(conflicts)} conflict{'s' if len(conflicts) != 1 else ''}")
    return 0


# ------------------------------------------------------------------- parser


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``scan``, ``status``, ``counters``, ``search`` and ``report`` to gatectl's commands."""
    p = sub.add_parser("scan", help="scan PAYLOAD through the running gate (recorded and signalled)")
    payload_argument(p)
    _socket_option(p)
    p.add_argument("--operator", help="who scans (default: your user name)")
    p.add_argument(
        "--exit",
        dest="kind",
        action="store_const",
        const="exit",
        default=None,
        help="record an exit (re-entry tickets) instead of the gate's own mode",
    )
    p.add_argument("--scan-id", help="a UUID that makes a retried scan idempotent")
    p.add_argument(
        "--force", action="store_true", help="admit a refused ticket on a supervisor's badge (needs --badge)"
    )
    p.add_argument(
        "--badge", metavar="PAYLOAD", help="the supervisor's staff badge (- to read it from stdin)"
    )
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("status", help="the running gate's identity, manifest and counters")
    _socket_option(p)
    p.add_argument("--json", action="store_true", help="print the full status as JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("counters", help="a gate's persisted counters")
    _socket_option(p)
    p.add_argument(
        "--ledger", type=Path, help="read them from this ledger file instead (works with the gate stopped)"
    )
    p.add_argument("--json", action="store_true", help="print them as one JSON object")
    p.set_defaults(func=cmd_counters)

    p = sub.add_parser(
        "search", help="search the central's tickets (ticket id, order id, seat; typos forgiven)"
    )
    p.add_argument("query", help="2 to 64 characters")
    p.add_argument("--limit", type=positive, default=20, help="at most this many results (up to 50)")
    _socket_option(p)
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("report", help="reports from a gate's ledger")
    p.add_argument(
        "what",
        choices=["conflicts", "ticket", "overrides"],
        help="conflicts: tickets admitted at two gates that could not talk; ticket ID: every scan and record"
        " of one ticket (was this person let in, where and when?); overrides: who a supervisor's badge"
        " admitted over a refusal",
    )
    p.add_argument("ticket_id", nargs="?", metavar="ID", help="the ticket (report ticket)")
    _socket_option(p)
    p.add_argument(
        "--ledger", type=Path, help="read it from this ledger file instead (works with the gate stopped)"
    )
    p.add_argument(
        "--config",
        type=Path,
        help="report ticket without --ledger: read the ledger of the gate configured here"
        " (default /etc/gate-daemon/gate.toml)",
    )
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print it as JSON")
    output.add_argument("--csv", action="store_true", help="report ticket: print the rows as CSV")
    p.set_defaults(func=cmd_report)


def _socket_option(p: argparse.ArgumentParser) -> None:
    """``--socket``: which gate to ask."""
    p.add_argument(
        "--socket",
        help=f"the gate's control socket (default: $GATE_SOCKET or {DEFAULT_SOCKET})",
    )
