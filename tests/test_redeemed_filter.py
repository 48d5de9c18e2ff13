"""The ledger's filter of redeemed tickets: never a false "no", rarely a false "maybe"."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gate_daemon.store.redeemed import BITS, RedeemedFilter


@given(st.lists(st.text(min_size=1, max_size=40), max_size=50), st.text(max_size=40))
def test_a_ticket_added_is_always_found(added: list[str], other: str) -> None:
    seen = RedeemedFilter()
    for ticket in added:
        seen.add(ticket)
    assert all(ticket in seen for ticket in added)
    if not added:
        assert other not in seen  # an empty filter knows nothing


def test_false_maybes_stay_rare_at_a_hundred_thousand_tickets() -> None:
    seen = RedeemedFilter()
    for n in range(100_000):
        seen.add(f"T-{n:07d}")
    assert all(f"T-{n:07d}" in seen for n in range(0, 100_000, 97))
    false = sum(f"U-{n:07d}" in seen for n in range(20_000))
    assert false < 20_000 * 0.001  # about 0.0006% expected with 2 MiB and three hashes
    assert len(seen._bits) * 8 == BITS


def test_lone_surrogates_and_non_strings_do_not_break_it() -> None:
    seen = RedeemedFilter()
    seen.add("T-\ud800")
    assert "T-\ud800" in seen
    assert 42 not in seen
