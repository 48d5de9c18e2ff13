"""A delta that changes tickets with a holder's name applies to its base (the splice copies whole records)."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from gate_daemon.core.delta import apply_delta, plan_delta
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.manifest import open_manifest
from gate_daemon.core.manifest_header import Session, Zone
from gate_daemon.core.ticket_record import Status, TicketEntry
from gate_daemon.core.tokens import code_hash
from gate_daemon.provision.build import build_manifest
from gate_daemon.provision.event import EventSpec

KEY = SecretKey.generate()
NOW = int(time.time())
EVENT = EventSpec(
    "e1", "E", (Session("s", "S", NOW, NOW + 3600, 60),), (Zone("main", "M"),), (), False, (), ()
)


def named(tid: str, code: str, name: str, status: Status = Status.COMPLETED) -> TicketEntry:
    return TicketEntry(
        tid, status, order_id=tid[:5], session="s", zone="main", code_hash=code_hash("e1", code), name=name
    )


@given(
    ids=st.lists(st.text("ABCDEFGH", min_size=3, max_size=6), min_size=1, max_size=12, unique=True),
    names=st.lists(st.text("abc ", max_size=8), min_size=12, max_size=12),
    victim=st.integers(min_value=0),
)
def test_a_named_ticket_canceled_and_rekeyed_travels_as_a_delta(
    ids: list[str], names: list[str], victim: int
) -> None:
    base = [named(t, f"code-of-{t}-xxxxxxxx", names[i]) for i, t in enumerate(ids)]
    gone = ids[victim % len(ids)]
    changed = [t for t in base if t.ticket_id != gone]
    changed.append(named(gone, f"new-code-{gone}-xxxxxx", "Someone Else", Status.CANCELED))
    changed.append(
        TicketEntry("revoked-1", Status.CANCELED, code_hash=code_hash("e1", f"code-of-{gone}-xxxxxxxx"))
    )
    m1 = open_manifest(build_manifest(EVENT, base, KEY, version=1, issued_at=NOW), [KEY.public])
    entries = plan_delta("e1", m1.entries(), changed, {"s"}, {"main"}).entries
    full = build_manifest(EVENT, entries, KEY, version=2, issued_at=NOW)
    delta = build_manifest(EVENT, entries, KEY, version=2, issued_at=NOW, base=m1)
    applied = open_manifest(apply_delta(m1, delta, [KEY.public]), [KEY.public])
    assert applied.header.body_sha256 == open_manifest(full, [KEY.public]).header.body_sha256
    assert {e.ticket_id: e for e in applied.entries()}[gone].name == "Someone Else"
