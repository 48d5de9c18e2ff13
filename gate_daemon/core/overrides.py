"""Forced entries as reports show them: who overrode which refusal, where and when.

A supervisor's badge scanned just after a refusal admits the person (``gate.staff``): the
evidence row of that forced entry (resolution ``overridden``) names the supervisor and
the refused scan, its outcome and reason. ``gatectl report overrides`` reads them from a
gate's ledger, ``gate-central report`` from the evidence the gates uploaded. Forced
entries take no part in conflict verdicts (``core.conflicts``): they are listed beside
them instead.

Pure: rows in, text out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from gate_daemon.core.times import format_instant


@dataclass(frozen=True, slots=True)
class Override:
    """One forced entry: the override's scan and the refusal it overrode."""

    uuid: str
    gate: str
    wall: float
    #: The supervisor whose badge admitted the person.
    supervisor: str | None
    ticket_id: str | None
    #: The refused scan's uuid, outcome and reason.
    refused_scan: str | None
    refused_outcome: str | None
    refused_reason: str | None

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON: its fields, ``at`` as an RFC 3339 instant."""
        out = asdict(self)
        out["at"] = format_instant(self.wall)
        return out


def override_of(values: Sequence[Any]) -> Override:
    """An override from a row: uuid, gate, wall, supervisor, ticket, refused scan, outcome, reason."""
    uuid, gate, wall, *rest = values
    supervisor, ticket, scan, outcome, reason = (None if v is None else str(v) for v in rest)
    return Override(str(uuid), str(gate), float(wall), supervisor, ticket, scan, outcome, reason)


def overrides_text(rows: Sequence[Override]) -> str:
    """The report's lines: one per forced entry, and a count."""
    if not rows:
        return "no overrides: no supervisor admitted anyone refused"
    lines = [f"{'when':<21} {'gate':<12} {'ticket':<16} {'supervisor':<14} overrode"]
    for row in rows:
        refused = (
            f"{row.refused_outcome or '?'} ({row.refused_reason or '?'}), scan {row.refused_scan or '?'}"
        )
        lines.append(
            f"{format_instant(row.wall):<21} {row.gate:<12} {row.ticket_id or '-':<16} "
            f"{row.supervisor or '-':<14} {refused}"
        )
    lines.append(f"{len(rows)} override{'s' if len(rows) != 1 else ''}")
    return "\n".join(lines)
