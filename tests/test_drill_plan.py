"""The drill's parts without a venue: scenarios (and refusals saying where), crowd, page."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from playwright.sync_api import Page

from gate_daemon.drill.crowd import plan_crowd
from gate_daemon.drill.faults import gates_of, islands_of
from gate_daemon.drill.page import render
from gate_daemon.drill.scenario import ScenarioError, bundled, load_scenario, parse_scenario

BUNDLED = ("bad-wifi", "central-outage", "clock-skew", "doors-open", "power-cut", "split-venue")

SHORT = """\
name = "short"
duration_s = 60
seed = 3
[crowd]
per_gate = 30
screenshot_share = 0.3
screenshot_delay_s = [2, 10]
[[faults]]
kind = "split"
at_s = 10
for_s = 20
[[faults]]
kind = "cancel"
at_s = 5
count = 4
"""


def test_every_bundled_scenario_loads() -> None:
    assert tuple(bundled()) == BUNDLED
    kinds = {fault.kind for name in BUNDLED for fault in load_scenario(name).faults}
    assert kinds == {
        "central-down",
        "split",
        "loss",
        "bandwidth",
        "latency",
        "power-cut",
        "clock-skew",
        "cancel",
    }


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('name = "x"\nduration_s = 60\nspeed = 1\n', "scenario: speed: unknown key"),
        ('name = "x"\nduration_s = 5\n', "scenario: duration_s: must be a number from 10"),
        ('name = "x"\nduration_s = 60\n[crowd]\npace_s = 0\n', "scenario: crowd.pace_s"),
        ('name = "x"\nduration_s = 60\n[[faults]]\nkind = "flood"\n', "scenario: faults[0].kind"),
        ('name = "x"\nduration_s = 60\n[[faults]]\nkind = "loss"\npercent = 101\n', "faults[0].percent"),
        (
            'name = "x"\nduration_s = 60\n[[faults]]\nkind = "split"\npercent = 5\n',
            "faults[0].percent: unknown",
        ),
        (
            'name = "x"\nduration_s = 60\n[[faults]]\nkind = "clock-skew"\noffset = "1 day"\n',
            "faults[0].offset",
        ),
        ('name = "x"\nduration_s = 60\n[crowd]\nmix = { paper = 1 }\n', "crowd.mix"),
        ("name = \n", "scenario: not TOML"),
    ],
)
def test_bad_scenarios_are_refused_with_where(text: str, where: str) -> None:
    with pytest.raises(
        ScenarioError, match=where.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")
    ):
        parse_scenario(text)


def test_a_missing_scenario_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no such file, and not a bundled scenario"):
        load_scenario(str(tmp_path / "nope.toml"))


@given(st.text(alphabet=string.printable, max_size=300))
def test_any_text_is_a_scenario_or_a_named_refusal(text: str) -> None:
    try:
        parse_scenario(text)
    except ScenarioError as exc:
        assert str(exc).startswith("scenario:")


@given(
    st.dictionaries(
        st.sampled_from(["kind", "at_s", "for_s", "gates", "percent", "islands", "how", "offset", "count"]),
        st.one_of(st.integers(-5, 500), st.text(max_size=5), st.lists(st.integers(-1, 40), max_size=3)),
    )
)
def test_any_fault_table_is_a_fault_or_a_named_refusal(fault: dict[str, object]) -> None:
    lines = [f"{key} = {_toml(value)}" for key, value in fault.items()]
    text = 'name = "f"\nduration_s = 100\n[[faults]]\n' + "\n".join(lines) + "\n"
    try:
        scenario = parse_scenario(text)
    except ScenarioError as exc:
        assert "faults[0]" in str(exc) or "not TOML" in str(exc)
    else:
        assert scenario.faults[0].at_s <= 100


def _toml(value: object) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value).replace("'", '"')


def test_the_crowd_is_planned_the_same_way_each_time() -> None:
    scenario = parse_scenario(SHORT)
    plan = plan_crowd(scenario, 4)
    assert plan == plan_crowd(scenario, 4)
    assert plan != plan_crowd(scenario, 5)
    holders = [v for v in plan.visits if v.purpose in ("holder", "canceled", "wrong-zone", "late-canceled")]
    assert len(holders) == len(plan.tickets) == 30 * 4
    assert all(0 <= v.at_s <= 60 * 0.8 for v in plan.visits)
    assert [v.at_s for v in plan.visits] == sorted(v.at_s for v in plan.visits)
    shared = [v for v in plan.visits if v.purpose == "screenshot"]
    assert shared, "a 30% share of 120 holders shares a screenshot"
    for visit in shared:
        source = plan.visits[visit.shared_from or 0]
        assert visit.shared_from is not None and source.ticket_id == visit.ticket_id
        assert source.at_s <= visit.at_s


def test_a_cancellation_picks_tickets_shown_once_after_it() -> None:
    plan = plan_crowd(parse_scenario(SHORT), 4)
    (canceled,) = plan.cancellations
    assert len(canceled) == 4
    for ticket_id in canceled:
        (visit,) = [v for v in plan.visits if v.ticket_id == ticket_id]
        assert visit.purpose == "late-canceled" and visit.at_s > 5 + 30
        assert plan.ticket(ticket_id).entries == "1"


def test_fault_gates_wrap_and_islands_cover_the_venue() -> None:
    fault = parse_scenario(
        'name = "w"\nduration_s = 60\n[[faults]]\nkind = "power-cut"\ngates = [2, 6]\n'
    ).faults[0]
    assert gates_of(fault, 4) == (2,)
    split = parse_scenario('name = "s"\nduration_s = 60\n[[faults]]\nkind = "split"\nislands = 3\n').faults[0]
    islands = islands_of(split, 8)
    assert sorted(n for island in islands for n in island) == list(range(1, 9))
    assert len(islands) == 3 and all(islands)
    assert islands_of(split, 2) == [[1], [2]]


def test_the_report_page_draws_gates_and_windows(page: Page, tmp_path: Path) -> None:
    gate = {
        "scans": 3,
        "admitted": 2,
        "offline_decided": 1,
        "latency_ms": {"p50": 5.0, "p99": 9.0},
        "kpis": {"mode_switch_s": 0.6},
        "conflicts_reported": 0,
        "restarts": 1,
        "cpu_s": 1.5,
        "throughput": [1, 2, 0],
    }
    report = {
        "scenario": "<b>x</b>",
        "description": "d",
        "gates": 2,
        "invariants_hold": False,
        "kpis": {
            "mode_switch_s": 0.6,
            "throughput_drop_pct": 12.5,
            "conflict_rate": 0.0,
            "sync_restoration_s": None,
        },
        "lost": 1,
        "converged": True,
        "conflicts_expected": 0,
        "conflicts_found": 0,
        "screenshots_admitted": 0,
        "screenshots_refused": 1,
        "screenshots_refused_why": {"already_used": 1},
        "latency_ms": {"p50": 5.0, "p99": 9.0},
        "scans": 6,
        "redemptions": 4,
        "records": 4,
        "requests_per_redemption": 3.0,
        "bytes_per_redemption": 900.0,
        "cpu_s_per_gate": 1.5,
        "latency_by": "no latency fault",
        "notes": [],
        "doors_open_ms": 0,
        "windows": [{"start_ms": 2000, "end_ms": 8000, "label": "split", "gates": [], "kind": "split"}],
        "per_gate": {"gate-01": gate, "gate-02": gate},
    }
    path = tmp_path / "report.html"
    path.write_text(render(report))
    page.goto(path.as_uri())
    assert page.locator("#verdict").inner_text() == "INVARIANTS BROKEN"
    assert page.locator("h1").inner_text().startswith("Drill: <b>x</b>")
    assert page.locator("svg polyline.gate").count() == 2
    assert page.locator("svg rect.window").count() == 1
    assert page.locator("#gates tr").count() == 3
    assert "12.5 %" in page.locator("#kpis").inner_text()
