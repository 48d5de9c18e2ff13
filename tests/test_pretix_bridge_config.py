"""The bridge's config ([source]), the venue file, and what pretix's data becomes in a manifest (pure)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gate_daemon.central.config import load_central_config
from gate_daemon.central.pretix.mapping import (
    BRIDGE_GATE,
    EventFacts,
    ListRefused,
    MappingError,
    build_inputs,
    checkin_list,
    served_lists,
    session_of,
)
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.pretix_sig import ticket_id_for
from gate_daemon.core.ticket_record import Status
from gate_daemon.core.tokens import REENTRY, code_hash
from gate_daemon.errors import SourceError
from gate_daemon.provision.event import load_event
from gate_daemon.store.central.pretix import PositionRow

SOURCE = """\
[central]
state_dir = "state"
event = "venue.toml"
key = "signer.key"

[source]
kind = "pretix"
url = "https://pretix.example.org/"
organizer = "gateorg"
event = "gate2026"
init_token = "${CREDENTIALS_DIRECTORY}/pretix-init-token"
interval_s = 10

[source.lists]
main = 1
vip = 2
"""

VENUE = """\
[event]
id = "gate2026"

[[zones]]
id = "main"
name = "Main"

[[zones]]
id = "vip"
name = "VIP"
"""

LISTS = [
    {"id": 1, "all_products": False, "limit_products": [10, 11], "subevent": None, "include_pending": False,
     "allow_multiple_entries": False, "allow_entry_after_exit": True, "rules": {}},
    {"id": 2, "all_products": False, "limit_products": [11], "subevent": None, "include_pending": True,
     "allow_multiple_entries": True, "allow_entry_after_exit": True, "rules": None},
]  # fmt: skip
ITEMS = [{"id": 10, "name": {"en": "Day"}}, {"id": 11, "name": {"en": "VIP"}}, {"id": 12, "name": "Parking"}]
EVENT = {
    "name": {"en": "Gate 2026"},
    "date_from": "2026-12-08T19:00:00Z",
    "date_to": "2026-12-08T23:00:00+00:00",
    "date_admission": "2026-12-08T18:00:00Z",
    "has_subevents": False,
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "central.toml"
    path.write_text(text)
    return path


def test_the_contract_a_tech_writes_loads(tmp_path: Path) -> None:
    config = load_central_config(write(tmp_path, SOURCE), {"CREDENTIALS_DIRECTORY": "/run/creds"})
    source = config.source
    assert source is not None
    assert (source.url, source.organizer, source.event) == (
        "https://pretix.example.org",
        "gateorg",
        "gate2026",
    )
    assert source.init_token == Path("/run/creds/pretix-init-token")
    assert source.lists == (("main", 1), ("vip", 2))
    assert source.interval_s == 10 and source.online_timeout_ms == 400


def test_the_file_source_stays_the_default(tmp_path: Path) -> None:
    text = '[central]\nstate_dir = "s"\nevent = "e.toml"\ntickets = "t.csv"\nkey = "k"\n'
    assert load_central_config(write(tmp_path, text)).source is None


@pytest.mark.parametrize(
    ("change", "where", "said"),
    [
        (('kind = "pretix"', 'kind = "eventbrite"'), "source.kind", "must be"),
        (("main = 1", 'main = "one"'), "source.lists.main", "check-in list id"),
        (("vip = 2", "vip = 1"), "source.lists.vip", "serves another zone"),
        (('url = "https://pretix.example.org/"', 'url = "ftp://x"'), "source.url", "http(s) URL"),
        (("interval_s = 10", "interval_s = 0"), "source.interval_s", "outside"),
        (('organizer = "gateorg"', 'organizer = "gate org"'), "source.organizer", "must match"),
        (('event = "venue.toml"', 'event = "venue.toml"\ntickets = "t.csv"'), "central.tickets", "not used"),
        (("[source.lists]\nmain = 1\nvip = 2\n", "[source.lists]\n"), "source.lists", "at least one"),
    ],
)
def test_bad_source_keys_are_named_with_their_line(
    tmp_path: Path, change: tuple[str, str], where: str, said: str
) -> None:
    with pytest.raises(SourceError) as caught:
        load_central_config(write(tmp_path, SOURCE.replace(*change)), {"CREDENTIALS_DIRECTORY": "/c"})
    text = str(caught.value)
    assert where in text and said in text, text
    assert re.search(rf"central\.toml:\d+: {re.escape(where)}: ", text), text


def test_a_venue_file_has_no_sessions_and_may_leave_out_the_name(tmp_path: Path) -> None:
    path = tmp_path / "venue.toml"
    path.write_text(VENUE)
    assert load_event(path, venue=True).name == ""
    path.write_text(
        VENUE + '\n[[sessions]]\nid = "x"\nstarts_at = 2026-01-01T00:00:00Z\nends_at = 2026-01-02T00:00:00Z\n'
    )
    with pytest.raises(SourceError) as caught:
        load_event(path, venue=True)
    assert "come from pretix" in str(caught.value)


def test_a_list_with_rules_is_refused_by_name_never_ignored() -> None:
    ruled = {**LISTS[0], "rules": {"and": [{"isAfter": [{"var": "now"}, {"buildTime": ["date_from"]}]}]}}
    with pytest.raises(ListRefused, match="rules"):
        checkin_list(ruled)
    with pytest.raises(ListRefused, match="no check-in list main = 7"):
        served_lists(LISTS, (("main", 7),))
    with pytest.raises(MappingError):
        checkin_list({"id": "one"})


def test_entry_opens_at_date_admission_and_a_missing_end_is_a_day_later() -> None:
    session = session_of("event", EVENT, "event")
    assert session.opens_at == 1796752800  # 2026-12-08T18:00:00Z
    assert session.ends_at - session.starts_at == 4 * 3600
    open_ended = session_of("event", {**EVENT, "date_to": None, "date_admission": None}, "event")
    assert open_ended.ends_at - open_ended.starts_at == 86400
    assert open_ended.entry_opens_minutes == 10080
    with pytest.raises(MappingError, match="date_from"):
        session_of("event", {"date_from": "tomorrow"}, "event")


def position(pid: int, item: int, status: str = "completed", secret: str | None = None) -> PositionRow:
    return PositionRow(
        pid, f"ORD{pid}-1", secret or f"secret-{pid}-xxxxxxxxxxxx", f"ORD{pid}", status, item, None, "Ada"
    )


def test_positions_become_tickets_by_list_policy_status_and_secret(tmp_path: Path) -> None:
    (tmp_path / "venue.toml").write_text(VENUE)
    venue = load_event(tmp_path / "venue.toml", venue=True)
    key = SecretKey.generate()
    lists = served_lists(LISTS, (("main", 1), ("vip", 2)))
    rows = [
        position(1, 10),
        position(2, 11),
        position(3, 11, "pending"),
        position(4, 10, "pending"),
        position(5, 12),
        position(6, 10, secret="blocked-secret-xxxxxxxx"),
        position(7, 10, "canceled", secret="new-secret-of-7-xxxxx"),
    ]
    secrets = {
        "blocked-secret-xxxxxxxx": ("blocked", "1"),
        "old-secret-of-7-xxxxx": ("revoked", "9"),
    }
    spec, tickets, header = build_inputs(
        venue, key.public, EventFacts(EVENT, [], LISTS, ITEMS), lists, rows, secrets
    )
    by_id = {t.ticket_id: t for t in tickets}
    assert by_id["ORD1-1"].zone == "main" and by_id["ORD1-1"].entries == REENTRY
    assert by_id["ORD2-1"].zone == "" and by_id["ORD2-1"].status is Status.COMPLETED
    assert by_id["ORD3-1"].status is Status.PENDING  # main (its first list) does not include pending
    assert by_id["ORD4-1"].status is Status.PENDING
    assert "ORD5-1" not in by_id  # on no served list
    assert by_id["ORD6-1"].status is Status.BLOCKED
    assert by_id["ORD7-1"].status is Status.CANCELED
    revoked = ticket_id_for("gate2026", "old-secret-of-7-xxxxx")
    assert by_id[revoked].code_hash == code_hash("gate2026", "old-secret-of-7-xxxxx")
    assert revoked in spec.revoked
    assert header["pretix_revoked"] == [code_hash("gate2026", "old-secret-of-7-xxxxx").hex()]
    assert header["pretix_blocked"] == [code_hash("gate2026", "blocked-secret-xxxxxxxx").hex()]
    assert set(header["pretix_lists"]) == {"main", "vip"}
    assert by_id["ORD1-1"].code_hash == code_hash("gate2026", "secret-1-xxxxxxxxxxxx")
    assert not spec.legacy_codes
    assert [g.id for g in spec.gates] == [BRIDGE_GATE] and spec.gates[0].key == key.public
    assert [s.id for s in spec.sessions] == ["event"] and spec.name == "Gate 2026"


def test_subevents_are_sessions(tmp_path: Path) -> None:
    (tmp_path / "venue.toml").write_text(VENUE)
    venue = load_event(tmp_path / "venue.toml", venue=True)
    subs = [
        {
            "id": 5,
            "name": {"en": "Day 1"},
            **{k: EVENT[k] for k in ("date_from", "date_to", "date_admission")},
        }
    ]
    event = {**EVENT, "has_subevents": True}
    rows = [PositionRow(1, "A-1", "secret-aaaaaaaaaaaa", "A", "completed", 10, 5, "")]
    lists = served_lists(LISTS, (("main", 1),))
    facts = EventFacts(event, subs, LISTS, ITEMS)
    spec, tickets, header = build_inputs(venue, SecretKey.generate().public, facts, lists, rows, {})
    assert header["pretix_subevents"] == {"5": "s5"}
    assert [s.id for s in spec.sessions] == ["s5"] and tickets[0].session == "s5"


def test_the_shipped_pretix_examples_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from gate_daemon.central.cli import main
    from gate_daemon.provision.keyfiles import write_keypair

    root = Path(__file__).resolve().parent.parent / "config"
    for name in ("central-pretix.example.toml", "venue.example.toml"):
        shutil.copy(root / name, tmp_path / name)
    for name in ("signer", "north-1", "sam"):
        write_keypair(tmp_path / name)
    (tmp_path / "pretix-init-token").write_text("token\n")
    assert main(["check-config", str(tmp_path / "central-pretix.example.toml")]) == 0
    said = capsys.readouterr().out
    assert "event gate2026 from pretix https://pretix.example.org gateorg/gate2026" in said
    assert "main = list 1, vip = list 2" in said


def test_the_venue_files_staff_badges_capacity_and_rotating_keys_reach_the_manifest(tmp_path: Path) -> None:
    from gate_daemon.central.manifests import spec_of
    from gate_daemon.core.manifest import open_manifest
    from gate_daemon.provision.build import build_manifest
    from gate_daemon.provision.keyfiles import write_keypair

    staff = write_keypair(tmp_path / "staff")[2]
    top = 'staff_keys = ["staff.pub"]\nrevoked_staff = ["op-7"]\nrevoked_holders = ["00112233aabbccdd"]\n'
    event = 'capacity = 300\ncapacity_mode = "strict"\nrotating_tolerance = 3\n'
    text = top + VENUE.replace('id = "gate2026"\n', 'id = "gate2026"\n' + event, 1)
    (tmp_path / "venue.toml").write_text(text.replace('name = "VIP"\n', 'name = "VIP"\ncapacity = 40\n'))
    venue = load_event(tmp_path / "venue.toml", venue=True)
    key = SecretKey.generate()
    lists = served_lists(LISTS, (("main", 1), ("vip", 2)))
    spec, tickets, header = build_inputs(
        venue, key.public, EventFacts(EVENT, [], LISTS, ITEMS), lists, [position(1, 10)], {}
    )
    data = build_manifest(spec, tickets, key, version=1, issued_at=1_700_000_000, extra_header=header)
    made = spec_of(open_manifest(data, [key.public]))
    assert made.staff_keys == (staff.public,) and made.revoked_staff == ("op-7",)
    assert (made.capacity, made.capacity_mode) == (300, "strict")
    assert made.revoked_holders == ("00112233aabbccdd",) and made.rotating_tolerance == 3
    assert [z.capacity for z in made.zones] == [None, 40]
