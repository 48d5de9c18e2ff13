"""Instants as whole UTC seconds, read from and written as RFC 3339."""

from __future__ import annotations

from datetime import UTC, datetime

#: The largest instant a signed ticket can carry (unsigned 32-bit seconds).
MAX_INSTANT = 2**32 - 1


class TimeFormatError(ValueError):
    """A text is not an RFC 3339 time with a UTC offset."""


def parse_instant(value: object) -> int:
    """Read an RFC 3339 string (or a TOML datetime) with an explicit offset as UTC seconds."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise TimeFormatError(
                f"not an RFC 3339 time: {value!r} (expected e.g. 2026-11-21T19:00:00Z)"
            ) from None
    else:
        raise TimeFormatError(f"expected an RFC 3339 time, got {type(value).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise TimeFormatError(f"time {value!s} has no UTC offset (add Z or +01:00)")
    seconds = int(moment.timestamp())
    if not 0 <= seconds <= MAX_INSTANT:
        raise TimeFormatError(f"time {value!s} is outside 1970..2106")
    return seconds


def format_instant(seconds: float) -> str:
    """Write UTC seconds as RFC 3339 with a Z suffix."""
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_span(seconds: float) -> str:
    """Say a duration the way a gate display would: 45 s, 12 min, 3 h 05 min, 2 d 4 h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"
