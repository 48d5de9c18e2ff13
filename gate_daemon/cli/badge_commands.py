"""``gatectl badge issue``: a staff badge signed with a staff key (docs/BADGES.md).

The badge's payload is printed on standard output, and its QR image written with
``--png``/``--svg``; the gate takes it when the event's signed manifest lists the staff
key (``staff_keys`` in event.toml) and not the operator (``revoked_staff``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gate_daemon.cli.command_line import instant
from gate_daemon.core.badges import BadgeClaims, Role, encode_badge
from gate_daemon.core.tokens import event_tag
from gate_daemon.errors import GateError
from gate_daemon.provision.keyfiles import read_secret
from gate_daemon.provision.qrimage import write_qr


def cmd_badge_issue(args: argparse.Namespace) -> int:
    """Sign a staff badge, print its payload and write its QR image."""
    key = read_secret(args.key)
    if args.valid_from is not None and args.valid_until is not None and args.valid_from >= args.valid_until:
        raise GateError("--valid-from is not before --valid-until: the badge would never be valid")
    claims = BadgeClaims(
        operator=args.operator,
        name=args.name,
        role=Role(args.role),
        event_tag=event_tag(args.event),
        valid_from=args.valid_from,
        valid_until=args.valid_until,
    )
    try:
        payload = encode_badge(claims, key)
    except ValueError as exc:
        raise GateError(f"badge: {exc}") from None
    # The image first: a failed write must not leave a payload on stdout.
    for path in (args.png, args.svg):
        if path is not None:
            mode = write_qr(payload, path)
            print(f"wrote {path} (QR {mode} mode)", file=sys.stderr)
    print(payload)
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``badge issue`` to gatectl's commands."""
    badge = sub.add_parser("badge", help="issue staff badges (sign in at a gate; supervisors override)")
    bsub = badge.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = bsub.add_parser("issue", help="sign a staff badge: print the payload, write a QR image")
    p.add_argument("--key", type=Path, required=True, help="staff signing key (.key), listed in staff_keys")
    p.add_argument("--event", required=True, help="event id (a badge for another event is refused)")
    p.add_argument("--operator", required=True, help="operator id recorded with every scan (1..32 bytes)")
    p.add_argument("--name", required=True, help="the name the gate screen shows (1..64 bytes)")
    p.add_argument("--role", required=True, choices=[r.value for r in Role], help="supervisors can override")
    p.add_argument("--valid-from", type=instant, help="RFC 3339; refused before it")
    p.add_argument("--valid-until", type=instant, help="RFC 3339; refused from it on")
    image = p.add_mutually_exclusive_group()
    image.add_argument("--png", type=Path)
    image.add_argument("--svg", type=Path)
    p.set_defaults(func=cmd_badge_issue)
