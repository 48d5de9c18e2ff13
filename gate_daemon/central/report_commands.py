"""``gate-central report ticket ID`` and ``gate-central report incident``: the venue's evidence.

Both read the central's database read-only (the server may run): a ticket's history from
every gate's uploaded evidence and every check-in, or an incident's page (one HTML file:
``central.incident_page``) and its JSON. Bad arguments are named errors, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from gate_daemon.core.incident import analyse
from gate_daemon.core.ticket_history import admissions, as_csv, as_json, as_text, history, ticket_id_problem
from gate_daemon.core.times import TimeFormatError, format_instant, parse_instant
from gate_daemon.errors import GateError
from gate_daemon.files import write_atomic
from gate_daemon.store.central.reports import read_incident, read_ticket

from . import incident_page
from .config import load_central_config

#: The longest period an incident report covers.
MAX_PERIOD_S = 7 * 86_400


def cmd_report_ticket(args: argparse.Namespace) -> int:
    """Print a ticket's history at every gate: text, ``--json`` or ``--csv``."""
    problem = ticket_id_problem(args.ticket_id)
    if problem is not None:
        raise GateError(problem)
    _refuse(args, "report ticket", ("period_from", "--from"), ("period_to", "--to"), ("output", "-o"))
    config = load_central_config(args.config)
    facts = read_ticket(config.database, args.ticket_id)
    rows = history(facts.scans, facts.records, facts.conflicts)
    admitted = admissions(facts.records, facts.conflicts)
    if args.json:
        print(json.dumps(as_json(args.ticket_id, rows, admitted), indent=2))
    elif args.csv:
        sys.stdout.write(as_csv(rows))
    else:
        print(as_text(args.ticket_id, rows, admitted))
    return 0


def cmd_report_incident(args: argparse.Namespace) -> int:
    """Write the incident page (``-o FILE``) and/or print its JSON (``--json``) for ``--from`` to ``--to``."""
    if args.ticket_id is not None:
        raise GateError("report incident takes no ticket ID (did you mean: report ticket ID?)")
    _refuse(args, "report incident", ("csv", "--csv"))
    start, end = _period(args.period_from, args.period_to)
    if args.output is None and not args.json:
        raise GateError("report incident needs -o FILE (the HTML page) or --json")
    config = load_central_config(args.config)
    incident = analyse(read_incident(config.database, start, end))
    if args.output is not None:
        title = f"Incident report: {config.id}, {format_instant(start)} to {format_instant(end)}"
        page = incident_page.render(incident, title=title)
        try:
            write_atomic(args.output, page.encode())
        except OSError as exc:
            raise GateError(f"cannot write {args.output} (-o): {exc.strerror or exc}") from None
        if not args.json:
            scans, windows, gates = (
                incident.totals.get("scans", 0),
                len(incident.windows),
                len(incident.attention),
            )
            print(
                f"wrote {args.output}: {scans} scans, {windows} fault windows, {gates} gates needed attention"
            )
    if args.json:
        print(json.dumps(incident.as_json(), indent=2))
    return 0


def _period(first: str | None, last: str | None) -> tuple[float, float]:
    """``--from`` and ``--to`` as UTC seconds, named when missing or wrong."""
    if first is None or last is None:
        raise GateError(
            "report incident needs --from TIME and --to TIME (RFC 3339, e.g. 2026-11-21T19:00:00Z)"
        )
    times = []
    for option, text in (("--from", first), ("--to", last)):
        try:
            times.append(float(parse_instant(text)))
        except TimeFormatError as exc:
            raise GateError(f"{option}: {exc}") from None
    start, end = times
    if end <= start:
        raise GateError(f"--to ({last}) must be later than --from ({first})")
    if end - start > MAX_PERIOD_S:
        raise GateError(f"the period is longer than {MAX_PERIOD_S // 86_400} days: report it in parts")
    return start, end


def _refuse(args: argparse.Namespace, command: str, *options: tuple[str, str]) -> None:
    for attribute, option in options:
        if getattr(args, attribute) not in (None, False):
            raise GateError(f"{command} takes no {option}")
