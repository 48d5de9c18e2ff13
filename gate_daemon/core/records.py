"""Redemption records: what a gate shares with its peers and the server, and how it is signed.

A record is one entry, exit or void that happened at its ``origin`` gate. ``(origin,
epoch, seq)`` places it in that gate's log (``epoch`` names the origin's database: a
reset database starts a new epoch at seq 1); ``uuid`` makes it idempotent wherever it
travels; ``hlc`` orders it among everyone's records.

Every record is signed by its origin with the gate key the manifest's roster lists, over
the canonical bytes below, so a gate relaying another's records cannot forge or alter
one, and the central server can check where each came from. Ed25519 signatures are
deterministic, so a gate signs its own records when they leave it rather than storing
the signature: the same record always carries the same signature.

On the wire a record is a JSON object with exactly the fields of ``Redemption`` plus
``sig`` (base64). ``parse_record`` answers anything else with ``RecordError`` naming
the field.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any

from gate_daemon.core.hlc import MAX_STAMP
from gate_daemon.core.keys import SIGNATURE_SIZE, PublicKey, SecretKey

#: The signature domain: a record's signature can never be taken for anything else's.
DOMAIN = b"gate-daemon/redemption/v1\x00"
KINDS = ("entry", "exit", "void")
MODES = ("offline", "online")
#: The longest ticket id, gate id, epoch or operator name a record may carry, in bytes.
MAX_TEXT = 64
MAX_SEQ = (1 << 62) - 1

_FIELDS = (
    "uuid", "ticket_id", "kind", "slot", "origin", "epoch", "seq", "hlc", "wall", "operator", "mode",
    "forced", "voids",
)  # fmt: skip


class RecordError(ValueError):
    """A record that is not well formed; ``field`` names what is wrong."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Redemption:
    """An entry, exit or void that happened at gate ``origin``."""

    uuid: str
    ticket_id: str
    kind: str
    slot: int | None
    origin: str
    epoch: str
    seq: int
    hlc: int
    wall: float
    operator: str | None
    mode: str
    forced: bool = False
    #: The uuid of the entry or exit a void takes back (voids only).
    voids: str | None = None

    def signing_bytes(self) -> bytes:
        """The canonical bytes the origin signs: every field, in a fixed order."""
        values = [getattr(self, name) for name in _FIELDS]
        return json.dumps(values, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode()

    def sign(self, key: SecretKey) -> str:
        """The origin's signature of this record, base64."""
        return base64.b64encode(key.sign(DOMAIN, self.signing_bytes())).decode()

    def signed_by(self, key: PublicKey, signature: str) -> bool:
        """Whether ``signature`` (base64) is ``key``'s signature of this record."""
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            return False
        return len(raw) == SIGNATURE_SIZE and key.verify(DOMAIN, self.signing_bytes(), raw)

    def wire(self, signature: str) -> dict[str, Any]:
        """The record as sent: its fields and the origin's signature."""
        out: dict[str, Any] = {name: getattr(self, name) for name in _FIELDS}
        out["sig"] = signature
        return out


def parse_record(value: object) -> tuple[Redemption, str]:
    """A record and its signature from its wire form (not yet verified); ``RecordError`` otherwise."""
    if not isinstance(value, dict):
        raise RecordError("record", f"must be an object, found {_kind(value)}")
    unknown = sorted(str(k) for k in value if k not in _FIELDS and k != "sig")
    if unknown:
        raise RecordError(unknown[0], "is not a field of a record")
    missing = [name for name in (*_FIELDS, "sig") if name not in value]
    if missing:
        raise RecordError(missing[0], "is missing")
    kind = _choice(value, "kind", KINDS)
    forced = value["forced"]
    if not isinstance(forced, bool):
        raise RecordError("forced", f"must be true or false, found {_kind(forced)}")
    slot = value["slot"]
    if kind == "void":
        if slot is not None:
            raise RecordError("slot", "must be null for a void")
    elif slot is None:
        if not (forced and kind == "entry"):
            raise RecordError("slot", "only a forced entry (or a void) may have no slot")
    elif not (_is_int(slot) and 1 <= slot <= MAX_SEQ):
        raise RecordError(
            "slot", f"must be a whole number from 1 to {MAX_SEQ} (null for a forced entry or a void)"
        )
    voids = value["voids"]
    if kind == "void":
        voids = _uuid(value, "voids")
    elif voids is not None:
        raise RecordError("voids", "must be null unless the record is a void")
    operator = value["operator"]
    if operator is not None:
        operator = _text(value, "operator")
    record = Redemption(
        uuid=_uuid(value, "uuid"),
        ticket_id=_text(value, "ticket_id"),
        kind=kind,
        slot=slot,
        origin=_text(value, "origin"),
        epoch=_text(value, "epoch"),
        seq=_whole(value, "seq", 1, MAX_SEQ),
        hlc=_whole(value, "hlc", 0, MAX_STAMP),
        wall=_wall(value),
        operator=operator,
        mode=_choice(value, "mode", MODES),
        forced=forced,
        voids=voids,
    )
    signature = value["sig"]
    if not isinstance(signature, str) or len(signature) > 2 * SIGNATURE_SIZE:
        raise RecordError("sig", "must be a base64 signature")
    return record, signature


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _whole(value: dict[str, Any], field: str, low: int, high: int) -> int:
    number = value[field]
    if not (_is_int(number) and low <= number <= high):
        raise RecordError(field, f"must be a whole number from {low} to {high}")
    return int(number)


def _text(value: dict[str, Any], field: str) -> str:
    text = value[field]
    if not isinstance(text, str):
        raise RecordError(field, f"must be a string, found {_kind(text)}")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise RecordError(field, "is not valid text") from None
    if not 1 <= size <= MAX_TEXT or not text.isprintable():
        raise RecordError(field, f"must be 1 to {MAX_TEXT} bytes of printable text")
    return text


def _uuid(value: dict[str, Any], field: str) -> str:
    text = value[field]
    try:
        if isinstance(text, str) and str(uuidlib.UUID(text)) == text:
            return text
    except ValueError:
        pass
    raise RecordError(field, "must be a UUID in its canonical form")


def _choice(value: dict[str, Any], field: str, allowed: tuple[str, ...]) -> str:
    text = value[field]
    if text not in allowed:
        raise RecordError(field, f"must be one of {', '.join(allowed)}")
    return str(text)


def _wall(value: dict[str, Any]) -> float:
    wall = value["wall"]
    if _is_int(wall) and 0 <= wall < 10**11:  # checked first: float() overflows on a huge integer
        wall = float(wall)
    if not isinstance(wall, float) or not math.isfinite(wall) or not 0 <= wall < 1e11:
        raise RecordError("wall", "must be a time in seconds since 1970")
    return wall
