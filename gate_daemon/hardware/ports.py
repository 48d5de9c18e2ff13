"""The shapes every input and signals adapter has."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from gate_daemon.core.decision import Decision


class ScanInput(Protocol):
    """Something that produces scanned payloads (a camera, a scanner, a test's stdin)."""

    name: str
    #: ``time.monotonic()`` of the input's last sign of life (the watchdog withholds its ping
    #: when it goes stale), or None for an input that may rightly wait in silence.
    last_alive: float | None

    def payloads(self) -> AsyncIterator[str]:
        """Payloads as they are read; ends when the input is exhausted or closed."""

    async def aclose(self) -> None:
        """Stop reading and release the device."""


class Signals(Protocol):
    """Where decisions are shown (lights, buzzer, console)."""

    def show(self, decision: Decision) -> None:
        """Show one decision; must return at once (patterns run in the background)."""

    async def aclose(self) -> None:
        """Turn every output off."""
