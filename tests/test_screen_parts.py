"""The gate screen's parts: the result feed, the pure views, ``[screen]``, and holders' names in tickets."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gate_daemon.config.load import load_config
from gate_daemon.core.decision import Decision
from gate_daemon.core.delta import plan_delta
from gate_daemon.core.reasons import Outcome, Reason
from gate_daemon.core.screen import COLOURS, scan_view
from gate_daemon.core.ticket_record import TicketEntry, decode_record, encode_record
from gate_daemon.errors import SourceError
from gate_daemon.gate.feed import HOUR, ResultFeed
from gate_daemon.net.screen import ScreenRefused, manual_payload
from gate_daemon.provision.tickets import load_tickets
from gate_daemon.store.manifest_file import read_manifest
from tests.gate_fixtures import Clock, gate_rig
from tests.live import LiveWorld, write_gate_config
from tests.support import SAT_START, World, replace_ticket

# -- the feed


async def test_each_subscriber_gets_every_result_published_after_it_subscribed() -> None:
    feed: ResultFeed[int] = ResultFeed()
    feed.publish(0)
    first, second = feed.subscribe(), feed.subscribe()
    feed.publish(1)
    feed.publish(2)
    assert [await anext(first), await anext(first)] == [1, 2]
    assert [await anext(second), await anext(second)] == [1, 2]
    with second:
        pass
    feed.publish(3)
    assert feed.subscribers == 1 and second.queue.empty() and await anext(first) == 3


async def test_a_slow_subscriber_loses_its_oldest_results_not_the_newest() -> None:
    feed: ResultFeed[int] = ResultFeed(size=4)
    slow = feed.subscribe()
    for n in range(10):
        feed.publish(n)
    assert [slow.queue.get_nowait() for _ in range(4)] == [6, 7, 8, 9]
    assert slow.dropped == 6


def test_scans_this_hour_forget_what_is_older_than_an_hour() -> None:
    mono = Clock(0.0)
    feed: ResultFeed[int] = ResultFeed(monotonic=mono)
    feed.publish(1)
    mono.now = HOUR / 2
    feed.publish(2)
    assert feed.last_hour() == 2
    mono.now = HOUR + 1
    assert feed.last_hour() == 1


async def test_a_gate_publishes_what_it_shows_once(world: World, tmp_path: Path) -> None:
    async with gate_rig(world, tmp_path / "gate") as rig:
        results = rig.gate.subscribe()
        shown = await rig.gate.scan("O-100-A2", device="test", scan_id="retry-me")
        again = await rig.gate.scan("O-100-A2", device="test", scan_id="retry-me")  # a retried request
        released = await rig.gate.release(device="button", operator="anna")
        assert again.duplicate and results.queue.qsize() == 2
        assert [await anext(results), await anext(results)] == [shown, released]


# -- the views

reasons = st.sampled_from(list(Reason))
details = st.fixed_dictionaries(
    {},
    optional={
        "ticket_id": st.text(min_size=1, max_size=8),
        "zone": st.sampled_from(["floor", "balcony", "nowhere"]),
        "session": st.sampled_from(["sat", "sun", "never"]),
        "opens_at": st.integers(0, 2**33),
        "last_entry_at": st.floats(0, 2**33),
        "last_entry_gate": st.text(min_size=1, max_size=8),
        "entries_allowed": st.integers(0, 255),
        "entries_used": st.integers(0, 255),
    },
)


@given(reason=reasons, extra=details, now=st.floats(0, 2**33), names=st.booleans())
def test_every_decision_has_one_colour_a_headline_and_words(
    shared_world: World, reason: Reason, extra: dict[str, object], now: float, names: bool
) -> None:
    decision = Decision(reason, "message", **extra)  # type: ignore[arg-type]
    entry = TicketEntry("T-1", seat="A1", name="Ada Lovelace")
    view = scan_view(decision, entry, shared_world.manifest, now, names=names)
    assert view["colour"] == COLOURS[decision.outcome] and view["headline"] and view["text"]
    assert ("name" in view) is names
    assert view.get("opens_in_ms", 0) >= 0 and view.get("used_ago_s", 0) >= 0
    if "zone" in view and extra.get("zone") == "balcony":
        assert view["zone"] == "Balcony"  # the zone's name from the manifest, not its id


def test_a_refusal_by_the_gate_itself_says_out_of_service(shared_world: World) -> None:
    for reason in (Reason.MANIFEST_MISSING, Reason.MANIFEST_EXPIRED, Reason.LEDGER_UNAVAILABLE):
        view = scan_view(Decision(reason, "x"), None, None, SAT_START, names=True)
        assert view["headline"] == "Out of service" and view["advice"] and view["colour"] == "red"
    assert (
        scan_view(Decision(Reason.OK, "Exit recorded"), None, None, 0, names=True)["text"] == "Exit recorded"
    )
    assert Reason.OK.outcome is Outcome.ALLOW


# -- [screen]


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("", None),
        ("[screen]\n", ("127.0.0.1", 8080, True, True)),
        ('[screen]\nlisten = "[::1]:9000"\n', ("::1", 9000, True, True)),
        ('[screen]\nlisten = "localhost:8081"\n', ("localhost", 8081, True, True)),
        ('[screen]\nlisten = "192.168.1.20:8080"\n', ("192.168.1.20", 8080, False, False)),
        (
            '[screen]\nlisten = "0.0.0.0:8080"\nhosts = ["gate-3.venue.lan"]\n'
            'names = true\nmanual_entry = true\ntoken = "screen-token"\n',
            ("0.0.0.0", 8080, True, True),
        ),
        ("[screen]\nnames = false\n", ("127.0.0.1", 8080, False, True)),
    ],
)
def test_the_screen_section(tmp_path: Path, live: LiveWorld, section: str, expected: tuple | None) -> None:
    screen = load_config(write_gate_config(tmp_path / "gate.toml", live, extra=section)).screen
    if expected is None:
        assert not screen.enabled
    else:
        assert (screen.host, screen.port, screen.names, screen.manual_entry) == expected


@pytest.mark.parametrize(
    ("section", "key", "words"),
    [
        ('[screen]\nlisten = "8080"\n', "screen.listen", "must be HOST:PORT"),
        ('[screen]\nlisten = ""\n', "screen.listen", "must be HOST:PORT"),
        ('[screen]\nlisten = "127.0.0.1:99999"\n', "screen.listen", "must be HOST:PORT"),
        ("[screen]\nnames = 1\n", "screen.names", "true or false"),
        ("[screen]\ncolour = true\n", "screen.colour", "unknown"),
    ],
)
def test_a_bad_screen_section_is_named_with_its_line(
    tmp_path: Path, live: LiveWorld, section: str, key: str, words: str
) -> None:
    path = write_gate_config(tmp_path / "gate.toml", live, extra=section)
    with pytest.raises(SourceError) as caught:
        load_config(path)
    text = str(caught.value)
    assert key in text and words in text and f"{path.name}:" in text


# -- holders' names


def test_a_name_round_trips_through_the_record_and_old_records_read_the_same() -> None:
    named = TicketEntry("T-1", order_id="O-1", seat="A1", name="Zoë Ångström")
    plain = dataclasses.replace(named, name="")
    for entry in (named, plain):
        data = encode_record(entry, {}, {})
        assert decode_record(data, 0, [], []) == (entry, len(data))
    assert len(encode_record(named, {}, {})) == len(encode_record(plain, {}, {})) + 1 + len(
        "Zoë Ångström".encode()
    )


def test_names_come_from_tickets_csv_into_the_signed_manifest(world: World, tmp_path: Path) -> None:
    csv = tmp_path / "named.csv"
    csv.write_text("ticket_id,status,name\nT-0001,completed,Ada Lovelace\nT-0002,completed,\n")
    tickets = load_tickets(csv, world.event)
    path = tmp_path / "named.gdm"
    path.write_bytes(world.build(tickets))
    manifest = read_manifest(path, world.trusted)
    assert manifest.find_ticket("T-0001").name == "Ada Lovelace"  # type: ignore[union-attr]
    assert manifest.find_ticket("T-0002").name == ""  # type: ignore[union-attr]


def test_a_bad_name_is_named_by_line_and_column(world: World, tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("ticket_id,status,name\nT-0001,completed,Ada\x07\nT-0002,completed," + "x" * 65 + "\n")
    with pytest.raises(SourceError) as caught:
        load_tickets(csv, world.event)
    lines = {(p.line, p.where) for p in caught.value.problems}
    assert lines == {(2, "column 'name'"), (3, "column 'name'")}


def test_a_ticket_no_longer_sold_keeps_no_name(world: World) -> None:
    named = replace_ticket(world.tickets, "T-0002", name="Ada Lovelace")
    rest = [t for t in named if t.ticket_id != "T-0002"]
    plan = plan_delta(world.event.event_id, named, rest, {"sat", "sun"}, {"floor", "balcony"})
    tomb = next(t for t in plan.entries if t.ticket_id == "T-0002")
    assert tomb.name == ""


# -- the manual entry's body

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@given(body=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_manual_entry_body_is_a_payload_or_a_named_refusal(body: bytes) -> None:
    try:
        payload = manual_payload(body)
    except ScreenRefused as refused:
        assert refused.name in {"not_json", "bad_request"} and refused.status == 400
    else:
        assert payload == payload.strip() and payload.isprintable() and 0 < len(payload) <= 512


@given(payload=st.text(min_size=1, max_size=512).filter(lambda t: t.strip() and t.strip().isprintable()))
def test_a_printable_payload_comes_through_as_typed(payload: str) -> None:
    assert manual_payload(json.dumps({"payload": payload}).encode()) == payload.strip()
