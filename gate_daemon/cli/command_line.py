"""What ``gatectl``'s command groups share: argument types, the payload argument, exit codes.

Argument types raise ``argparse.ArgumentTypeError``, so a bad value is a usage error
(exit 2) that names the option.
"""

from __future__ import annotations

import argparse
import sys

from gate_daemon.core.reasons import Outcome
from gate_daemon.core.times import TimeFormatError, parse_instant
from gate_daemon.core.tokens import parse_entries
from gate_daemon.errors import GateError
from gate_daemon.provision.build import MAX_VERSION

#: The exit status of ``decide`` and ``scan`` by outcome.
EXIT_CODES = {
    Outcome.ALLOW: 0,
    Outcome.DENY: 3,
    Outcome.ALREADY_USED: 4,
    Outcome.TOO_EARLY: 5,
    Outcome.STAFF: 6,
}


def instant(text: str) -> int:
    """An RFC 3339 time with an offset, as UTC seconds."""
    try:
        return parse_instant(text)
    except TimeFormatError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def entries(text: str) -> int:
    """An entry policy: 1..255 entries, or ``reentry``."""
    value = parse_entries(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1..255 or 'reentry'")
    return value


def positive(text: str) -> int:
    """A whole number of at least 1."""
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number of at least 1")
    return int(text)


def min_version(text: str) -> int:
    """The lowest manifest version to accept; 0 accepts any."""
    return 0 if text == "0" else version(text)


def version(text: str) -> int:
    """A manifest version: 1 up to the largest a manifest may carry."""
    value = positive(text)
    if value > MAX_VERSION:
        raise argparse.ArgumentTypeError(f"{text} is larger than {MAX_VERSION}")
    return value


def payload_argument(p: argparse.ArgumentParser) -> None:
    """The PAYLOAD argument of ``decide`` and ``scan``, last on the line.

    Legacy order codes may start with ``-``, which would read as an option: after ``--``
    the payload is taken as it is, so the usage line shows ``[--] PAYLOAD``.
    """
    p.add_argument(
        "payload",
        metavar="[--] PAYLOAD",
        help="the QR payload (after -- when it starts with -), or - to read one line from stdin",
    )


def read_payload(text: str) -> str:
    """The PAYLOAD argument: the text itself, or with ``-`` one line of standard input."""
    if text != "-":
        return text
    if sys.stdin is None:
        raise GateError("PAYLOAD is '-' but there is no standard input to read it from")
    return sys.stdin.readline().rstrip("\r\n")
