"""Hybrid logical clock stamps: ordering that survives wall clocks that jump or disagree.

A stamp is one 64-bit integer: milliseconds since the epoch in the high 48 bits and a
logical counter in the low 16. Stamps from one clock only grow, even when the wall clock
steps back; ``observe`` folds in a stamp seen from elsewhere (a peer, the server) so that
everything recorded after it sorts after it. Wall time stays evidence; this is the
ordering key.
"""

from __future__ import annotations

from dataclasses import dataclass

LOGICAL_BITS = 16
_LOGICAL_MASK = (1 << LOGICAL_BITS) - 1
#: The largest stamp that fits SQLite's signed 64-bit integers.
MAX_STAMP = (1 << 63) - 1
#: How far ahead of the local wall clock a stamp from elsewhere may be and still be
#: folded in. A peer whose clock is a day fast must not drag every later local stamp a
#: day ahead: its records are kept (they happened), but its clock is not followed.
MAX_AHEAD_MS = 5 * 60 * 1000


@dataclass(frozen=True, slots=True, order=True)
class Stamp:
    """A point on the hybrid clock: wall milliseconds and a logical tiebreak."""

    millis: int
    logical: int

    @property
    def packed(self) -> int:
        """The stamp as one sortable integer."""
        return (self.millis << LOGICAL_BITS) | self.logical

    @classmethod
    def unpack(cls, value: int) -> Stamp:
        """The stamp a packed integer holds."""
        if not 0 <= value <= MAX_STAMP:
            raise ValueError(f"stamp {value} is outside 0..{MAX_STAMP}")
        return cls(value >> LOGICAL_BITS, value & _LOGICAL_MASK)


class HybridClock:
    """Issues growing stamps from a wall clock reading in milliseconds."""

    def __init__(self, last: int = 0) -> None:
        self._last = Stamp.unpack(last)

    @property
    def last(self) -> int:
        """The latest stamp issued or observed, packed."""
        return self._last.packed

    def tick(self, wall_millis: int) -> int:
        """A stamp for a local event now, later than every stamp before it."""
        last = self._last
        stamp = Stamp(wall_millis, 0) if wall_millis > last.millis else self._after(last)
        self._last = stamp
        return stamp.packed

    def observe(self, remote: int, wall_millis: int) -> int:
        """Fold in a stamp from elsewhere; the next local stamp sorts after it.

        A stamp more than ``MAX_AHEAD_MS`` ahead of ``wall_millis`` is not followed:
        the clock then moves as for a local event (callers count such stamps).
        """
        seen = Stamp.unpack(remote)
        if seen.millis - wall_millis > MAX_AHEAD_MS:
            return self.tick(wall_millis)
        latest = max(self._last, seen)
        stamp = Stamp(wall_millis, 0) if wall_millis > latest.millis else self._after(latest)
        self._last = stamp
        return stamp.packed

    @staticmethod
    def _after(stamp: Stamp) -> Stamp:
        if stamp.logical < _LOGICAL_MASK:
            return Stamp(stamp.millis, stamp.logical + 1)
        # 65,536 events inside one millisecond: borrow the next millisecond.
        return Stamp(stamp.millis + 1, 0)
