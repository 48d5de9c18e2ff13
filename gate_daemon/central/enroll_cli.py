"""``gate-central token`` and ``gate-central gates``: enrollment tokens and the roster (docs/ENROLL.md).

    gate-central token --gate ID [--zone Z] [--valid 24h] [--url URL] --config FILE
    gate-central token --revoke ID --config FILE
    gate-central gates [--remove ID] --config FILE

They work on the central's database, whether the central runs or not: a running central
sees an enrolled roster that changed at its next poll and builds the manifest that says so.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from gate_daemon.core.enrollment import (
    SECRET_SIZE,
    Token,
    check_gate_id,
    check_url,
    fingerprint,
    fingerprint_text,
)
from gate_daemon.core.times import format_instant
from gate_daemon.errors import GateError
from gate_daemon.provision.keyfiles import read_secret
from gate_daemon.store.central.checkin_book import CentralStore
from gate_daemon.store.central.enrollments import Enrollments

from .config import CentralConfig, load_central_config
from .enroll import refuse_reserved

T = TypeVar("T")
_DURATION = re.compile(r"([1-9][0-9]{0,6})([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: The longest a token may be valid.
MAX_VALID = 30 * 86400
_WILDCARD = {"0.0.0.0", "::", ""}  # noqa: S104 -- compared with, never bound


def parse_valid(text: str) -> int:
    """A validity like ``24h``, ``30m``, ``7d`` or ``90s``, in seconds; ``GateError`` otherwise."""
    match = _DURATION.fullmatch(text.strip())
    seconds = int(match.group(1)) * _UNIT[match.group(2)] if match else 0
    if not 0 < seconds <= MAX_VALID:
        raise GateError(f"--valid {text!r}: a duration like 24h, 30m, 7d or 90s, at most 30d")
    return seconds


def central_url(config: CentralConfig, given: str | None) -> str:
    """The URL the gates reach the central at: ``--url``, else its listen address."""
    if given is not None:
        try:
            return check_url(given)
        except ValueError as exc:
            raise GateError(f"--url: {exc}") from None
    if config.host in _WILDCARD or config.port == 0:
        raise GateError(
            f"the central listens on {config.host}:{config.port}: give --url http://ADDRESS:PORT, "
            "the address the gates reach it at"
        )
    host = f"[{config.host}]" if ":" in config.host else config.host
    return f"http://{host}:{config.port}"


def _with_enrollments(config: CentralConfig, action: Callable[[Enrollments], Awaitable[T]]) -> T:
    async def run() -> T:
        config.state_dir.mkdir(parents=True, exist_ok=True)
        store = await CentralStore.open(config.database)
        try:
            return await action(Enrollments(store))
        finally:
            await store.aclose()

    return asyncio.run(run())


def cmd_token(args: argparse.Namespace) -> int:
    """Print a new one-time token for a gate, or revoke a gate's open tokens."""
    config = load_central_config(args.config)
    if args.revoke is not None:
        if args.gate is not None or args.zone is not None:
            raise GateError("token --revoke ID takes only --config")
        revoked = _with_enrollments(config, lambda book: book.revoke(args.revoke, time.time()))
        print(f"revoked {revoked} open token(s) of gate {args.revoke}")
        return 0
    if args.gate is None:
        raise GateError("give --gate ID (the gate the token enrolls) or --revoke ID")
    try:
        gate = check_gate_id(args.gate)
    except ValueError as exc:
        raise GateError(f"--gate: {exc}") from None
    refuse_reserved(gate)
    event = config.read_event()
    if gate in {g.id for g in event.gates}:
        raise GateError(
            f"gate {gate} is listed in {config.event}'s [[gates]]: remove it there to enroll it by token"
        )
    if args.zone is not None and args.zone not in {z.id for z in event.zones}:
        raise GateError(f"--zone {args.zone!r} is not a zone of event {event.event_id}")
    valid = parse_valid(args.valid)
    signer = read_secret(config.key).public
    now = time.time()
    token = Token(
        os.urandom(SECRET_SIZE), fingerprint(signer), int(now) + valid, gate, central_url(config, args.url)
    )
    _with_enrollments(
        config, lambda book: book.add_token(token.key.public, gate, args.zone, now, float(token.expires_at))
    )
    print(token.text())
    print(
        f"one-time token for gate {gate}{f' (zone {args.zone})' if args.zone else ''} of event "
        f"{event.event_id}, valid until {format_instant(token.expires_at)}; central {token.url}, "
        f"signer {fingerprint_text(token.fingerprint)}.\non the gate: sudo gatectl enroll TOKEN",
        file=sys.stderr,
    )
    return 0


def cmd_gates(args: argparse.Namespace) -> int:
    """List the roster with how each gate joined, or remove an enrolled gate."""
    config = load_central_config(args.config)
    event = config.read_event()
    listed = {g.id for g in event.gates}
    if args.remove is not None:
        if args.remove in listed:
            raise GateError(f"gate {args.remove} is listed in {config.event}'s [[gates]]: remove it there")
        removed, revoked = _with_enrollments(config, lambda book: book.remove(args.remove, time.time()))
        tokens = f"revoked {revoked} open token(s) of it"
        if not removed:
            if not revoked:
                raise GateError(f"gate {args.remove} is not enrolled and has no open token")
            print(f"gate {args.remove} was not enrolled; {tokens}")
            return 0
        print(f"removed gate {args.remove}: the central's next manifest leaves it out; {tokens}")
        return 0
    enrolled = _with_enrollments(config, lambda book: book.gates())
    rows: list[tuple[str, ...]] = [(g.id, g.addr or "-", "-", "joined: file") for g in event.gates]
    for gate in enrolled:
        joined = f"joined: token {format_instant(int(gate.joined_at))}"
        if gate.id in listed:
            joined += " (left out: the file's entry stands)"
        rows.append((gate.id, gate.addr, gate.zone or "-", joined))
    print(f"{len(rows)} gate(s) in the roster of event {event.event_id}")
    for gate_id, addr, zone, joined in rows:
        print(f"  {gate_id:<20} {addr:<24} zone {zone:<12} {joined}")
    return 0


def add_enroll_commands(sub: Any) -> None:
    """``token`` and ``gates`` on gate-central's subcommands."""
    t = sub.add_parser("token", help="print a one-time enrollment token for a gate (or revoke its tokens)")
    t.add_argument("--config", type=Path, required=True)
    t.add_argument("--gate", metavar="ID", help="the gate the token enrolls")
    t.add_argument("--zone", metavar="Z", help="the zone the gate admits to (one of the event's zones)")
    t.add_argument(
        "--valid", default="24h", metavar="DURATION", help="how long it works: 24h (default), 30m, 7d"
    )
    t.add_argument(
        "--url", metavar="URL", help="where the gates reach the central (default: its listen address)"
    )
    t.add_argument("--revoke", metavar="ID", help="revoke every open token of this gate")
    t.set_defaults(func=cmd_token)
    g = sub.add_parser("gates", help="the roster: event.toml's [[gates]] and the gates enrolled by token")
    g.add_argument("--config", type=Path, required=True)
    g.add_argument("--remove", metavar="ID", help="take an enrolled gate out (a new manifest without it)")
    g.set_defaults(func=cmd_gates)
