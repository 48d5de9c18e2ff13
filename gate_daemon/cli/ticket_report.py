"""``gatectl report ticket ID``: one ticket's scans and records in one gate's ledger, for a dispute.

Reads the ledger file directly (read-only: the gate may run, be stopped or be dead), as
``--ledger`` names it or as the gate's config places it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gate_daemon.config.load import load_config
from gate_daemon.core.ticket_history import admissions, as_csv, as_json, as_text, history, ticket_id_problem
from gate_daemon.errors import GateError
from gate_daemon.store.ticket_history import read_ticket

#: Where a gate's config is when neither --ledger nor --config says.
DEFAULT_CONFIG = Path("/etc/gate-daemon/gate.toml")


def report_ticket(args: argparse.Namespace) -> int:
    """Print a ticket's history from one gate's ledger: text, ``--json`` or ``--csv``."""
    problem = ticket_id_problem(args.ticket_id)
    if problem is not None:
        raise GateError(problem)
    if args.socket is not None:
        raise GateError(
            "report ticket reads the ledger file: give --ledger FILE or --config FILE, not --socket"
        )
    ledger = (
        args.ledger if args.ledger is not None else load_config(args.config or DEFAULT_CONFIG).ledger_path
    )
    facts = read_ticket(ledger, args.ticket_id)
    rows = history(facts.scans, facts.records, facts.conflicts)
    admitted = admissions(facts.records, facts.conflicts)
    if args.json:
        print(json.dumps(as_json(args.ticket_id, rows, admitted), indent=2))
    elif args.csv:
        print(as_csv(rows), end="")
    else:
        print(as_text(args.ticket_id, rows, admitted))
    return 0
