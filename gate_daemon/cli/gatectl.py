"""``gatectl``: the venue tech's tool for keys, manifests, tickets and decisions.

Exit status: 0 success (and ``allow`` for ``decide``), 1 an error (printed as one line
``ErrorName: message``), 2 a usage error; ``decide`` exits 3 deny, 4 already_used,
5 too_early.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gate_daemon.cli import (
    badge_commands,
    enroll_commands,
    fleet_commands,
    gate_commands,
    machine_commands,
    provision_commands,
    supervisor_commands,
)
from gate_daemon.errors import GateError, run_command


def parser() -> argparse.ArgumentParser:
    """The full command line: each group of commands adds its own."""
    top = argparse.ArgumentParser(
        prog="gatectl", description="The venue tech's tool for keys, manifests, tickets and decisions."
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    provision_commands.add_commands(sub)
    gate_commands.add_commands(sub)
    machine_commands.add_commands(sub)
    supervisor_commands.add_commands(sub)
    fleet_commands.add_commands(sub)
    enroll_commands.add_commands(sub)
    badge_commands.add_commands(sub)
    return top


def _check_text(args: argparse.Namespace) -> None:
    """Refuse argument text that is not valid Unicode (bytes the locale could not decode).

    A payload is exempt: the decision names it ``invalid_payload``, as a gate would.
    """
    for name, value in vars(args).items():
        if isinstance(value, str) and name != "payload":
            try:
                value.encode()
            except UnicodeEncodeError:
                flag = "--" + name.replace("_", "-")
                raise GateError(f"{flag} {value!r} is not valid text") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run gatectl; errors become one line on stderr and a non-zero exit."""
    args = parser().parse_args(argv)

    def act() -> int:
        _check_text(args)
        code: int = args.func(args)
        return code

    return run_command(act)


if __name__ == "__main__":
    sys.exit(main())
