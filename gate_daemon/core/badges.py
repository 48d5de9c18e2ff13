"""Staff badges: who works a gate, signed by a staff key the signed manifest lists.

A badge is ``GDS1:<base32>`` (RFC 4648, upper case, no padding: QR alphanumeric, like a
signed ticket). It is never a ticket: it signs its holder in at a gate, or (a
supervisor's, just after a refusal) admits the person refused (``gate.staff``).

Binary body (integers little-endian)::

    u8    flags     bit0 valid_from, bit1 valid_until
    4     key id    first 4 bytes of SHA-256 over the staff public key
    4     event tag first 4 bytes of SHA-256 over "gate-daemon/event\\0" + event id
    u8    role      1 steward, 2 supervisor
    [u32  valid_from]  [u32 valid_until]          (present when flagged)
    u8 n, n bytes      operator id (UTF-8, 1..32 bytes)
    u8 n, n bytes      name (UTF-8, 1..64 bytes)
    64    Ed25519 signature over "gate-daemon/staff/v1\\0" + everything above

The signature's domain differs from a ticket's, and the manifest lists staff keys apart
from ticket keys (``staff_keys``): a ticket key cannot sign a badge, nor a staff key a
ticket. ``revoked_staff`` lists operator ids whose badges are refused.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from gate_daemon.core import base32
from gate_daemon.core.keys import SIGNATURE_SIZE, PublicKey, SecretKey
from gate_daemon.core.tokens import (
    F_FROM,
    F_UNTIL,
    PayloadError,
    SignedBody,
    decode_body,
    pack_moments,
    read_fields,
)

BADGE_PREFIX = "GDS1:"
STAFF_DOMAIN = b"gate-daemon/staff/v1\x00"
MAX_OPERATOR = 32
MAX_NAME = 64
#: The longest badge text: every field at its longest, in base32.
MAX_BADGE = len(BADGE_PREFIX) + -(
    -(1 + 4 + 4 + 1 + 8 + 1 + MAX_OPERATOR + 1 + MAX_NAME + SIGNATURE_SIZE) * 8 // 5
)

_HEAD = struct.Struct("<B4s4sB")


class Role(StrEnum):
    """What a badge lets its holder do: sign in (both), override a refusal (supervisors)."""

    STEWARD = "steward"
    SUPERVISOR = "supervisor"


_ROLE_CODES = {Role.STEWARD: 1, Role.SUPERVISOR: 2}
_CODE_ROLES = {code: role for role, code in _ROLE_CODES.items()}


class BadgeRefusal(StrEnum):
    """Why a badge is refused; each is a reason of its own (``core.reasons.Reason``)."""

    INVALID = "badge_invalid"
    UNKNOWN_KEY = "badge_unknown_key"
    BAD_SIGNATURE = "badge_bad_signature"
    WRONG_EVENT = "badge_wrong_event"
    REVOKED = "badge_revoked"
    NOT_YET_VALID = "badge_not_yet_valid"
    EXPIRED = "badge_expired"


class BadgeError(ValueError):
    """A badge is refused; ``refusal`` names why, ``detail`` says it for people."""

    def __init__(self, refusal: BadgeRefusal, detail: str) -> None:
        super().__init__(detail)
        self.refusal = refusal
        self.detail = detail


@dataclass(frozen=True, slots=True)
class BadgeClaims:
    """What a badge asserts."""

    operator: str
    name: str
    role: Role
    event_tag: bytes
    valid_from: int | None = None
    valid_until: int | None = None


@dataclass(frozen=True, slots=True)
class Badge(SignedBody[BadgeClaims]):
    """A parsed (not yet verified) badge."""

    domain: ClassVar[bytes] = STAFF_DOMAIN


def is_badge(text: str) -> bool:
    """Whether ``text`` claims to be a badge (its prefix; case as scanners may fold it)."""
    return text[: len(BADGE_PREFIX)].upper() == BADGE_PREFIX


def _field(value: str, what: str, limit: int) -> bytes:
    raw = value.encode()
    if not 0 < len(raw) <= limit or not value.isprintable():
        raise ValueError(f"{what} must be 1 to {limit} bytes of printable UTF-8")
    return raw


def encode_badge(claims: BadgeClaims, key: SecretKey) -> str:
    """Sign ``claims`` with the staff key and return the QR payload text."""
    flags, tail = pack_moments(claims.valid_from, claims.valid_until)
    if (
        claims.valid_from is not None
        and claims.valid_until is not None
        and claims.valid_until <= claims.valid_from
    ):
        raise ValueError("valid_until must be later than valid_from")
    for value, what, limit in (
        (claims.operator, "operator id", MAX_OPERATOR),
        (claims.name, "name", MAX_NAME),
    ):
        raw = _field(value, what, limit)
        tail += bytes([len(raw)]) + raw
    body = _HEAD.pack(flags, key.public.kid_bytes, claims.event_tag, _ROLE_CODES[claims.role]) + tail
    return BADGE_PREFIX + base32.encode(body + key.sign(STAFF_DOMAIN, body))


def parse_badge(text: str) -> Badge:
    """Read a badge's structure (not its signature), or raise ``BadgeError`` (``badge_invalid``)."""
    if not is_badge(text):
        raise _invalid("not a staff badge")
    if len(text) > MAX_BADGE:
        raise _invalid(f"badge is {len(text)} characters, more than {MAX_BADGE}")
    try:
        return _read_badge(text[len(BADGE_PREFIX) :])
    except PayloadError as exc:
        raise _invalid(exc.detail) from None


def _read_badge(body32: str) -> Badge:
    raw = decode_body(body32, _HEAD.size + 4 + SIGNATURE_SIZE, "badge")
    signed, signature = raw[:-SIGNATURE_SIZE], raw[-SIGNATURE_SIZE:]
    flags, kid, tag, role_code = _HEAD.unpack_from(signed)
    if flags & ~(F_FROM | F_UNTIL):
        raise PayloadError(f"badge has unknown flags 0x{flags:02x}")
    role = _CODE_ROLES.get(role_code)
    if role is None:
        raise PayloadError(f"badge has unknown role {role_code}")
    fields = read_fields(signed, _HEAD.size, flags, ((True, MAX_OPERATOR), (True, MAX_NAME)), "badge")
    operator, name = fields.labels
    if not (operator.isprintable() and name.isprintable()):
        raise PayloadError("badge has a field with control characters")
    claims = BadgeClaims(operator, name, role, tag, fields.valid_from, fields.valid_until)
    return Badge(claims, kid, signed, signature)


def check_badge(
    text: str,
    *,
    staff_keys: Iterable[PublicKey],
    revoked: Collection[str],
    event_tag: bytes,
    now: float,
) -> BadgeClaims:
    """A badge's claims once it is read, verified and current; ``BadgeError`` naming why not.

    Checked in this order: structure, key listed, signature, event, revocation, time.
    """
    badge = parse_badge(text)
    keys = [k for k in staff_keys if k.kid_bytes == badge.kid]
    if not keys:
        raise BadgeError(BadgeRefusal.UNKNOWN_KEY, "Badge refused: its key is not a staff key of this event")
    if not any(badge.verify(k) for k in keys):
        raise BadgeError(BadgeRefusal.BAD_SIGNATURE, "Badge refused: its signature is not valid")
    claims = badge.claims
    if claims.event_tag != event_tag:
        raise BadgeError(BadgeRefusal.WRONG_EVENT, "Badge refused: it is for another event")
    if claims.operator in revoked:
        raise BadgeError(BadgeRefusal.REVOKED, f"Badge refused: {claims.operator} is revoked")
    if claims.valid_from is not None and now < claims.valid_from:
        raise BadgeError(BadgeRefusal.NOT_YET_VALID, "Badge refused: not valid yet")
    if claims.valid_until is not None and now >= claims.valid_until:
        raise BadgeError(BadgeRefusal.EXPIRED, "Badge refused: expired")
    return claims


def _invalid(detail: str) -> BadgeError:
    return BadgeError(BadgeRefusal.INVALID, f"Badge refused: {detail}")
