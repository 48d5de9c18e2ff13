"""The upstream contract's request bodies and query strings, parsed into values or a named error.

Pure: text and bytes in, values out. Every refusal is an ``ApiError`` whose ``detail``
names the field (``records: ...``, ``q: ...``), answered as ``{"error", "detail"}``.
"""

from __future__ import annotations

import json
import math
import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gate_daemon.core.commands import IDENT, NONCE
from gate_daemon.core.decision import ScanKind
from gate_daemon.errors import WireError

#: Request bodies larger than this are refused (``too_large``).
MAX_BODY = 1 << 20
#: A supervisor's command envelope, at most.
MAX_COMMAND = 4 << 10
#: Command nonces one heartbeat acknowledges, at most.
MAX_ACKED = 256
#: A heartbeat's body, at most.
MAX_HEARTBEAT = 64 << 10
#: Records in one push, and in one pull page, at most.
MAX_RECORDS = 500
MAX_PAYLOAD = 4096
MAX_COUNTERS = 1000
_MAX_LABEL = 64


class ApiError(WireError):
    """A request answered with a named error and its HTTP status."""

    def __init__(self, name: str, detail: str, status: int) -> None:
        super().__init__(name, detail, status)


def bad(detail: str) -> ApiError:
    """A ``400 bad_request`` naming the field in ``detail``."""
    return ApiError("bad_request", detail, 400)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def parse_object(body: bytes) -> dict[str, Any]:
    """A JSON object from a request body; ``not_json`` or ``bad_request`` otherwise."""
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ApiError("not_json", "the body is not UTF-8 JSON", 400) from None
    if not isinstance(data, dict):
        raise bad("the body must be a JSON object")
    return data


def _fields(data: Mapping[str, Any], allowed: set[str], required: set[str]) -> None:
    unknown = sorted(k for k in data if k not in allowed)
    if unknown:
        raise bad(f"{unknown[0][:64]}: is not a field of this request")
    missing = sorted(required - data.keys())
    if missing:
        raise bad(f"{missing[0]}: is missing")


def parse_push(data: Mapping[str, Any]) -> list[object]:
    """A push's records, not yet checked one by one."""
    _fields(data, {"records"}, {"records"})
    records = data["records"]
    if not isinstance(records, list) or not records:
        raise bad(f"records: must be a list of 1 to {MAX_RECORDS} records")
    if len(records) > MAX_RECORDS:
        raise ApiError("too_large", f"records: at most {MAX_RECORDS} in one push, got {len(records)}", 413)
    return records


def _one(query: Mapping[str, str], name: str) -> str | None:
    getall = getattr(query, "getall", None)
    values = getall(name, []) if getall is not None else ([query[name]] if name in query else [])
    if len(values) > 1:
        raise bad(f"{name}: given more than once")
    return values[0] if values else None


def _whole(query: Mapping[str, str], name: str, low: int, high: int, default: int | None) -> int | None:
    text = _one(query, name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 19 and low <= int(text) <= high):
        raise bad(f"{name}: must be a whole number from {low} to {high}")
    return int(text)


def parse_have(query: Mapping[str, str]) -> int | None:
    """``GET /v1/manifest``'s ``have``: the version the gate holds, if any."""
    return _whole(query, "have", 0, (1 << 63) - 1, None)


def parse_pull(query: Mapping[str, str]) -> tuple[int, int]:
    """``GET /v1/checkins``'s ``after`` and ``limit``."""
    after = _whole(query, "after", 0, (1 << 63) - 1, 0)
    limit = _whole(query, "limit", 1, MAX_RECORDS, MAX_RECORDS)
    assert after is not None and limit is not None
    return after, limit


def parse_search(query: Mapping[str, str]) -> tuple[str, int]:
    """``GET /v1/participants``'s ``q`` and ``limit``."""
    q = _one(query, "q")
    if q is None or not 2 <= len(q) <= 64 or not q.isprintable():
        raise bad("q: must be 2 to 64 printable characters")
    limit = _whole(query, "limit", 1, 50, 20)
    assert limit is not None
    return q, limit


@dataclass(frozen=True, slots=True)
class ValidateRequest:
    """An online validation: a scan the gate asks the central to decide."""

    uuid: str
    payload: str
    kind: ScanKind
    zone: str | None
    session: str | None


def _label(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value.encode("utf-8", "replace")) <= _MAX_LABEL:
        raise bad(f"{name}: must be null or 1 to {_MAX_LABEL} bytes of text")
    if not value.isprintable():
        raise bad(f"{name}: must be printable text")
    return value


def parse_validate(data: Mapping[str, Any]) -> ValidateRequest:
    """A ``POST /v1/validate`` body."""
    _fields(data, {"uuid", "payload", "kind", "zone", "session"}, {"uuid", "payload", "kind"})
    uuid = _canonical_uuid(data["uuid"])
    payload = data["payload"]
    if not isinstance(payload, str) or len(payload) > MAX_PAYLOAD:
        raise bad(f"payload: must be a string of at most {MAX_PAYLOAD} characters")
    kind = data["kind"]
    if kind not in ("entry", "exit"):
        raise bad('kind: must be "entry" or "exit"')
    return ValidateRequest(uuid, payload, ScanKind(kind), _label(data, "zone"), _label(data, "session"))


def parse_release(data: Mapping[str, Any]) -> str:
    """A ``POST /v1/validate/release`` body: the uuid of a validation to take back."""
    _fields(data, {"uuid"}, {"uuid"})
    return _canonical_uuid(data["uuid"])


def _canonical_uuid(value: object) -> str:
    """A scan's uuid, which must be written as ``str(uuid.UUID(...))`` writes it."""
    try:
        canonical = isinstance(value, str) and str(uuidlib.UUID(value)) == value
    except ValueError:
        canonical = False
    if not canonical:
        raise bad("uuid: must be a UUID in its canonical form")
    return str(value)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A gate's periodic report."""

    sent_at: float
    counters: dict[str, int]
    status: dict[str, Any]
    #: Nonces of supervisors' commands the gate took from earlier answers (applied or refused).
    acked: tuple[str, ...] = ()


def parse_heartbeat(data: Mapping[str, Any]) -> Heartbeat:
    """A ``POST /v1/heartbeat`` body."""
    _fields(data, {"sent_at", "counters", "status", "acked"}, {"sent_at", "counters", "status"})
    sent_at = data["sent_at"]
    if isinstance(sent_at, bool) or not isinstance(sent_at, int | float):
        raise bad("sent_at: must be a time in seconds since 1970")
    if not (-1e11 < sent_at < 1e11) or (isinstance(sent_at, float) and not math.isfinite(sent_at)):
        raise bad("sent_at: must be a time in seconds since 1970")
    counters = data["counters"]
    if not isinstance(counters, dict) or len(counters) > MAX_COUNTERS:
        raise bad(f"counters: must be an object of at most {MAX_COUNTERS} names")
    whole: dict[str, int] = {}
    for name, value in counters.items():
        if not 1 <= len(name) <= 128:
            raise bad("counters: names must be 1 to 128 characters")
        # JSON has one kind of number: 7.0 and 7e0 are the integer 7 (JSON Schema's "integer").
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not -(1 << 63) <= value < 1 << 63:
            raise bad(f"counters.{name[:64]}: must be a whole number from -2^63 to 2^63-1")
        whole[name] = value
    status = data["status"]
    if not isinstance(status, dict):
        raise bad("status: must be an object")
    acked = data.get("acked", [])
    if not isinstance(acked, list) or len(acked) > MAX_ACKED:
        raise bad(f"acked: must be a list of at most {MAX_ACKED} command nonces")
    if not all(isinstance(nonce, str) and NONCE.fullmatch(nonce) for nonce in acked):
        raise bad("acked: each must be a command's nonce, 32 lowercase hex digits")
    return Heartbeat(float(sent_at), whole, status, tuple(acked))


def parse_gate(query: Mapping[str, str]) -> str:
    """``GET /v1/commands``: ``gate``, a gate id."""
    _fields(query, {"gate"}, {"gate"})
    gate = query["gate"]
    if IDENT.fullmatch(gate) is None:
        raise bad("gate: must be a gate id (letters, digits, . _ -; at most 64)")
    return gate
