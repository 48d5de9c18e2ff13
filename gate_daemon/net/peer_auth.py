"""Signed requests between gates, with replay protection that needs no agreeing clocks.

A peer request carries four headers:

- ``Gate-Id``: the sending gate, which must be in the active manifest's roster;
- ``Gate-Time``: the sender's wall clock in milliseconds (signed evidence, and how the
  receiver measures a peer's clock offset; never used to accept or refuse);
- ``Gate-Nonce``: a challenge the *receiving* gate issued, used once;
- ``Gate-Signature``: base64 Ed25519 over ``DOMAIN`` and the lines method, path with
  query, SHA-256 of the body (hex), time, nonce and gate id.

Challenges come from ``GET /v1/challenge`` (rate-limited per address) and, after the
first, from the ``Gate-Challenge`` header of every answer to a signed request, so a
steady exchange needs no extra round trips. A challenge is the receiver's own
creation: its issue time on the receiver's monotonic clock, random bytes and an HMAC
under a secret made at start. So a receiver accepts only challenges it issued since it
started, within ``TTL`` by its own clock, each once: a recorded request replayed later,
to another gate, or after a restart finds its challenge expired, foreign or used. No
two clocks are ever compared.

A challenge is spent when it is presented, before the (costlier) signature check, so
every Ed25519 verification costs the sender one challenge, and challenges are
rate-limited: forged traffic cannot buy unbounded verification work.

The sending side is ``gate_daemon.net.signing``; the names both sides share are here.
Only a request that does not authenticate is an ``AuthError``; a malformed ``Gate-Time``,
a gate without a roster and a gate with too many challenges in flight are ``WireError``
refusals of their own (``bad_request``, ``no_roster``, ``busy``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gate_daemon.core.keys import SIGNATURE_SIZE, PublicKey, SecretKey
from gate_daemon.errors import WireError

DOMAIN = b"gate-daemon/peer-request/v1\x00"
#: How long a challenge may be used after it was issued (receiver's monotonic clock).
TTL = 30.0
#: How long a sender uses a challenge after it came: well inside ``TTL``, for the time the
#: request takes to arrive.
CHALLENGE_AGE = 20.0
#: The longest challenge a sender takes (this side issues 48 characters).
MAX_CHALLENGE = 200
#: The refusals of a challenge that a fresh one cures: the sender fetches one and tries once more.
STALE = frozenset({"bad_nonce", "stale_nonce", "replayed"})
#: Spent challenges remembered at most (more are refused as ``busy`` until some expire).
MAX_SPENT = 65536
#: Spent challenges remembered at most for one client address, a quarter of ``MAX_SPENT``:
#: one address cannot take the table from the others (a gate draining to the central at
#: full speed holds about 360, 12 a second for a ``TTL``; behind one proxy, some 45 at once).
MAX_SPENT_PER_CLIENT = MAX_SPENT // 4

HEADER_GATE = "Gate-Id"
HEADER_TIME = "Gate-Time"
HEADER_NONCE = "Gate-Nonce"
HEADER_SIGNATURE = "Gate-Signature"
HEADER_CHALLENGE = "Gate-Challenge"

_RANDOM = 12
_MAC = 16


class AuthError(WireError):
    """A request that did not authenticate; ``name`` is the error it is answered with."""

    def __init__(self, name: str, detail: str, status: int = 401) -> None:
        super().__init__(name, detail, status)


def signing_bytes(method: str, path: str, body: bytes, time_ms: str, nonce: str, gate_id: str) -> bytes:
    """The bytes a peer request's signature covers."""
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((method.upper(), path, digest, time_ms, nonce, gate_id)).encode()


def sign_request(
    key: SecretKey, gate_id: str, method: str, path: str, body: bytes, nonce: str, time_ms: int
) -> dict[str, str]:
    """The headers that sign a request from ``gate_id`` with its ``key``."""
    stamp = str(time_ms)
    signature = key.sign(DOMAIN, signing_bytes(method, path, body, stamp, nonce, gate_id))
    return {
        HEADER_GATE: gate_id,
        HEADER_TIME: stamp,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: base64.b64encode(signature).decode(),
    }


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent an authenticated request, and their clock's reading."""

    gate_id: str
    time_ms: int


class Challenges:
    """Issues challenges and spends them: the receiving side of replay protection."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, ttl: float = TTL) -> None:
        self._secret = os.urandom(32)
        self._clock = clock
        self.ttl = ttl
        # nonce -> (when it expires, who spent it); insertion order = expiry order
        self._spent: dict[str, tuple[float, str]] = {}
        self._by_client: dict[str, int] = {}

    def issue(self) -> str:
        """A fresh challenge."""
        issued = int(self._clock() * 1000).to_bytes(8, "big", signed=True)
        body = issued + os.urandom(_RANDOM)
        mac = hmac.new(self._secret, body, hashlib.sha256).digest()[:_MAC]
        return base64.urlsafe_b64encode(body + mac).decode().rstrip("=")

    def spend(self, nonce: str, client: str = "") -> None:
        """Accept ``nonce`` once (issued here, unexpired, unused); ``AuthError``, or ``busy`` when full.

        ``client`` is the caller's address: one client holds at most ``MAX_SPENT_PER_CLIENT``
        of the spent challenges remembered.
        """
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (binascii.Error, ValueError):
            raw = b""
        body, mac = raw[:-_MAC], raw[-_MAC:]
        expected = hmac.new(self._secret, body, hashlib.sha256).digest()[:_MAC]
        # Only the form ``issue`` wrote: the decoder skips stray characters, and a variant of a
        # spent challenge must not pass for a new one.
        canonical = base64.urlsafe_b64encode(raw).decode().rstrip("=") == nonce
        if len(raw) != 8 + _RANDOM + _MAC or not canonical or not hmac.compare_digest(mac, expected):
            raise AuthError("bad_nonce", "the challenge was not issued by this gate (it may have restarted)")
        now = self._clock()
        self._forget(now)
        issued = int.from_bytes(body[:8], "big", signed=True) / 1000
        if now - issued > self.ttl:
            raise AuthError("stale_nonce", f"the challenge is older than {self.ttl:g} s; get a new one")
        if nonce in self._spent:
            raise AuthError("replayed", "the challenge was already used")
        held = self._by_client.get(client, 0)
        if len(self._spent) >= MAX_SPENT or held >= MAX_SPENT_PER_CLIENT:
            raise WireError("busy", "too many requests in flight; retry shortly", 503)
        # Remembered until it can no longer be valid in any case (issued <= now), so that
        # the dict's order is the order of expiry and ``_forget`` can stop at the first.
        self._spent[nonce] = (now + self.ttl, client)
        self._by_client[client] = held + 1

    def _forget(self, now: float) -> None:
        while self._spent:
            nonce, (expires, client) = next(iter(self._spent.items()))
            if expires >= now:
                break
            del self._spent[nonce]
            left = self._by_client[client] - 1
            if left:
                self._by_client[client] = left
            else:
                del self._by_client[client]


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request whose headers passed the cheap checks and whose challenge is spent."""

    gate_id: str
    key: PublicKey
    stamp: str
    nonce: str
    signature: str

    def verify(self, method: str, path: str, body: bytes) -> Caller:
        """Check the signature over the request; the caller, or ``AuthError`` ``bad_signature``."""
        try:
            raw = base64.b64decode(self.signature, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        message = signing_bytes(method, path, body, self.stamp, self.nonce, self.gate_id)
        if len(raw) != SIGNATURE_SIZE or not self.key.verify(DOMAIN, message, raw):
            raise AuthError(
                "bad_signature", f"the signature is not gate {self.gate_id!r}'s key's, for this request"
            )
        return Caller(self.gate_id, int(self.stamp))


def admit(
    challenges: Challenges,
    roster: Mapping[str, PublicKey] | None,
    headers: Mapping[str, str],
    client: str = "",
) -> Admitted:
    """The checks that need no body: headers, roster, challenge (spent here). ``WireError`` otherwise.

    Run before the body is read, so that a request that cannot be genuine costs no more.
    """
    names = (HEADER_GATE, HEADER_TIME, HEADER_NONCE, HEADER_SIGNATURE)
    missing = [name for name in names if headers.get(name) is None]
    if missing:
        raise AuthError("unsigned", f"a peer request needs the header {missing[0]}")
    gate_id, stamp, nonce, signature = (headers[name] for name in names)
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 16):
        raise WireError("bad_request", f"{HEADER_TIME} must be milliseconds since 1970", 400)
    if roster is None:
        raise WireError("no_roster", "this gate has no manifest, so it knows no peers", 503)
    key = roster.get(gate_id)
    if key is None:
        raise AuthError("unknown_gate", f"gate {gate_id[:64]!r} is not in the manifest's roster", status=403)
    challenges.spend(nonce, client)
    return Admitted(gate_id, key, stamp, nonce, signature)
