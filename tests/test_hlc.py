"""The hybrid logical clock: stamps only grow, whatever the wall clock does."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gate_daemon.core.hlc import LOGICAL_BITS, MAX_AHEAD_MS, MAX_STAMP, HybridClock, Stamp

T0 = 1_795_000_000_000  # 2026-11-18, in milliseconds
MAX_LOGICAL = (1 << LOGICAL_BITS) - 1


def test_a_fresh_clock_follows_the_wall_clock() -> None:
    clock = HybridClock()
    first = clock.tick(T0)
    assert Stamp.unpack(first) == Stamp(T0, 0)
    later = clock.tick(T0 + 5)
    assert Stamp.unpack(later) == Stamp(T0 + 5, 0)
    assert clock.last == later


def test_the_same_millisecond_counts_up_the_logical_part() -> None:
    clock = HybridClock()
    stamps = [clock.tick(T0) for _ in range(3)]
    assert [Stamp.unpack(s) for s in stamps] == [Stamp(T0, 0), Stamp(T0, 1), Stamp(T0, 2)]


def test_a_wall_clock_stepping_back_never_makes_a_stamp_go_back() -> None:
    clock = HybridClock()
    before = clock.tick(T0)
    # NTP steps the clock back an hour: stamps keep the old millisecond and count on.
    after = [clock.tick(T0 - 3_600_000) for _ in range(3)]
    assert before < after[0] < after[1] < after[2]
    assert [Stamp.unpack(s) for s in after] == [Stamp(T0, 1), Stamp(T0, 2), Stamp(T0, 3)]
    # Once the wall clock passes the old reading again, stamps follow it again.
    assert Stamp.unpack(clock.tick(T0 + 1)) == Stamp(T0 + 1, 0)


def test_a_remote_stamp_ahead_of_us_pulls_the_clock_forward() -> None:
    clock = HybridClock()
    clock.tick(T0)
    remote = Stamp(T0 + 10_000, 7).packed  # a peer whose clock runs ten seconds ahead
    seen = clock.observe(remote, T0 + 1)
    assert seen > remote
    assert Stamp.unpack(seen) == Stamp(T0 + 10_000, 8)
    nxt = clock.tick(T0 + 2)
    assert nxt > seen
    assert Stamp.unpack(nxt) == Stamp(T0 + 10_000, 9)


def test_a_remote_stamp_behind_us_changes_nothing_but_the_count() -> None:
    clock = HybridClock()
    mine = clock.tick(T0)
    old = Stamp(T0 - 60_000, 3).packed
    seen = clock.observe(old, T0)
    assert seen > mine > old
    assert Stamp.unpack(seen) == Stamp(T0, 1)
    # With the wall clock moving on, the next stamp is plain wall time again.
    assert Stamp.unpack(clock.observe(old, T0 + 5)) == Stamp(T0 + 5, 0)


def test_observe_uses_the_wall_clock_when_it_is_ahead_of_everything() -> None:
    clock = HybridClock(Stamp(T0, 4).packed)
    stamp = clock.observe(Stamp(T0 + 1, 9).packed, T0 + 50)
    assert Stamp.unpack(stamp) == Stamp(T0 + 50, 0)


def test_a_remote_stamp_too_far_ahead_is_not_followed() -> None:
    # A peer whose clock runs a day fast must not drag every later local stamp a day ahead.
    clock = HybridClock()
    clock.tick(T0)
    fast = Stamp(T0 + 24 * 3600 * 1000, 0).packed
    stamp = clock.observe(fast, T0 + 1)
    assert Stamp.unpack(stamp) == Stamp(T0 + 1, 0)
    near = Stamp(T0 + MAX_AHEAD_MS, 3).packed
    assert clock.observe(near, T0 + 2) > near


def test_logical_overflow_borrows_the_next_millisecond() -> None:
    clock = HybridClock(Stamp(T0, MAX_LOGICAL - 1).packed)
    a = clock.tick(T0)
    b = clock.tick(T0)
    c = clock.tick(T0)
    assert Stamp.unpack(a) == Stamp(T0, MAX_LOGICAL)
    assert Stamp.unpack(b) == Stamp(T0 + 1, 0)
    assert Stamp.unpack(c) == Stamp(T0 + 1, 1)
    assert a < b < c


def test_overflow_on_observe_too() -> None:
    clock = HybridClock()
    stamp = clock.observe(Stamp(T0, MAX_LOGICAL).packed, T0)
    assert Stamp.unpack(stamp) == Stamp(T0 + 1, 0)


def test_a_clock_resumes_from_a_stored_stamp() -> None:
    stored = Stamp(T0, 41).packed
    clock = HybridClock(stored)
    assert clock.last == stored
    assert clock.tick(T0 - 1) == Stamp(T0, 42).packed


@pytest.mark.parametrize(
    "stamp",
    [Stamp(0, 0), Stamp(T0, 0), Stamp(T0, MAX_LOGICAL), Stamp(MAX_STAMP >> LOGICAL_BITS, MAX_LOGICAL)],
)
def test_pack_unpack_round_trip_at_the_edges(stamp: Stamp) -> None:
    assert Stamp.unpack(stamp.packed) == stamp
    assert 0 <= stamp.packed <= MAX_STAMP


@given(st.integers(min_value=0, max_value=MAX_STAMP))
def test_unpack_pack_round_trip(value: int) -> None:
    stamp = Stamp.unpack(value)
    assert 0 <= stamp.logical <= MAX_LOGICAL
    assert stamp.packed == value


@given(st.integers(min_value=0, max_value=MAX_STAMP), st.integers(min_value=0, max_value=MAX_STAMP))
def test_packed_order_is_stamp_order(a: int, b: int) -> None:
    assert (a < b) == (Stamp.unpack(a) < Stamp.unpack(b))


@pytest.mark.parametrize("value", [-1, MAX_STAMP + 1, 1 << 64])
def test_unpack_refuses_what_sqlite_cannot_hold(value: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        Stamp.unpack(value)
    with pytest.raises(ValueError, match="outside"):
        HybridClock(value)


# Wall readings around T0, jumping back and forth by up to a day; remote stamps from
# clocks that may be a day off either way, some with a full logical counter.
_walls = st.integers(min_value=T0 - 86_400_000, max_value=T0 + 86_400_000)
_remotes = st.builds(
    Stamp,
    millis=st.integers(min_value=T0 - 86_400_000, max_value=T0 + 86_400_000),
    logical=st.one_of(st.integers(0, 5), st.integers(MAX_LOGICAL - 3, MAX_LOGICAL)),
).map(lambda s: s.packed)
_steps = st.one_of(
    st.tuples(st.just("tick"), _walls, st.just(0)),
    st.tuples(st.just("observe"), _walls, _remotes),
)


@given(start=st.one_of(st.just(0), _remotes), steps=st.lists(_steps, min_size=1, max_size=60))
def test_any_sequence_of_ticks_and_observes_strictly_grows(
    start: int, steps: list[tuple[str, int, int]]
) -> None:
    clock = HybridClock(start)
    last = start
    for op, wall, remote in steps:
        stamp = clock.tick(wall) if op == "tick" else clock.observe(remote, wall)
        assert stamp > last
        assert clock.last == stamp
        if op == "observe" and Stamp.unpack(remote).millis - wall <= MAX_AHEAD_MS:
            assert stamp > remote  # everything after an observed stamp sorts after it
        assert Stamp.unpack(stamp).millis >= wall  # never behind the wall clock
        last = stamp
