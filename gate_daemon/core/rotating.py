"""Rotating holder-bound codes (``GDR1:``): a screenshot stops opening the gate after one step.

The issuer signs a **certificate**: the ticket's claims, as in a ``GD1`` ticket, together
with the holder's Ed25519 public key and the step length. The holder's device keeps the
matching secret key and shows a code that changes every ``period`` seconds: the
certificate, the current time step (``floor(unix time / period)``) and the holder key's
signature over both. A gate checks the issuer's signature (a ticket key of the manifest),
the holder's signature (the key inside the certificate) and the step against its own
clock, offline and with public keys only: nothing a gate holds can make a code.

Binary form (integers little-endian), written ``GDR1:<base32>`` like ``GD1``::

    certificate body
      u8    flags     bit0 valid_from, bit1 valid_until, bit2 session, bit3 zone
      4     key id    first 4 bytes of SHA-256 over the issuer's public key
      4     event tag as GD1 (``tokens.event_tag``)
      u8    entries   1..255, 0 = unlimited re-entry after an exit scan
      u8    period    seconds a step lasts, 1..255
      32    holder    the holder's Ed25519 public key
      [u32  valid_from]  [u32 valid_until]          (present when flagged)
      u8 n, n bytes      ticket id (UTF-8, 1..64 bytes)
      [u8 n, n bytes session]  [u8 n, n bytes zone]  (present when flagged)
    64    issuer signature over "gate-daemon/holder-cert/v1\\0" + body
    u32   step      floor(unix seconds / period) when the code was made
    64    holder signature over "gate-daemon/rotating/v1\\0" + body + issuer signature + step

The certificate id (what ``revoked_holders`` in the manifest lists when a ticket is
issued again to a new phone) is the first 8 bytes of SHA-256 over the certificate (body
and issuer signature), written as 16 hex digits.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from gate_daemon.core import base32
from gate_daemon.core.keys import SIGNATURE_SIZE, PublicKey, SecretKey
from gate_daemon.core.tokens import (
    ROTATING_PREFIX,
    TICKET_FLAGS,
    PayloadError,
    TicketClaims,
    decode_body,
    pack_ticket_tail,
    read_fields,
    ticket_claims,
    ticket_labels,
)

CERT_DOMAIN = b"gate-daemon/holder-cert/v1\x00"
CODE_DOMAIN = b"gate-daemon/rotating/v1\x00"
DEFAULT_PERIOD = 15
#: Steps either side of the gate's own that it accepts (the manifest may say otherwise).
DEFAULT_TOLERANCE = 1
MAX_TOLERANCE = 20
HOLDER_KEY_SIZE = 32

_HEAD = struct.Struct("<B4s4sBB32s")
_U32 = struct.Struct("<I")
_TAIL = _U32.size + SIGNATURE_SIZE


@dataclass(frozen=True, slots=True)
class RotatingCode:
    """A parsed (not yet verified) rotating code."""

    claims: TicketClaims
    kid: bytes
    period: int
    holder: bytes
    body: bytes
    issuer_signature: bytes
    step: int
    holder_signature: bytes

    @property
    def certificate(self) -> bytes:
        """The issuer's certificate: body and signature, the same in every code of this ticket."""
        return self.body + self.issuer_signature

    @property
    def certificate_id(self) -> str:
        """What ``revoked_holders`` lists to revoke this certificate."""
        return certificate_id(self.certificate)


@dataclass(frozen=True, slots=True)
class Fault:
    """Why a rotating code is refused: a reason of ``core.decision`` by its value, and words."""

    reason: str
    message: str
    ticket_id: str | None = None


def certificate_id(certificate: bytes) -> str:
    """The 16-hex-digit id of a certificate (body and issuer signature)."""
    return hashlib.sha256(certificate).digest()[:8].hex()


def repeat_key(payload: str, fingerprint: str) -> str:
    """What an input's repeat window compares: the page a rotating code came from, else the payload.

    A camera sees one code in many frames and drops a sighting that repeats the last within
    the window. A rotating code changes every step, so a phone held across a step boundary
    would show a new payload: its certificate id, the same in every step's code, is what
    repeats. Any other payload (and a rotating code that does not parse) is its ``fingerprint``.
    """
    if not payload.upper().startswith(ROTATING_PREFIX):
        return fingerprint
    try:
        code = parse_rotating(payload[len(ROTATING_PREFIX) :])
    except PayloadError:
        return fingerprint
    return "holder:" + code.certificate_id


def step_of(now: float, period: int) -> int:
    """The time step a moment falls in."""
    return int(now // period)


def issue_certificate(claims: TicketClaims, holder: PublicKey, key: SecretKey, period: int) -> bytes:
    """The issuer's certificate binding ``claims`` to the holder's key; ``ValueError`` if it cannot be."""
    if not 1 <= period <= 255:
        raise ValueError(f"period must be 1 to 255 seconds, got {period}")
    flags, tail = pack_ticket_tail(claims)
    head = _HEAD.pack(flags, key.public.kid_bytes, claims.event_tag, claims.entries, period, holder.raw)
    body = head + tail
    return body + key.sign(CERT_DOMAIN, body)


def encode_code(certificate: bytes, step: int, holder: SecretKey) -> str:
    """The payload the holder's device shows during ``step`` (the page does this in JavaScript)."""
    if not 0 <= step < 2**32:
        raise ValueError(f"step {step} is outside 0..2^32-1")
    stamped = certificate + _U32.pack(step)
    return ROTATING_PREFIX + base32.encode(stamped + holder.sign(CODE_DOMAIN, stamped))


def parse_rotating(body32: str) -> RotatingCode:
    """Read the base32 after ``GDR1:``, or raise ``PayloadError`` saying what is wrong."""
    raw = decode_body(body32, _HEAD.size + 2 + SIGNATURE_SIZE + _TAIL, "rotating code")
    certificate, stamp = raw[:-_TAIL], raw[-_TAIL:]
    body, issuer_signature = certificate[:-SIGNATURE_SIZE], certificate[-SIGNATURE_SIZE:]
    flags, kid, tag, entries, period, holder = _HEAD.unpack_from(body)
    if flags & ~TICKET_FLAGS:
        raise PayloadError(f"rotating code has unknown flags 0x{flags:02x}")
    if period == 0:
        raise PayloadError("rotating code has a period of 0 seconds")
    fields = read_fields(body, _HEAD.size, flags, ticket_labels(flags), "rotating code")
    return RotatingCode(
        claims=ticket_claims(fields, tag, entries),
        kid=kid,
        period=period,
        holder=holder,
        body=body,
        issuer_signature=issuer_signature,
        step=_U32.unpack_from(stamp)[0],
        holder_signature=stamp[_U32.size :],
    )


def check_code(
    code: RotatingCode,
    ticket_keys: Mapping[bytes, Sequence[PublicKey]],
    tag: bytes,
    revoked_holders: Collection[str],
    now: float,
    tolerance: int = DEFAULT_TOLERANCE,
) -> Fault | None:
    """Both signatures, the event, the certificate's revocation and the step; None if all pass.

    ``now`` is the gate's decision time (its floor included). A step more than
    ``tolerance`` steps before the gate's is ``expired_code`` (a screenshot, or a phone
    clock behind), and so is one more than ``tolerance`` steps after it (a phone clock ahead).
    """
    keys = ticket_keys.get(code.kid)
    if not keys:
        return Fault("unknown_key", "Ticket is signed by a key this event does not accept")
    if not any(k.verify(CERT_DOMAIN, code.body, code.issuer_signature) for k in keys):
        return Fault("bad_signature", "Ticket signature is not valid (forged or damaged code)")
    stamped = code.certificate + _U32.pack(code.step)
    if not PublicKey(code.holder).verify(CODE_DOMAIN, stamped, code.holder_signature):
        return Fault(
            "bad_signature", "Code is not signed by this ticket's holder key (forged or damaged code)"
        )
    tid = code.claims.ticket_id
    if code.claims.event_tag != tag:
        return Fault("wrong_event", "Ticket is for another event", tid)
    if code.certificate_id in revoked_holders:
        return Fault("revoked", "This ticket was issued again to another phone: this one is revoked", tid)
    steps = code.step - step_of(now, code.period)
    if steps < -tolerance:
        age = -steps * code.period
        return Fault(
            "expired_code", f"Code expired {age} s ago: a screenshot, or the phone's clock is behind", tid
        )
    if steps > tolerance:
        ahead = steps * code.period
        return Fault("expired_code", f"Code is {ahead} s in the future: the phone's clock is ahead", tid)
    return None
