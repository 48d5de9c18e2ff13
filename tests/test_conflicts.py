"""The double-entry rule: which entries conflict once gates that could not talk merge their records."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gate_daemon.core.conflicts import REENTRY, Move, losers


def entry(uuid: str, hlc: int, origin: str = "gate-a", *, forced: bool = False) -> Move:
    return Move(uuid, "entry", hlc, origin, forced=forced)


def exit_(uuid: str, hlc: int, origin: str = "gate-a") -> Move:
    return Move(uuid, "exit", hlc, origin)


def void(uuid: str, hlc: int, voids: str, origin: str = "gate-a") -> Move:
    return Move(uuid, "void", hlc, origin, voids=voids)


# ------------------------------------------------------------------ single entry


def test_one_entry_is_no_conflict() -> None:
    assert losers([entry("a", 10)], 1) == {}
    assert losers([], 1) == {}
    assert losers([], REENTRY) == {}


def test_a_double_admission_loses_to_the_earliest_by_clock() -> None:
    moves = [entry("u-late", 200, "gate-b"), entry("u-early", 100, "gate-a")]
    assert losers(moves, 1) == {"u-late": "u-early"}


def test_equal_clocks_are_broken_by_uuid() -> None:
    moves = [entry("bbb", 100, "gate-a"), entry("aaa", 100, "gate-b")]
    assert losers(moves, 1) == {"bbb": "aaa"}


def test_every_later_entry_loses_to_the_one_that_stands() -> None:
    moves = [entry("c", 30), entry("a", 10, "gate-b"), entry("b", 20, "gate-c")]
    assert losers(moves, 1) == {"b": "a", "c": "a"}


def test_exits_do_not_reopen_a_single_entry_ticket() -> None:
    moves = [entry("a", 10), exit_("x", 20), entry("b", 30, "gate-b")]
    assert losers(moves, 1) == {"b": "a"}


@pytest.mark.parametrize("allowed", [0, -3])
def test_a_limit_below_one_is_taken_as_one(allowed: int) -> None:
    assert losers([entry("a", 10), entry("b", 20)], allowed) == {"b": "a"}


# ------------------------------------------------------------------ N entries


def test_n_entries_stand_and_the_rest_lose_to_the_last_that_stood() -> None:
    moves = [entry(f"e{n}", n * 10, f"gate-{n % 2}") for n in range(1, 6)]
    assert losers(moves, 5) == {}
    assert losers(moves, 3) == {"e4": "e3", "e5": "e3"}
    assert losers(moves[:3], 3) == {}


# ------------------------------------------------------------------ re-entry


def test_reentry_an_entry_while_inside_conflicts() -> None:
    moves = [entry("in", 10), entry("again", 20, "gate-b")]
    assert losers(moves, REENTRY) == {"again": "in"}


def test_reentry_an_exit_in_between_clears() -> None:
    moves = [entry("in", 10), exit_("out", 15, "gate-b"), entry("back", 20, "gate-c")]
    assert losers(moves, REENTRY) == {}


def test_reentry_the_order_is_the_clocks_not_the_lists() -> None:
    # The exit happened after both entries: the second entry was made while inside.
    moves = [exit_("out", 30), entry("back", 20, "gate-c"), entry("in", 10)]
    assert losers(moves, REENTRY) == {"back": "in"}


def test_reentry_an_exit_first_then_entries() -> None:
    moves = [exit_("out", 5), entry("in", 10), entry("again", 11, "gate-b"), exit_("o2", 12), entry("b", 13)]
    assert losers(moves, REENTRY) == {"again": "in"}


# ------------------------------------------------------------------ voids and forced entries


def test_a_void_by_the_origin_takes_the_entry_out() -> None:
    moves = [entry("a", 10, "gate-a"), entry("b", 20, "gate-b"), void("v", 30, "a", "gate-a")]
    assert losers(moves, 1) == {}


def test_a_void_moves_the_conflict_to_the_next_entry() -> None:
    moves = [entry("a", 10, "gate-a"), entry("b", 20, "gate-b"), entry("c", 30, "gate-c")]
    assert losers(moves, 1) == {"b": "a", "c": "a"}
    assert losers([*moves, void("v", 40, "a", "gate-a")], 1) == {"c": "b"}


def test_a_void_by_another_origin_does_not_count() -> None:
    moves = [entry("a", 10, "gate-a"), entry("b", 20, "gate-b"), void("v", 30, "a", "gate-b")]
    assert losers(moves, 1) == {"b": "a"}


def test_a_void_of_something_not_held_does_not_count() -> None:
    moves = [entry("a", 10), entry("b", 20, "gate-b"), void("v", 30, "zzz")]
    assert losers(moves, 1) == {"b": "a"}


def test_a_voided_exit_no_longer_lets_the_ticket_back_in() -> None:
    moves = [entry("in", 10), exit_("out", 15, "gate-b"), entry("back", 20, "gate-c")]
    assert losers([*moves, void("v", 16, "out", "gate-b")], REENTRY) == {"back": "in"}


def test_forced_entries_are_ignored() -> None:
    moves = [entry("forced", 5, forced=True), entry("a", 10, "gate-b")]
    assert losers(moves, 1) == {}
    moves = [entry("a", 10), entry("forced", 20, "gate-b", forced=True)]
    assert losers(moves, 1) == {}
    assert losers([entry("a", 10), entry("f", 15, forced=True), entry("b", 20)], REENTRY) == {"b": "a"}


# ------------------------------------------------------------------ properties

ORIGINS = ("gate-a", "gate-b", "gate-c")


@st.composite
def histories(draw: st.DrawFn) -> list[Move]:
    """A ticket's records: distinct uuids, clashing clocks, voids by any origin of anything."""
    count = draw(st.integers(0, 12))
    uuids = draw(
        st.lists(
            st.text("0123456789abcdef", min_size=4, max_size=4), min_size=count, max_size=count, unique=True
        )
    )
    moves: list[Move] = []
    for uuid in uuids:
        kind = draw(st.sampled_from(["entry", "entry", "exit", "void"]))
        hlc = draw(st.integers(0, 20))
        origin = draw(st.sampled_from(ORIGINS))
        if kind == "void":
            target = draw(st.sampled_from([m.uuid for m in moves] or ["none"]))
            moves.append(Move(uuid, "void", hlc, origin, voids=target))
        else:
            moves.append(Move(uuid, kind, hlc, origin, forced=kind == "entry" and draw(st.booleans())))
    return moves


limits = st.sampled_from([REENTRY, 1, 2, 3])


@given(histories(), limits, st.randoms(use_true_random=False))
def test_the_verdict_does_not_depend_on_the_order_records_arrive(
    moves: list[Move], allowed: int | None, shuffle: random.Random
) -> None:
    expected = losers(moves, allowed)
    for _ in range(3):
        shuffled = list(moves)
        shuffle.shuffle(shuffled)
        assert losers(shuffled, allowed) == expected
    assert losers(iter(moves), allowed) == expected  # any iterable


@given(histories(), limits)
def test_losers_and_winners_are_live_entries_and_no_winner_loses(
    moves: list[Move], allowed: int | None
) -> None:
    by_uuid = {m.uuid: m for m in moves}
    voided = {
        m.voids
        for m in moves
        if m.kind == "void" and m.voids in by_uuid and by_uuid[m.voids].origin == m.origin
    }
    live = [m for m in moves if m.kind == "entry" and not m.forced and m.uuid not in voided]
    out = losers(moves, allowed)
    for loser, winner in out.items():
        assert by_uuid[loser] in live and by_uuid[winner] in live
        assert winner not in out
        assert (by_uuid[winner].hlc, winner) < (by_uuid[loser].hlc, loser)  # the earlier one stands
    if allowed is not REENTRY:
        assert len(out) == max(0, len(live) - allowed)
    else:
        assert len(out) <= max(0, len(live) - 1)


@given(histories(), limits)
def test_records_other_than_live_entries_never_appear(moves: list[Move], allowed: int | None) -> None:
    named = set(losers(moves, allowed).items())
    flat = {u for pair in named for u in pair}
    assert not flat & {m.uuid for m in moves if m.kind != "entry" or m.forced}
