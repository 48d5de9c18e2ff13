"""RFC 4648 base32 without padding, strict and fast enough for the scan path.

The standard library's codec is written in Python and, when decoding, ignores the spare
bits of the last character and accepts padding: several texts would decode to the same
bytes (and so carry the same signature). Here exactly one text spells each byte string
(upper or lower case aside), and decoding goes through one big integer, which runs in C.
"""

from __future__ import annotations

import base64
import re

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
# int(text, 32) reads the "base32hex" digits 0-9a-v; translate between the two alphabets.
_HEX = "0123456789abcdefghijklmnopqrstuv"
_TO_HEX = str.maketrans(ALPHABET, _HEX)
_VALID = re.compile(r"[A-Za-z2-7]*")


class Base32Error(ValueError):
    """A text is not canonical unpadded base32."""


def encode(data: bytes) -> str:
    """Upper-case base32 of ``data`` without padding (issuing is not on the scan path)."""
    return base64.b32encode(data).decode().rstrip("=")


def decode(text: str) -> bytes:
    """The bytes that ``text`` spells; refuses every non-canonical spelling."""
    if not _VALID.fullmatch(text):
        raise Base32Error("not base32 (letters A-Z and digits 2-7 only)")
    size = len(text) * 5 // 8
    if -(-size * 8 // 5) != len(text):
        raise Base32Error(f"{len(text)} characters cannot be a whole number of bytes")
    if not text:
        return b""
    spare = len(text) * 5 - size * 8
    value = int(text.upper().translate(_TO_HEX), 32)
    if value & ((1 << spare) - 1):
        raise Base32Error("last character has bits set that encode nothing")
    return (value >> spare).to_bytes(size, "big")
