"""``gatectl report overrides``: the forced entries a supervisor's badge made at one gate."""

from __future__ import annotations

import argparse
import json

from gate_daemon.cli.ticket_report import DEFAULT_CONFIG
from gate_daemon.config.load import load_config
from gate_daemon.core.overrides import overrides_text
from gate_daemon.errors import GateError
from gate_daemon.store.offline_reads import read_overrides


def report_overrides(args: argparse.Namespace) -> int:
    """Print the ledger's forced entries: who admitted whom over which refusal (text or ``--json``)."""
    if args.ticket_id is not None or args.csv or args.socket is not None:
        raise GateError("report overrides reads the ledger file: give --ledger FILE or --config FILE only")
    ledger = (
        args.ledger if args.ledger is not None else load_config(args.config or DEFAULT_CONFIG).ledger_path
    )
    rows = read_overrides(ledger)
    if args.json:
        print(json.dumps([row.as_dict() for row in rows], indent=2))
    else:
        print(overrides_text(rows))
    return 0
