"""``gatectl lane``, ``mode``, ``message``, ``commands`` and ``confirm``: a supervisor's commands.

``lane``, ``mode`` and ``message`` sign a command with a supervisor's key and send it
either straight to the gate's LAN API (``--gate HOST:PORT``, ``POST /v1/command``) or to
the central (``--central URL``, ``POST /v1/commands``), which hands it to the gate in its
next heartbeat answer. The event a command is for is read from where it is sent (the
gate's status, or the central's command list) unless ``--event`` names it. A refusal is
printed by name and exits 1. ``commands`` lists what the central holds for a gate, or
(``--ledger FILE``) what a gate's ledger recorded, applied and refused; the central
answers that list (``GET /v1/commands``) only as it answers its fleet page, to
``[central] fleet_allow`` and a URL host it knows (``fleet_hosts``), else ``forbidden`` or
``wrong_host``;
``confirm`` releases the allow a supervised lane holds, through the control socket of
the gate on this machine. See docs/COMMANDS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import httpx

from gate_daemon.core.commands import MAX_MESSAGE, VERSION, CommandRefused, check_message, parse_command, sign
from gate_daemon.core.snapshot import LaneStatus
from gate_daemon.daemon.control import DEFAULT_SOCKET, ask
from gate_daemon.errors import GateError
from gate_daemon.provision.keyfiles import read_secret
from gate_daemon.store.offline_reads import read_commands

#: Seconds a command's request may take.
TIMEOUT = 10.0


class CommandFailed(GateError):
    """A command refused by the gate or the central (``name: detail``), or one that could not be sent."""


def _send(
    method: str, url: str, body: object | None = None, params: dict[str, str] | None = None
) -> dict[str, Any]:
    """One request; the JSON answer, or ``CommandFailed`` with the refusal's name."""
    try:
        with httpx.Client(timeout=TIMEOUT, trust_env=False) as client:
            response = client.request(method, url, json=body, params=params)
    except httpx.HTTPError as exc:
        raise CommandFailed(f"cannot reach {url}: {exc}") from None
    try:
        answer = response.json()
    except ValueError:
        raise CommandFailed(f"{url} answered {response.status_code} without JSON") from None
    if not isinstance(answer, dict):
        raise CommandFailed(f"{url} answered {response.status_code} with something other than an object")
    if response.status_code != 200:
        raise CommandFailed(f"{answer.get('error', response.status_code)}: {answer.get('detail', '')}")
    return answer


def _target(args: argparse.Namespace) -> tuple[str, str]:
    """(where the command is posted, the event it is for)."""
    if args.gate_address:
        base = args.gate_address if "://" in args.gate_address else f"http://{args.gate_address}"
        event = args.event or str(_send("GET", f"{base}/v1/status").get("event", ""))
        return f"{base}/v1/command", event
    base = args.central.rstrip("/")
    event = args.event or str(
        _send("GET", f"{base}/v1/commands", params={"gate": args.gate}).get("event", "")
    )
    return f"{base}/v1/commands", event


def _command(args: argparse.Namespace, kind: str, value: str) -> int:
    key_path = Path(args.key)
    key = read_secret(key_path)
    who = args.supervisor or key_path.name.removesuffix(".key")
    url, event = _target(args)
    fields = {"v": VERSION, "event": event, "gate": args.gate, "kind": kind, "value": value}
    fields |= {"supervisor": who, "issued_ms": int(time.time() * 1000), "nonce": secrets.token_hex(16)}
    try:
        # Read as the receiver reads it, so a typo is named here, not after a round trip.
        body = parse_command(fields)
    except CommandRefused as exc:
        raise CommandFailed(f"{exc.name}: {exc.detail}") from None
    answer = _send("POST", url, sign(body, key).envelope())
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
    elif "state" in answer:
        done = "applied" if answer["applied"] else "already applied (nothing changed)"
        print(f"gate {args.gate}: {body.describe()}: {done}")
        print_lane(answer["state"])
    else:
        done = "queued" if answer.get("queued") else "already queued"
        print(f"central: {body.describe()}: {done}; the gate takes it with its next heartbeat")
    return 0


def cmd_lane(args: argparse.Namespace) -> int:
    """Open, supervise or close a gate's lane."""
    return _command(args, "lane", args.state)


def cmd_mode(args: argparse.Namespace) -> int:
    """Force an online-first gate online or offline, or give it back to its breaker (auto)."""
    return _command(args, "mode", args.mode)


def cmd_message(args: argparse.Namespace) -> int:
    """Put a one-line message on a gate's screen ("" clears it)."""
    try:
        text = check_message(args.text)
    except CommandRefused as exc:
        raise CommandFailed(f"{exc.name}: {exc.detail}") from None
    return _command(args, "message", text)


def cmd_commands(args: argparse.Namespace) -> int:
    """The commands the central holds for a gate, or those a gate's ledger file recorded; newest first."""
    if (args.ledger is None) == (args.central is None):
        raise CommandFailed("commands takes --central URL (with the gate's id) or --ledger FILE")
    if args.ledger is not None:
        return _ledger_commands(args)
    if args.gate is None:
        raise CommandFailed("commands --central takes the gate's id")
    answer = _send("GET", f"{args.central.rstrip('/')}/v1/commands", params={"gate": args.gate})
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
        return 0
    for item in answer.get("commands", []):
        c = item["command"]
        taken = "taken by the gate" if item.get("acked_at") else "waiting for the gate's heartbeat"
        issued = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(c["issued_ms"] / 1000))
        print(f"{issued}Z  {c['supervisor']:<12} {c['kind']:<8} {c['value']!r:<20} {taken}")
    print(f"{len(answer.get('commands', []))} commands for gate {args.gate}")
    return 0


def _ledger_commands(args: argparse.Namespace) -> int:
    """The gate's evidence log of commands (applied, and refused once their signature verified)."""
    rows = read_commands(args.ledger, args.limit)
    if args.json:
        print(json.dumps([row.as_dict() for row in rows], indent=2, ensure_ascii=False))
        return 0
    for row in rows:
        received = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row.received_ms / 1000))
        what = f"{row.kind} {row.value!r}" if row.kind is not None else "-"
        print(
            f"{received}Z  {row.via:<8} {row.outcome:<18} {row.supervisor or '-':<12} {what:<24} {row.detail}"
        )
    print(f"{len(rows)} commands in {args.ledger}")
    return 0


def cmd_confirm(args: argparse.Namespace) -> int:
    """Release the allow a supervised lane holds (the steward's confirmation)."""
    socket = Path(args.socket or os.environ.get("GATE_SOCKET") or DEFAULT_SOCKET)
    answer = ask(socket, {"op": "confirm"})
    if not answer["confirmed"]:
        print("nothing to confirm: no allow is waiting")
        return 1
    print("confirmed: the turnstile is released")
    print_lane(answer["lane"])
    return 0


def print_lane(lane: LaneStatus) -> None:
    """The lane's lines of ``gatectl status`` (and of a command's answer)."""
    by = f" by {lane['by']}" if lane["by"] else ""
    since = ""
    if lane["since_ms"] is not None:
        since = time.strftime(" since %Y-%m-%d %H:%M:%SZ", time.gmtime(lane["since_ms"] / 1000))
    print(f"lane      {lane['state'].upper()}{by}{since}")
    if lane["mode_forced"]:
        print(f"          decision mode forced {lane['mode_forced']} by a supervisor")
    if lane["message"]:
        print(f"message   {lane['message']}")
    pending = lane["pending"]
    if pending:
        until = time.strftime("%H:%M:%SZ", time.gmtime(pending["until_ms"] / 1000))
        print(f"          {pending['ticket']} waits for a steward until {until} (gatectl confirm)")


# ------------------------------------------------------------------- parser


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``lane``, ``mode``, ``message``, ``commands`` and ``confirm`` to gatectl's commands."""
    p = sub.add_parser("lane", help="open, supervise or close a gate's lane (a signed command)")
    p.add_argument("gate", help="the gate's id")
    p.add_argument("state", choices=["open", "supervised", "closed"])
    _sending(p)
    p.set_defaults(func=cmd_lane)

    p = sub.add_parser("mode", help="force an online-first gate online or offline, or back to auto")
    p.add_argument("gate", help="the gate's id")
    p.add_argument("mode", choices=["online", "offline", "auto"])
    _sending(p)
    p.set_defaults(func=cmd_mode)

    p = sub.add_parser("message", help='a one-line message on a gate\'s screen ("" clears it)')
    p.add_argument("gate", help="the gate's id")
    p.add_argument("text", help=f"at most {MAX_MESSAGE} characters, one line")
    _sending(p)
    p.set_defaults(func=cmd_message)

    p = sub.add_parser(
        "commands", help="the supervisors' commands the central holds for a gate, or a gate's ledger recorded"
    )
    p.add_argument("gate", nargs="?", help="the gate's id (with --central)")
    p.add_argument("--central", help="the central's URL")
    p.add_argument(
        "--ledger", type=Path, help="read the gate's evidence log of commands from this ledger file instead"
    )
    p.add_argument("--limit", type=int, default=100, help="with --ledger: the latest this many (default 100)")
    p.add_argument("--json", action="store_true", help="print the answer (or the rows) as JSON")
    p.set_defaults(func=cmd_commands)

    p = sub.add_parser("confirm", help="confirm the allow a supervised lane holds (releases the turnstile)")
    p.add_argument("--socket", help=f"the gate's control socket (default: $GATE_SOCKET or {DEFAULT_SOCKET})")
    p.set_defaults(func=cmd_confirm)


def _sending(p: argparse.ArgumentParser) -> None:
    """Who signs a command and where it goes."""
    p.add_argument("--key", required=True, help="the supervisor's secret key file (NAME.key, mode 0600)")
    p.add_argument(
        "--as",
        dest="supervisor",
        help="the supervisor's id in the manifest's roster (default: the key's NAME)",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--central", help="send through the central (its URL): the gate takes it at its heartbeat"
    )
    where.add_argument(
        "--gate", dest="gate_address", metavar="HOST:PORT", help="send straight to the gate's LAN API"
    )
    p.add_argument("--event", help="the event id (default: as the gate or the central says)")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
