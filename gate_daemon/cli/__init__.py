"""Command-line entry points."""

from __future__ import annotations

import sys
from collections.abc import Callable

from gate_daemon.errors import GateError

#: The exit status of a command that failed with a ``GateError``.
EXIT_ERROR = 1


def run_command(action: Callable[[], int]) -> int:
    """Run a command: a ``GateError`` becomes one line ``ErrorName: message`` on stderr and exit 1."""
    try:
        return action()
    except GateError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
