"""The strict base32 codec agrees with RFC 4648 and refuses every other spelling."""

from __future__ import annotations

import base64
import binascii

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gate_daemon.core import base32


@given(st.binary(max_size=200))
def test_round_trip_matches_the_standard_library(data: bytes) -> None:
    text = base32.encode(data)
    assert text == base64.b32encode(data).decode().rstrip("=")
    assert base32.decode(text) == data
    assert base32.decode(text.lower()) == data


@given(st.text(alphabet=base32.ALPHABET + "abc0189=- ", max_size=120))
def test_decode_accepts_exactly_the_canonical_spellings(text: str) -> None:
    try:
        data = base32.decode(text)
    except base32.Base32Error:
        # Refused: then it is not the canonical spelling of anything.
        try:
            decoded = base64.b32decode(text + "=" * (-len(text) % 8), casefold=True)
        except (binascii.Error, ValueError):
            return
        assert base32.encode(decoded) != text.upper()
        return
    assert base32.encode(data) == text.upper()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("MZXW6===", "not base32"),  # padding
        ("MZXW7", "bits set"),  # spare bits of the last character
        ("MZX", "whole number"),  # 3 characters hold no whole byte count
        ("MZ0W6", "not base32"),  # 0 is not in the alphabet
        ("+MZXW6", "not base32"),  # int() would have taken a sign
        ("MZ_XW6", "not base32"),  # ... and an underscore
    ],
)
def test_refusals_say_why(text: str, why: str) -> None:
    with pytest.raises(base32.Base32Error, match=why):
        base32.decode(text)
