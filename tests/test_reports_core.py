"""The pure parts of the reports: a ticket's history, the uploaded evidence row, an incident and its page."""

from __future__ import annotations

import csv
import io
import json
import uuid as uuidlib
from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gate_daemon.central.incident_page import render
from gate_daemon.core.evidence import FIELDS, EvidenceError, EvidenceScan, parse_scan
from gate_daemon.core.incident import (
    Beat,
    Collision,
    IncidentData,
    Receipt,
    ScanMark,
    analyse,
    bucket_seconds,
)
from gate_daemon.core.ticket_history import (
    COLUMNS,
    RecordFact,
    ScanFact,
    admissions,
    answer,
    as_csv,
    as_json,
    as_text,
    history,
    ticket_id_problem,
)

T0 = 1_800_000_000.0


def scan(uuid: str, hlc: int, gate: str, outcome: str = "allow", reason: str = "ok") -> ScanFact:
    resolution = "admitted" if outcome == "allow" else "refused"
    return ScanFact(
        uuid, hlc, T0 + hlc, gate, "camera", "anna", "entry", outcome, reason, resolution, "offline"
    )


def record(uuid: str, hlc: int, origin: str, kind: str = "entry", voids: str | None = None) -> RecordFact:
    return RecordFact(uuid, hlc, T0 + hlc, origin, kind, None, "offline", False, voids)


# ------------------------------------------------------------------ a ticket's history


def test_a_scan_and_its_record_are_one_row_and_a_learned_record_its_own() -> None:
    rows = history(
        [scan("s2", 20, "south-1", "already_used", "already_used"), scan("r1", 10, "north-1")],
        [record("r1", 10, "north-1"), record("r3", 30, "east-1", "exit")],
        {},
    )
    assert [(r.gate, r.source, r.record, r.outcome) for r in rows] == [
        ("north-1", "scan", "r1", "allow"),
        ("south-1", "scan", None, "already_used"),
        ("east-1", "record", "r3", None),
    ]


def test_conflicts_and_voids_are_named_on_both_sides() -> None:
    records = [
        record("a", 10, "north-1"),
        record("b", 11, "south-1"),
        record("c", 12, "east-1"),
        record("v", 13, "east-1", "void", voids="c"),
    ]
    rows = {r.record: r for r in history([], records, {"b": "a"})}
    assert rows["a"].conflict == "stands over b"
    assert rows["b"].conflict == "lost to a"
    assert rows["c"].void == "voided by v"
    assert rows["v"].void == "voids c"
    admitted = admissions(records, {"b": "a"})
    assert [a.record for a in admitted] == ["a"]  # b lost, c was voided by its own gate
    assert answer("P-1", list(rows.values()), admitted).startswith("P-1: admitted once: north-1 at ")


def test_a_void_from_another_gate_takes_nothing_back() -> None:
    records = [record("a", 10, "north-1"), record("v", 11, "south-1", "void", voids="a")]
    assert [a.record for a in admissions(records, {})] == ["a"]


def test_never_admitted_says_so() -> None:
    rows = history([scan("s", 5, "north-1", "deny", "revoked")], [], {})
    assert as_text("P-9", rows, []).splitlines()[0] == "P-9: never admitted (1 rows, 1 scans)"


def test_text_json_and_csv_carry_the_same_rows() -> None:
    rows = history([scan("r1", 10, "north-1")], [record("r1", 10, "north-1")], {})
    table = list(csv.DictReader(io.StringIO(as_csv(rows), newline="")))
    assert list(table[0]) == list(COLUMNS)
    assert table[0]["record"] == "r1" and table[0]["gate"] == "north-1"
    data = json.loads(json.dumps(as_json("P-1", rows, admissions([record("r1", 10, "north-1")], {}))))
    assert data["rows"][0]["record"] == "r1" and data["admitted"][0]["gate"] == "north-1"
    assert "north-1" in as_text("P-1", rows, [])


def test_equal_stamps_are_ordered_by_uuid_then_scan_before_record() -> None:
    # Same hlc everywhere: a denial (no record) sorts by its scan's uuid, not after every record.
    rows = history(
        [scan("c", 10, "north-1", "deny", "revoked"), scan("a", 10, "south-1", "deny", "revoked")],
        [record("b", 10, "east-1"), record("d", 10, "west-1")],
        {},
    )
    assert [(r.uuid, r.source) for r in rows] == [
        ("a", "scan"),
        ("b", "record"),
        ("c", "scan"),
        ("d", "record"),
    ]
    shuffled = history(
        [scan("a", 10, "south-1", "deny", "revoked"), scan("c", 10, "north-1", "deny", "revoked")],
        [record("d", 10, "west-1"), record("b", 10, "east-1")],
        {},
    )
    assert shuffled == rows


def test_a_scan_uploaded_by_another_gate_does_not_stand_for_its_record() -> None:
    # south-1 uploaded a row under north-1's scan uuid: both rows show, each under its own gate,
    # and only north-1's row is the record.
    rows = history(
        [scan("r1", 10, "north-1"), scan("r1", 10, "south-1", "deny", "revoked")],
        [record("r1", 10, "north-1")],
        {},
    )
    assert [(r.gate, r.source, r.record, r.outcome) for r in rows] == [
        ("north-1", "scan", "r1", "allow"),
        ("south-1", "scan", None, "deny"),
    ]
    lone = history([scan("r1", 10, "south-1", "deny", "revoked")], [record("r1", 10, "north-1")], {})
    assert [(r.gate, r.source, r.record) for r in lone] == [
        ("north-1", "record", "r1"),
        ("south-1", "scan", None),
    ]


@given(st.text(min_size=1, max_size=20))
def test_csv_cells_never_start_a_formula_and_always_parse_back(operator: str) -> None:
    fact = ScanFact("u", 1, T0, "north-1", "camera", operator, "entry", "allow", "ok", "admitted", "online")
    (row,) = csv.DictReader(io.StringIO(as_csv(history([fact], [], {})), newline=""))
    cell = row["operator"]
    assert not cell.startswith(("=", "+", "-", "@"))
    assert cell == operator or cell == "'" + operator


@pytest.mark.parametrize("bad", [None, "", "a\nb", "x" * 65])
def test_a_ticket_id_that_cannot_be_one_is_named(bad: str | None) -> None:
    assert ticket_id_problem(bad) is not None


# ------------------------------------------------------------------ the evidence row


def row(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "uuid": str(uuidlib.uuid4()), "hlc": 5, "wall": T0, "device": "camera", "operator": None,
        "ticket_id": "P-001", "kind": "entry", "outcome": "deny", "reason": "revoked",
        "resolution": "refused", "mode": "offline", "manifest_version": 3,
    }  # fmt: skip
    base.update(changes)
    return base


def test_a_row_round_trips() -> None:
    data = row()
    assert parse_scan(data).as_dict() == data
    assert parse_scan(row(hlc=7.0)).hlc == 7  # JSON's 7.0 is the integer 7


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"uuid": "not-a-uuid"}, "uuid"),
        ({"hlc": -1}, "hlc"),
        ({"hlc": True}, "hlc"),
        ({"wall": "yesterday"}, "wall"),
        ({"wall": 1e12}, "wall"),
        ({"device": ""}, "device"),
        ({"operator": "a\x1b[2J"}, "operator"),
        ({"ticket_id": "x" * 65}, "ticket_id"),
        ({"kind": "void"}, "kind"),
        ({"outcome": "Allow!"}, "outcome"),
        ({"mode": "peer"}, "mode"),
        ({"manifest_version": 1.5}, "manifest_version"),
        ({"payload": "P1-1"}, "'payload'"),
    ],
)
def test_a_bad_field_is_named(changes: dict[str, object], field: str) -> None:
    with pytest.raises(EvidenceError) as caught:
        parse_scan(row(**changes))
    assert caught.value.field == field


def test_a_missing_field_is_named() -> None:
    data = row()
    del data["reason"]
    with pytest.raises(EvidenceError, match="reason: is missing"):
        parse_scan(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


@given(st.one_of(json_values, st.fixed_dictionaries(dict.fromkeys(FIELDS, json_values))))
def test_anything_is_a_row_or_a_named_error(data: object) -> None:
    try:
        parsed = parse_scan(data)
    except EvidenceError as exc:
        assert exc.field
    else:
        assert isinstance(parsed, EvidenceScan)


# ------------------------------------------------------------------ an incident


def beats(gate: str, times: list[float], mode: str = "online") -> list[Beat]:
    return [Beat(gate, T0 + t, mode, 0, 0, 0) for t in times]


def incident_data(**changes: object) -> IncidentData:
    later = [float(t) for t in range(22, 30)]
    north = (
        beats("north-1", [0, 1, 2, 3, 4]) + beats("north-1", [20, 21], "offline") + beats("north-1", later)
    )
    south = beats("south-1", [0, 1, 2, 3, 4, 20, 21, *later], "offline")
    values: dict[str, object] = {
        "start": T0,
        "end": T0 + 30,
        "scans": [ScanMark(T0 + t, "north-1", "allow", "ok", "online") for t in (1, 2, 3)]
        + [ScanMark(T0 + t, "north-1", "allow", "ok", "offline") for t in (6, 8)]
        + [ScanMark(T0 + 9, "south-1", "deny", "manifest_expired", "offline")],
        "beats": north + south,
        "receipts": [
            Receipt("north-1", "entry", False, T0 + 6, T0 + 21),
            Receipt("south-1", "entry", False, T0 + 7, T0 + 22),
        ],
        "collisions": [Collision("P-1", "south-1", T0 + 7, "l", "north-1", T0 + 6, "w")],
        "gates": ["north-1", "south-1", "west-1"],
    }
    values.update(changes)
    return IncidentData(**values)  # type: ignore[arg-type]


def test_a_silence_of_every_gate_is_one_window_with_its_kpis() -> None:
    incident = analyse(incident_data())
    assert [(w.start_ms, w.end_ms, w.gates) for w in incident.windows] == [
        (int((T0 + 4) * 1000), int((T0 + 20) * 1000), ("north-1", "south-1"))
    ]
    assert {(p.gate, p.kind) for p in incident.periods} == {
        ("north-1", "unheard"),
        ("south-1", "unheard"),
        ("north-1", "offline"),
    }
    assert incident.kpis.mode_switch_s == 2.0  # north-1's first offline scan, 2 s after its last beat
    assert incident.kpis.sync_restoration_s == 2.0  # the last record of the window held 2 s after it
    assert incident.kpis.conflict_rate == 0.5
    reasons = {a.gate: a.reasons for a in incident.attention}
    assert any("double entry" in r for r in reasons["south-1"])
    assert any("manifest_expired" in r for r in reasons["south-1"])
    assert reasons["west-1"] == ("no heartbeat in the period",)
    assert incident.totals == {"scans": 6, "offline_scans": 3, "denials": 1, "entries": 2, "conflicts": 1}
    assert sum(sum(v) for v in incident.series.values()) == 6


def test_entries_their_gate_voided_are_not_entries_admitted() -> None:
    # south-1's entry was not passed (voided by south-1): the rate is over north-1's entry alone.
    receipts = [
        Receipt("north-1", "entry", False, T0 + 6, T0 + 21),
        Receipt("south-1", "entry", False, T0 + 7, T0 + 22),
        Receipt("south-1", "entry", False, T0 + 8, T0 + 22, voided=True),
        Receipt("south-1", "void", False, T0 + 8, T0 + 22),
    ]
    incident = analyse(incident_data(receipts=receipts))
    assert incident.kpis.conflict_rate == 0.5
    assert incident.totals["entries"] == 2
    assert incident.per_gate["south-1"].conflict_rate == 1.0


def test_a_gate_heard_throughout_makes_no_window() -> None:
    steady = beats("north-1", [float(t) for t in range(31)])
    scans = [ScanMark(T0 + t, "north-1", "allow", "ok", "online") for t in (1, 2, 3)]
    incident = analyse(incident_data(beats=steady, scans=scans, collisions=[], gates=["north-1"]))
    assert incident.windows == [] and incident.kpis.mode_switch_s is None
    assert incident.attention == []


def test_a_gate_silent_at_the_end_is_unheard_to_the_end() -> None:
    incident = analyse(incident_data(beats=beats("north-1", [0, 1, 2, 3]), gates=["north-1"]))
    (period,) = [p for p in incident.periods if p.kind == "unheard"]
    assert (period.start, period.end) == (T0 + 3, T0 + 30)


@pytest.mark.parametrize(("span", "width"), [(25, 1), (600, 15), (3600, 60), (86_400, 120)])
def test_buckets_fit_the_period(span: float, width: int) -> None:
    assert bucket_seconds(span) == width


class Balance(HTMLParser):
    VOID = frozenset({"meta", "br", "line", "rect", "path", "polyline", "i"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID and (not self.stack or self.stack[-1] != tag):
            return
        assert self.stack and self.stack.pop() == tag


def test_the_page_escapes_what_it_shows_and_balances_its_tags() -> None:
    hostile = '<script>alert("x")</script>'
    data = incident_data(
        gates=["north-1", "south-1", hostile],
        collisions=[Collision(hostile, "south-1", T0 + 7, "l", "north-1", T0 + 6, "w")],
    )
    page = render(analyse(data), title=f"Incident {hostile}")
    checker = Balance()
    checker.feed(page)
    checker.close()
    assert checker.stack == [] and checker.scripts == 0
    assert "&lt;script&gt;" in page
    assert page.count('class="series"') == 3 and 'class="period unheard"' in page
