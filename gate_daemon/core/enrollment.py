"""Enrollment by a one-time token (docs/ENROLL.md): the token's text, its key, and what is signed.

A token is ``GDE1:<base32>`` of::

    16    the secret
    16    the signer's fingerprint: the first 16 bytes of SHA-256 of the manifest key (raw)
    u32   expiry (Unix seconds, big-endian)
    u8    gate id length, then the gate id (UTF-8)
    u16   central URL length (big-endian), then the URL (UTF-8)

The secret never travels: it is the seed of an Ed25519 **token key** (``token_key``), and the
central keeps only that key's public half. ``gatectl enroll`` signs its request (the gate's
new public key and LAN address) with the token key and with the gate's new key; the central
answers with the gate's place in the event, signed by the manifest key that the token's
fingerprint pins. Pure: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import struct
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gate_daemon.core import base32
from gate_daemon.core.keys import KeyFormatError, PublicKey, SecretKey
from gate_daemon.errors import GateError

PREFIX = "GDE1:"
SECRET_SIZE = 16
FINGERPRINT_SIZE = 16
#: The domains of the three signatures: the token key's, the gate key's and the signer's.
TOKEN_DOMAIN = b"gate-daemon/enroll/token/v1\x00"
GATE_DOMAIN = b"gate-daemon/enroll/gate/v1\x00"
ANSWER_DOMAIN = b"gate-daemon/enroll/answer/v1\x00"
_SEED_DOMAIN = b"gate-daemon/enroll/seed/v1\x00"
MAX_URL = 512
MAX_GATE_ID = 32
MAX_TOKEN = 2048
#: The port a gate's LAN API listens on unless ``--addr`` says otherwise.
DEFAULT_LAN_PORT = 8600
_IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_HOST = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_ADDR = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]+)):(?P<port>[0-9]{1,5})")


class EnrollRefused(GateError):
    """An enrollment refused; ``name`` says why (docs/ENROLL.md lists every name)."""

    def __init__(self, name: str, detail: str) -> None:
        self.name = name
        self.detail = detail
        super().__init__(f"{name}: {detail}")


@dataclass(frozen=True, slots=True)
class Token:
    """What an enrollment token carries."""

    secret: bytes
    fingerprint: bytes
    expires_at: int
    gate_id: str
    url: str

    @property
    def key(self) -> SecretKey:
        """The token key: it signs the enrollment request; the central holds its public half."""
        return token_key(self.secret)

    def text(self) -> str:
        """The copy-pasteable form (a secret: never log it)."""
        gate, url = self.gate_id.encode(), self.url.encode()
        head = struct.pack(">I", self.expires_at)
        body = self.secret + self.fingerprint + head + bytes([len(gate)]) + gate
        return PREFIX + base32.encode(body + struct.pack(">H", len(url)) + url)

    def __repr__(self) -> str:
        return f"Token(gate_id={self.gate_id!r}, url={self.url!r}, expires_at={self.expires_at})"


def token_key(secret: bytes) -> SecretKey:
    """The Ed25519 key a token's secret seeds."""
    return SecretKey(hashlib.sha256(_SEED_DOMAIN + secret).digest())


def fingerprint(key: PublicKey) -> bytes:
    """The signer's fingerprint a token carries."""
    return hashlib.sha256(key.raw).digest()[:FINGERPRINT_SIZE]


def fingerprint_text(value: bytes) -> str:
    """A fingerprint as people compare it: hex in groups of four."""
    hexed = value.hex()
    return ":".join(hexed[i : i + 4] for i in range(0, len(hexed), 4))


def parse_token(text: str) -> Token:
    """Read a token's text; ``EnrollRefused("bad_token")`` naming what is wrong."""
    text = text.strip()
    if not text.startswith(PREFIX):
        raise EnrollRefused("bad_token", f"an enrollment token starts with {PREFIX}")
    if len(text) > MAX_TOKEN:
        raise EnrollRefused("bad_token", f"the token is over {MAX_TOKEN} characters")
    try:
        raw = base32.decode(text[len(PREFIX) :])
    except base32.Base32Error as exc:
        raise EnrollRefused("bad_token", f"the token is not base32 ({exc}): was it copied whole?") from None
    fixed = SECRET_SIZE + FINGERPRINT_SIZE + 4 + 1
    if len(raw) < fixed:
        raise EnrollRefused("bad_token", "the token is cut short: was it copied whole?")
    secret, fp = raw[:SECRET_SIZE], raw[SECRET_SIZE : SECRET_SIZE + FINGERPRINT_SIZE]
    (expires_at,) = struct.unpack_from(">I", raw, SECRET_SIZE + FINGERPRINT_SIZE)
    gate_len = raw[fixed - 1]
    gate_raw = raw[fixed : fixed + gate_len]
    rest = raw[fixed + gate_len :]
    if len(gate_raw) != gate_len or len(rest) < 2:
        raise EnrollRefused("bad_token", "the token is cut short: was it copied whole?")
    (url_len,) = struct.unpack_from(">H", rest)
    url_raw = rest[2:]
    if len(url_raw) != url_len:
        raise EnrollRefused("bad_token", "the token's length does not add up: was it copied whole?")
    try:
        gate_id, url = gate_raw.decode(), url_raw.decode()
    except UnicodeDecodeError:
        raise EnrollRefused("bad_token", "the token's gate id or URL is not UTF-8") from None
    try:
        return Token(secret, fp, expires_at, check_gate_id(gate_id), check_url(url))
    except ValueError as exc:
        raise EnrollRefused("bad_token", str(exc)) from None


def check_gate_id(gate_id: str) -> str:
    """A gate id as a roster holds it; ``ValueError`` otherwise."""
    if _IDENT.fullmatch(gate_id) is None or len(gate_id.encode()) > MAX_GATE_ID:
        raise ValueError(f"gate id {gate_id!r}: letters, digits, . _ - (at most {MAX_GATE_ID} bytes)")
    return gate_id


def check_url(url: str) -> str:
    """The central's base URL (``http://HOST:PORT`` or https); ``ValueError`` otherwise."""
    if not 0 < len(url.encode()) <= MAX_URL:
        raise ValueError(f"the central's URL must be 1 to {MAX_URL} bytes")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- a bad port raises here
    except ValueError:
        raise ValueError(f"{url!r} is not a URL (http://HOST:PORT)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"{url!r} is not the central's base URL (http://HOST:PORT)")
    return url.rstrip("/")


def parse_addr(text: str) -> str:
    """A LAN address ``HOST:PORT`` (an IPv6 host in brackets); ``ValueError`` naming what is wrong."""
    match = _ADDR.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} must be HOST:PORT (10.0.5.11:8600, [fd00::11]:8600)")
    port = int(match.group("port"))
    if not 0 < port <= 65535:
        raise ValueError(f"{text!r}: the port must be 1 to 65535")
    if match.group("v6") is not None:
        try:
            ipaddress.IPv6Address(match.group("v6"))
        except ValueError:
            raise ValueError(f"{text!r}: not an IPv6 address in brackets") from None
    elif _HOST.fullmatch(match.group("host")) is None:
        raise ValueError(f"{text!r}: the host must be an IPv4 address or a host name")
    return text


# ---------------------------------------------------------------- what is signed


def canonical(value: Any) -> bytes:
    """The one byte form of a signed message."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class Request:
    """``POST /v1/enroll``: the token key's public half, the gate's key and address, both signatures."""

    token: PublicKey
    gate_id: str
    pub: PublicKey
    addr: str
    token_sig: bytes
    gate_sig: bytes

    def message(self) -> bytes:
        """What both signatures cover."""
        return request_message(self.token, self.gate_id, self.pub, self.addr)

    def wire(self) -> dict[str, str]:
        """The JSON body."""
        return {
            "token": self.token.text(),
            "gate": self.gate_id,
            "pub": self.pub.text(),
            "addr": self.addr,
            "token_sig": _b64(self.token_sig),
            "gate_sig": _b64(self.gate_sig),
        }

    def verify(self) -> bool:
        """Whether both signatures hold (the token's is checked against the key the central holds)."""
        message = self.message()
        return self.token.verify(TOKEN_DOMAIN, message, self.token_sig) and self.pub.verify(
            GATE_DOMAIN, message, self.gate_sig
        )


def request_message(token: PublicKey, gate_id: str, pub: PublicKey, addr: str) -> bytes:
    """The bytes an enrollment request's two signatures cover."""
    return canonical({"token": token.text(), "gate": gate_id, "pub": pub.text(), "addr": addr})


def make_request(token: Token, gate_key: SecretKey, addr: str) -> Request:
    """The request ``gatectl enroll`` sends, signed with the token key and the gate's new key."""
    tkey = token.key
    message = request_message(tkey.public, token.gate_id, gate_key.public, addr)
    return Request(
        tkey.public,
        token.gate_id,
        gate_key.public,
        addr,
        tkey.sign(TOKEN_DOMAIN, message),
        gate_key.sign(GATE_DOMAIN, message),
    )


def parse_request(doc: object) -> Request:
    """A request's JSON body; ``ValueError`` naming the field that is wrong."""
    if not isinstance(doc, dict) or set(doc) != {"token", "gate", "pub", "addr", "token_sig", "gate_sig"}:
        raise ValueError("the body must be an object of token, gate, pub, addr, token_sig and gate_sig")
    if not all(isinstance(v, str) for v in doc.values()):
        raise ValueError("every field is a string")
    fields = {}
    for name in ("token", "pub"):
        try:
            fields[name] = PublicKey.parse(doc[name])
        except KeyFormatError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return Request(
        fields["token"],
        check_gate_id(doc["gate"]),
        fields["pub"],
        parse_addr(doc["addr"]),
        _unb64(doc["token_sig"], "token_sig"),
        _unb64(doc["gate_sig"], "gate_sig"),
    )


@dataclass(frozen=True, slots=True)
class Answer:
    """The central's answer: where the gate belongs, signed by the manifest key."""

    gate_id: str
    event_id: str
    zone: str | None
    central: str
    version: int
    signer: PublicKey
    sig: bytes

    def wire(self) -> dict[str, Any]:
        """The JSON body."""
        return {**self._fields(), "signer": self.signer.text(), "sig": _b64(self.sig)}

    def _fields(self) -> dict[str, Any]:
        return {
            "gate": self.gate_id,
            "event": self.event_id,
            "zone": self.zone,
            "central": self.central,
            "version": self.version,
        }

    def message(self, request: Request) -> bytes:
        """What the signer's signature covers: the answer and the request it answers."""
        return canonical({**self._fields(), "request": _b64(request.token_sig), "pub": request.pub.text()})


def make_answer(request: Request, signer: SecretKey, **fields: Any) -> Answer:
    """The central's signed answer to ``request`` (``fields``: gate_id, event_id, zone, central, version)."""
    unsigned = Answer(signer=signer.public, sig=b"", **fields)
    return Answer(signer=signer.public, sig=signer.sign(ANSWER_DOMAIN, unsigned.message(request)), **fields)


def check_answer(doc: object, request: Request, pinned: PublicKey) -> Answer:
    """The central's answer, verified with the pinned signer key; ``EnrollRefused`` otherwise."""
    try:
        if not isinstance(doc, dict):
            raise ValueError("not an object")
        zone = doc.get("zone")
        version = doc.get("version")
        if zone is not None and not isinstance(zone, str):
            raise ValueError("zone")
        if type(version) is not int:
            raise ValueError("version")
        answer = Answer(
            check_gate_id(str(doc["gate"])),
            str(doc["event"]),
            zone,
            str(doc["central"]),
            version,
            PublicKey.parse(str(doc["signer"])),
            _unb64(str(doc["sig"]), "sig"),
        )
    except (KeyError, ValueError) as exc:
        raise EnrollRefused(
            "bad_answer", f"the central's answer is not an enrollment answer ({exc})"
        ) from None
    if answer.signer != pinned or not pinned.verify(ANSWER_DOMAIN, answer.message(request), answer.sig):
        raise EnrollRefused(
            "signer_mismatch", "the central's answer is not signed by the key the token's fingerprint pins"
        )
    if answer.gate_id != request.gate_id or _IDENT.fullmatch(answer.event_id) is None:
        raise EnrollRefused("bad_answer", "the central's answer names another gate or no event")
    return answer


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str, name: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise ValueError(f"{name} is not base64") from None
