"""The exceptions gate-daemon raises to its callers.

Every error a person can cause (a bad file, a wrong key, a refused manifest) is one of
these, carries enough to say *where*, and is printed by the CLI as one line
``ErrorName: message`` with a non-zero exit. Bad QR payloads are not exceptions at all:
they are decisions with a reason code (see ``gate_daemon.core.decision``).

    GateError
    ├── KeyFileError        a key file is missing, unreadable, malformed or too open
    ├── SourceError         an input file (event.toml, tickets.csv, config) has problems;
    │                       carries every problem with its file, line and key or column
    ├── ManifestRefused     a manifest failed verification; ``reason`` names the attack
    │                       or defect (bad_signature, unknown_key, tampered, expired,
    │                       rollback, wrong_base, malformed, unreadable; at a gate also
    │                       wrong_event, wrong_checkpoint)
    ├── LedgerError         the ledger file cannot be used (store.ledger)
    └── ScanIdReused        a scan id sent again with another payload (gate)

Errors met or answered on the wire are another tree: they are answered to a caller as
``{"error": name, "detail": ...}``, or are what a client met, and a person sees them in
status and logs rather than as a command's failure::

    WireError               a named failure: ``name``, ``detail``, ``status`` (HTTP, when any)
    ├── AuthError           a signed request that did not authenticate (net.peer_auth)
    ├── PeerError           an exchange with a peer gate that failed (net.peers)
    ├── UpstreamError       a call to the central that failed (net.upstream)
    ├── ApiError            a request the central refuses (central.wire)
    └── BadRequest          a control-socket request that cannot be served (daemon.control)

``run_command`` is the one printer every command (gate-daemon, gatectl, gate-central)
runs its work through.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar


class GateError(Exception):
    """Base of every error gate-daemon reports to a person."""


class KeyFileError(GateError):
    """A key file could not be used."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in an input file, and where it is."""

    where: str
    message: str
    line: int | None = None

    def render(self, file: str) -> str:
        """Format as ``file:line: where: message`` (line omitted when unknown)."""
        loc = f"{file}:{self.line}" if self.line is not None else file
        return f"{loc}: {self.where}: {self.message}" if self.where else f"{loc}: {self.message}"


class SourceError(GateError):
    """An input file has one or more problems; nothing was produced from it."""

    #: How many problems ``str()`` shows before summarising the rest.
    shown = 20

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems
        lines = [p.render(file) for p in problems[: self.shown]]
        if len(problems) > self.shown:
            lines.append(f"... and {len(problems) - self.shown} more problems in {file}")
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{len(problems)} {noun} in {file}\n" + "\n".join(lines))


class ManifestRefused(GateError):
    """A manifest failed verification and must not be used."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class WireError(Exception):
    """A failure with a name that crosses the wire; ``status`` is its HTTP status, when it has one.

    Raised as it is for a refusal that is no one subclass's (a malformed body, a server
    too busy to take the request); ``str()`` is ``name: detail``.
    """

    #: The length ``detail`` is cut to; a remote's garbage can end up in it (it is logged and
    #: shown). None keeps it whole.
    kept: ClassVar[int | None] = None

    def __init__(self, name: str, detail: str, status: int | None = None) -> None:
        self.name = name
        self.detail = detail if self.kept is None else detail[: self.kept]
        self.status = status
        super().__init__(f"{name}: {self.detail}")


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
