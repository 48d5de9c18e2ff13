"""The central's signed time: what the central puts in its answers, and how a gate checks it.

An answer of the central to a signed request that succeeded (docs/upstream.openapi.yaml)
carries ``Central-Time: <ms>.<signature>``: the central's clock in milliseconds since 1970
and a base64 Ed25519 signature over ``DOMAIN``, those milliseconds and the request's own
``Gate-Signature``, by the key the central signs manifests with, which the gate already
trusts (``[manifest] trusted_keys``). The ``Date`` header, by contrast, is signed by
nobody: anyone on the path can change it.

Binding the time to the request it answers means a signed time cannot be replayed: every
request's signature is new (it covers a challenge used once), and a gate takes a time
only for the request it sent. What someone on the path can still do is hold an answer
back, which makes the time it carries older than it seems by the delay: the gate counts
it from the exchange's midpoint, so the delay shows as round trip, and trusts an answer
only within its round trip (``gate_daemon.gate.clock``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from gate_daemon.core.keys import SIGNATURE_SIZE, PublicKey, SecretKey

DOMAIN = b"gate-daemon/central-time/v1\x00"
HEADER_CENTRAL_TIME = "Central-Time"
#: The longest header value read: 16 digits, a dot and 88 characters of signature, with room.
MAX_VALUE = 128


class CentralTimeError(ValueError):
    """A signed time that cannot be taken: missing, malformed, or not signed by a trusted key."""


def signed_time(key: SecretKey, now: float, request_signature: str) -> str:
    """The header value answering the request signed ``request_signature``, at the central's time ``now``."""
    millis = str(int(now * 1000))
    signature = key.sign(DOMAIN, _message(millis, request_signature))
    return f"{millis}.{base64.b64encode(signature).decode()}"


def read_signed_time(value: str | None, request_signature: str, trusted: Sequence[PublicKey]) -> float:
    """The central's time (seconds since 1970) in a header value, checked; ``CentralTimeError`` otherwise."""
    if value is None:
        raise CentralTimeError(f"its answers carry no {HEADER_CENTRAL_TIME} header")
    millis, _, encoded = value.partition(".")
    if len(value) > MAX_VALUE or not (millis.isascii() and millis.isdigit() and len(millis) <= 16):
        raise CentralTimeError(f"its {HEADER_CENTRAL_TIME} header is not <milliseconds>.<signature>")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    message = _message(millis, request_signature)
    if len(raw) != SIGNATURE_SIZE or not any(key.verify(DOMAIN, message, raw) for key in trusted):
        raise CentralTimeError(
            f"its {HEADER_CENTRAL_TIME} is not signed by a trusted manifest key for the request it answers"
        )
    return int(millis) / 1000


def _message(millis: str, request_signature: str) -> bytes:
    """The bytes a signed time covers (after ``DOMAIN``)."""
    return f"{millis}\n{request_signature}".encode("utf-8", "surrogateescape")
