"""Ed25519 keys: their text form, their ids, signing and verifying with domain separation.

A public key is written ``ed25519:<base64 of 32 bytes>``, a secret key
``ed25519-secret:<base64 of the 32-byte seed>``. A key id is the first four bytes of
SHA-256 over the public key, written as 8 hex digits: short enough to read aloud and to
carry inside a ticket. It is only a hint for picking the key; every check verifies with
the key itself.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

PUBLIC_PREFIX = "ed25519:"
SECRET_PREFIX = "ed25519-secret:"  # noqa: S105 - a format marker, not a secret
SIGNATURE_SIZE = 64


class KeyFormatError(ValueError):
    """A text is not a key in gate-daemon's format."""


def key_id_bytes(public: bytes) -> bytes:
    """The 4-byte id of a 32-byte public key."""
    return hashlib.sha256(public).digest()[:4]


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A verifying key with its id."""

    raw: bytes

    @property
    def kid(self) -> str:
        """The key id as 8 hex digits."""
        return key_id_bytes(self.raw).hex()

    @property
    def kid_bytes(self) -> bytes:
        """The key id as 4 bytes."""
        return key_id_bytes(self.raw)

    def text(self) -> str:
        """The key in its one-line text form."""
        return PUBLIC_PREFIX + base64.b64encode(self.raw).decode()

    def verify(self, domain: bytes, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` signs ``domain + message`` under this key."""
        try:
            VerifyKey(self.raw).verify(domain + message, signature)
        except (BadSignatureError, ValueError, TypeError):
            return False
        return True

    @classmethod
    def parse(cls, text: str) -> PublicKey:
        """Read the one-line text form."""
        raw = _decode(text.strip(), PUBLIC_PREFIX, "public key")
        return cls(raw)


@dataclass(frozen=True, slots=True, repr=False)
class SecretKey:
    """A signing key. Its repr never shows the seed."""

    seed: bytes

    @classmethod
    def generate(cls) -> SecretKey:
        """A fresh random key."""
        return cls(bytes(SigningKey.generate()))

    @property
    def public(self) -> PublicKey:
        """The matching public key."""
        return PublicKey(bytes(_signing_key(self.seed).verify_key))

    def sign(self, domain: bytes, message: bytes) -> bytes:
        """The 64-byte signature of ``domain + message``."""
        return _signing_key(self.seed).sign(domain + message).signature

    def text(self) -> str:
        """The key in its one-line text form (a secret: never log it)."""
        return SECRET_PREFIX + base64.b64encode(self.seed).decode()

    @classmethod
    def parse(cls, text: str) -> SecretKey:
        """Read the one-line text form."""
        return cls(_decode(text.strip(), SECRET_PREFIX, "secret key"))

    def __repr__(self) -> str:
        return f"SecretKey(kid={self.public.kid})"


@functools.lru_cache(maxsize=8)
def _signing_key(seed: bytes) -> SigningKey:
    """The expanded key of ``seed``, made once: expanding costs a third of a signature.

    A gate signs with one key (a central with one more); the cache holds nothing the
    ``SecretKey`` objects do not already hold.
    """
    return SigningKey(seed)


def _decode(text: str, prefix: str, what: str) -> bytes:
    if not text.startswith(prefix):
        shown = "a secret key" if text.startswith(SECRET_PREFIX) else "something else"
        raise KeyFormatError(f"expected a {what} starting with {prefix!r}, found {shown}")
    try:
        raw = base64.b64decode(text[len(prefix) :], validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError(f"{what} is not valid base64") from None
    if len(raw) != 32:
        raise KeyFormatError(f"{what} must be 32 bytes, found {len(raw)}")
    return raw
