"""An evidence row as a gate uploads it to the central: one scan, never its payload.

The gate's evidence log (``store/schema.py``, table ``scans``) holds one row per scan,
denials included. What travels is that row without the payload's fingerprint (a keyed
hash anyone who knows the event can compute from a code: a short order code could be
found from it by trying them all) and without the decision as shown (it may carry what
the ticket source says of the attendee): when, which device, who, which ticket, the
outcome, reason and resolution, and whether it was decided online or offline.

On the wire a row is a JSON object with exactly ``FIELDS`` (and, for a supervisor's
forced entry, ``overrides``: the refused scan's uuid, outcome and reason, an object of
``OVERRIDE_FIELDS``); ``parse_scan`` answers anything else with ``EvidenceError`` naming
the field. The gate that made the scan is
the gate that signed the upload: it is not a field.
"""

from __future__ import annotations

import math
import re
import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from gate_daemon.core.hlc import MAX_STAMP

#: The fields of an uploaded row, in the order of ``EvidenceScan``.
FIELDS = (
    "uuid", "hlc", "wall", "device", "operator", "ticket_id", "kind", "outcome", "reason", "resolution",
    "mode", "manifest_version",
)  # fmt: skip
#: An override row's optional field (``overrides``), and the fields of its object.
OPTIONAL = ("overrides",)
OVERRIDE_FIELDS = ("scan", "outcome", "reason")
#: The longest device, operator or ticket id, in characters.
MAX_TEXT = 64
#: Outcomes, reasons and resolutions are names: lowercase, digits and underscores.
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_MAX_WALL = 1e11
#: Control characters (C0, DEL, C1: a terminal's escapes) and lone surrogates (no UTF-8 for them).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class EvidenceError(ValueError):
    """An uploaded row that is not well formed; ``field`` names what is wrong."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


@dataclass(frozen=True, slots=True)
class EvidenceScan:
    """One scan at a gate, as uploaded."""

    uuid: str
    hlc: int
    wall: float
    device: str
    operator: str | None
    ticket_id: str | None
    kind: str
    outcome: str
    reason: str
    resolution: str
    mode: str
    manifest_version: int | None
    #: A forced entry's refused scan: {"scan": uuid, "outcome": name, "reason": name}; None otherwise.
    overrides: dict[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The row as it travels (``overrides`` only on an override's row)."""
        out = asdict(self)
        if self.overrides is None:
            del out["overrides"]
        return out


def parse_scan(data: object) -> EvidenceScan:
    """An uploaded row, checked field by field."""
    if not isinstance(data, Mapping):
        raise EvidenceError("scan", "must be a JSON object")
    unknown = sorted(repr(k)[:64] for k in data if k not in FIELDS and k not in OPTIONAL)
    if unknown:
        raise EvidenceError(unknown[0], "is not a field of an evidence row")
    missing = [name for name in FIELDS if name not in data]
    if missing:
        raise EvidenceError(missing[0], "is missing")
    uuid = data["uuid"]
    try:
        canonical = isinstance(uuid, str) and str(uuidlib.UUID(uuid)) == uuid
    except ValueError:
        canonical = False
    if not canonical:
        raise EvidenceError("uuid", "must be a UUID in its canonical form")
    hlc = _whole(data, "hlc", MAX_STAMP)
    wall = data["wall"]
    if isinstance(wall, bool) or not isinstance(wall, int | float) or not math.isfinite(wall):
        raise EvidenceError("wall", "must be a time in seconds since 1970")
    if not 0 <= wall < _MAX_WALL:
        raise EvidenceError("wall", "must be a time in seconds since 1970")
    version = None if data["manifest_version"] is None else _whole(data, "manifest_version", (1 << 63) - 1)
    kind, mode = data["kind"], data["mode"]
    if kind not in ("entry", "exit"):
        raise EvidenceError("kind", 'must be "entry" or "exit"')
    if mode not in ("online", "offline"):
        raise EvidenceError("mode", 'must be "online" or "offline"')
    return EvidenceScan(
        str(uuid), hlc, float(wall), _text(data, "device", optional=False) or "",
        _text(data, "operator"), _text(data, "ticket_id"), str(kind), _name(data, "outcome"),
        _name(data, "reason"), _name(data, "resolution"), str(mode), version, _overrides(data),
    )  # fmt: skip


def _overrides(data: Mapping[str, Any]) -> dict[str, str] | None:
    """An override's refused scan, checked field by field (None when the row is no override)."""
    value = data.get("overrides")
    if value is None:
        return None
    if not isinstance(value, Mapping) or sorted(value) != sorted(OVERRIDE_FIELDS):
        raise EvidenceError("overrides", 'must be null or an object of "scan", "outcome" and "reason"')
    try:
        canonical = isinstance(value["scan"], str) and str(uuidlib.UUID(value["scan"])) == value["scan"]
    except ValueError:
        canonical = False
    if not canonical:
        raise EvidenceError("overrides.scan", "must be a UUID in its canonical form")
    try:
        return {
            "scan": str(value["scan"]),
            "outcome": _name(value, "outcome"),
            "reason": _name(value, "reason"),
        }
    except EvidenceError as exc:
        raise EvidenceError(f"overrides.{exc.field}", exc.detail) from None


def _whole(data: Mapping[str, Any], name: str, high: int) -> int:
    value = data[name]
    # JSON has one kind of number: 7.0 and 7e0 are the integer 7 (JSON Schema's "integer").
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise EvidenceError(name, f"must be a whole number from 0 to {high}")
    return value


def _text(data: Mapping[str, Any], name: str, *, optional: bool = True) -> str | None:
    value = data[name]
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or _CONTROL.search(value):
        raise EvidenceError(name, f"must be {'null or ' if optional else ''}text without control characters")
    if len(value) > MAX_TEXT:
        raise EvidenceError(name, f"must be at most {MAX_TEXT} characters")
    return value


def _name(data: Mapping[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise EvidenceError(name, "must be a name: lowercase letters, digits and _, at most 64")
    return value
