"""Simulated lights: one line per decision on a terminal, coloured like the gate's LEDs."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from gate_daemon.core.decision import Decision
from gate_daemon.core.reasons import Outcome

_COLOUR = {
    Outcome.ALLOW: "\x1b[1;32m",  # green
    Outcome.DENY: "\x1b[1;31m",  # red
    Outcome.ALREADY_USED: "\x1b[1;33m",  # yellow
    Outcome.TOO_EARLY: "\x1b[1;33m",  # yellow
    Outcome.STAFF: "\x1b[1;36m",  # cyan: a staff badge, no ticket's colour
}
_LABEL = {
    Outcome.ALLOW: "ALLOW",
    Outcome.DENY: "DENY",
    Outcome.ALREADY_USED: "USED",
    Outcome.TOO_EARLY: "EARLY",
    Outcome.STAFF: "STAFF",
}
_RESET = "\x1b[0m"


def render(decision: Decision, colour: bool) -> str:
    """``HH:MM:SS ALLOW  ok  T-0001  Entry allowed`` with the details that matter."""
    outcome = decision.outcome
    label = f"{_LABEL[outcome]:<6}"
    if colour:
        label = f"{_COLOUR[outcome]}{label}{_RESET}"
    parts = [time.strftime("%H:%M:%S"), label, f"{decision.reason.value:<18}"]
    if decision.ticket_id:
        parts.append(decision.ticket_id)
    parts.append(decision.message)
    return "  ".join(parts)


class ConsoleSignals:
    """Prints each decision as one line (colour when ``color`` is always, or auto on a tty)."""

    def __init__(self, stream: TextIO | None = None, color: str = "auto") -> None:
        self._stream = stream if stream is not None else sys.stdout
        isatty = getattr(self._stream, "isatty", lambda: False)
        self._colour = color == "always" or (color == "auto" and isatty())
        self._problem: str | None = None

    def show(self, decision: Decision) -> None:
        """Print the decision's line and flush it."""
        self._stream.write(render(decision, self._colour) + "\n")
        self._stream.flush()

    def service(self, problem: str | None) -> None:
        """A line when the gate goes out of service (saying why) and when it is back."""
        if problem == self._problem:
            return
        self._problem = problem
        stamp = time.strftime("%H:%M:%S")
        if problem is None:
            line = f"{stamp}  IN SERVICE"
        else:
            label = f"{_COLOUR[Outcome.DENY]}OUT OF SERVICE{_RESET}" if self._colour else "OUT OF SERVICE"
            line = f"{stamp}  {label}: {problem}"
        self._stream.write(line + "\n")
        self._stream.flush()

    async def aclose(self) -> None:
        """Nothing to turn off."""
