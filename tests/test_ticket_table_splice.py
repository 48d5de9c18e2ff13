"""``splice`` (the fast delta path) gives byte for byte the body a full rebuild gives."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gate_daemon.core.ticket_record import Status, TicketEntry
from gate_daemon.core.ticket_table import TicketTable, encode_body, splice

SESSIONS = ["fri", "sat"]
ZONES = ["floor", "vip"]


def table_of(body_data: bytes, body: object, legacy_codes: bool) -> TicketTable:
    return TicketTable(
        memoryview(body_data),
        tickets=body.tickets,  # type: ignore[attr-defined]
        codes=body.codes,  # type: ignore[attr-defined]
        legacy=body.legacy,  # type: ignore[attr-defined]
        blob_size=body.blob_size,  # type: ignore[attr-defined]
        sessions=SESSIONS,
        zones=ZONES,
        event_id="splice-test",
    )


ids = st.one_of(
    st.text(alphabet="ABCab019-é😀", min_size=1, max_size=6),
    st.text(alphabet="AB", min_size=60, max_size=64),  # the longest ids
)
# Code hashes sharing their first 8 bytes share an index key: the tie-break must hold.
code_hashes = st.one_of(
    st.none(),
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=8, max_size=8).map(lambda tail: b"\x01" * 8 + tail),
)
tickets = st.builds(
    TicketEntry,
    ticket_id=ids,
    status=st.sampled_from(list(Status)),
    order_id=st.sampled_from(["", "O1", "O2", "O" * 255]),
    seat=st.sampled_from(["", "1", "2", "S" * 255]),
    session=st.sampled_from(["", *SESSIONS]),
    zone=st.sampled_from(["", *ZONES]),
    entries=st.integers(0, 255),
    code_hash=code_hashes,
)


def unique(entries: list[TicketEntry]) -> list[TicketEntry]:
    return list({e.ticket_id: e for e in entries}.values())


@given(base=st.lists(tickets, max_size=40), changes=st.lists(tickets, max_size=12), legacy=st.booleans())
def test_splice_equals_a_full_rebuild(
    base: list[TicketEntry], changes: list[TicketEntry], legacy: bool
) -> None:
    base, changes = unique(base), unique(changes)
    before = encode_body(base, SESSIONS, ZONES, legacy_codes=legacy)
    table = table_of(before.data, before, legacy)
    merged = {e.ticket_id: e for e in base} | {e.ticket_id: e for e in changes}
    expected = encode_body(merged.values(), SESSIONS, ZONES, legacy_codes=legacy)
    got = splice(table, changes, legacy_codes=legacy)
    assert got.data == expected.data
    assert (got.tickets, got.codes, got.legacy, got.blob_size) == (
        expected.tickets,
        expected.codes,
        expected.legacy,
        expected.blob_size,
    )


def test_splice_refuses_a_repeated_ticket() -> None:
    body = encode_body([TicketEntry("T-1")], SESSIONS, ZONES, legacy_codes=True)
    table = table_of(body.data, body, True)
    with pytest.raises(ValueError, match="repeated"):
        splice(table, [TicketEntry("T-2"), TicketEntry("T-2", status=Status.CANCELED)], legacy_codes=True)
