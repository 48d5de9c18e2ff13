"""The failover KPIs (core/kpis.py): worked examples for each definition and their invariants."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from gate_daemon.core.kpis import (
    Arrival,
    Kpis,
    ModeSwitch,
    ScanPoint,
    Window,
    failover_kpis,
    kpis_per_gate,
    switches_from_scans,
)

MIN = 60_000


def scans_every(gate: str, start: int, end: int, step: int, mode: str = "online") -> list[ScanPoint]:
    return [ScanPoint(t, gate, "allow", mode) for t in range(start, end, step)]


# ------------------------------------------------------------------ worked examples


def test_nothing_to_measure_is_none() -> None:
    assert failover_kpis([], [], [], [], 0, 0) == Kpis(None, None, None, None)


def test_mode_switch_is_the_median_delay_from_the_window_start() -> None:
    window = Window(10 * MIN, 20 * MIN, "central down")
    switches = [
        ModeSwitch(10 * MIN + 2_000, "a", "offline"),
        ModeSwitch(10 * MIN + 4_000, "b", "offline"),
        ModeSwitch(10 * MIN + 9_000, "c", "offline"),
        ModeSwitch(10 * MIN + 1_000, "c", "online"),  # a switch back online is no sample
        ModeSwitch(9 * MIN, "d", "offline"),  # before the window: no sample
    ]
    assert failover_kpis([], [window], switches, [], 0, 0).mode_switch_s == 4.0


def test_only_the_first_switch_offline_of_a_gate_counts() -> None:
    window = Window(0, 10 * MIN, "w")
    switches = [ModeSwitch(3_000, "a", "offline"), ModeSwitch(8_000, "a", "offline")]
    assert failover_kpis([], [window], switches, [], 0, 0).mode_switch_s == 3.0


def test_a_window_naming_gates_ignores_the_others() -> None:
    window = Window(0, 10 * MIN, "w", gates=("a",))
    switches = [ModeSwitch(2_000, "a", "offline"), ModeSwitch(30_000, "b", "offline")]
    assert failover_kpis([], [window], switches, [], 0, 0).mode_switch_s == 2.0


def test_throughput_drop_compares_with_an_equal_span_before() -> None:
    window = Window(10 * MIN, 20 * MIN, "w")
    # Gate a: 10 a minute before, 5 a minute during: a 50 % drop.
    scans = scans_every("a", 0, 10 * MIN, 6_000) + scans_every("a", 10 * MIN, 20 * MIN, 12_000, "offline")
    assert failover_kpis(scans, [window], [], [], 0, 0).throughput_drop_pct == 50.0


def test_a_gate_with_no_scans_before_gives_no_drop_sample() -> None:
    window = Window(10 * MIN, 20 * MIN, "w")
    scans = scans_every("a", 10 * MIN, 20 * MIN, 6_000)
    assert failover_kpis(scans, [window], [], [], 0, 0).throughput_drop_pct is None


def test_a_faster_gate_during_the_fault_is_a_negative_drop() -> None:
    window = Window(MIN, 2 * MIN, "w")
    scans = scans_every("a", 0, MIN, 20_000) + scans_every("a", MIN, 2 * MIN, 10_000)
    assert failover_kpis(scans, [window], [], [], 0, 0).throughput_drop_pct == -100.0


def test_conflict_rate_is_conflicts_over_entries() -> None:
    assert failover_kpis([], [], [], [], 3, 200).conflict_rate == 0.015
    assert failover_kpis([], [], [], [], 3, 0).conflict_rate is None


def test_sync_restoration_is_the_last_arrival_of_the_window_after_its_end() -> None:
    window = Window(10 * MIN, 20 * MIN, "w")
    arrivals = [
        Arrival("a", 11 * MIN, 20 * MIN + 5_000),
        Arrival("b", 19 * MIN, 20 * MIN + 42_000),
        Arrival("b", 25 * MIN, 26 * MIN),  # scanned after the window: not its record
    ]
    assert failover_kpis([], [window], [], arrivals, 0, 0).sync_restoration_s == 42.0


def test_records_held_before_the_end_restore_in_zero() -> None:
    window = Window(10 * MIN, 20 * MIN, "w")
    arrivals = [Arrival("a", 11 * MIN, 11 * MIN + 200)]
    assert failover_kpis([], [window], [], arrivals, 0, 0).sync_restoration_s == 0.0


def test_per_gate_splits_everything_by_gate() -> None:
    window = Window(10 * MIN, 20 * MIN, "w")
    scans = scans_every("a", 0, 20 * MIN, 6_000) + scans_every("b", 0, 10 * MIN, 6_000)
    switches = [ModeSwitch(10 * MIN + 1_000, "a", "offline"), ModeSwitch(10 * MIN + 3_000, "b", "offline")]
    per_gate = kpis_per_gate(scans, [window], switches, [], {"b": 1}, {"a": 100, "b": 50})
    assert set(per_gate) == {"a", "b"}
    assert per_gate["a"] == Kpis(1.0, 0.0, 0.0, None)
    assert per_gate["b"] == Kpis(3.0, 100.0, 0.02, None)


def test_switches_come_from_a_change_of_mode_between_scans() -> None:
    scans = [
        ScanPoint(1, "a", "allow", "online"),
        ScanPoint(2, "b", "allow", "offline"),
        ScanPoint(3, "a", "deny", "offline"),
        ScanPoint(4, "a", "allow", "offline"),
        ScanPoint(5, "a", "allow", "online"),
    ]
    assert switches_from_scans(scans) == [ModeSwitch(3, "a", "offline"), ModeSwitch(5, "a", "online")]


# ------------------------------------------------------------------ invariants

times = st.integers(min_value=0, max_value=60 * MIN)
gates = st.sampled_from(["a", "b", "c"])
modes = st.sampled_from(["online", "offline"])
scan_points = st.lists(
    st.builds(ScanPoint, times, gates, st.sampled_from(["allow", "deny"]), modes), max_size=60
)
switch_lists = st.lists(st.builds(ModeSwitch, times, gates, modes), max_size=20)
arrival_lists = st.lists(
    st.builds(lambda g, t, d: Arrival(g, t, t + d), gates, times, st.integers(0, 10 * MIN)), max_size=30
)


@st.composite
def windows(draw: st.DrawFn) -> list[Window]:
    out = []
    for n in range(draw(st.integers(0, 3))):
        start = draw(times)
        out.append(
            Window(
                start, start + draw(st.integers(1, 20 * MIN)), f"w{n}", draw(st.sampled_from([(), ("a",)]))
            )
        )
    return out


@given(scan_points, windows(), switch_lists, arrival_lists, st.integers(0, 50), st.integers(0, 500))
def test_kpis_stay_in_their_ranges(
    scans: list[ScanPoint],
    wins: list[Window],
    switches: list[ModeSwitch],
    arrivals: list[Arrival],
    conflicts: int,
    entries: int,
) -> None:
    kpis = failover_kpis(scans, wins, switches, arrivals, conflicts, entries)
    if kpis.mode_switch_s is not None:
        assert 0 <= kpis.mode_switch_s <= max(w.end_ms - w.start_ms for w in wins) / 1000
    if kpis.throughput_drop_pct is not None:
        assert kpis.throughput_drop_pct <= 100
    if kpis.sync_restoration_s is not None:
        assert kpis.sync_restoration_s >= 0
    assert (kpis.conflict_rate is None) == (entries == 0)


@given(scan_points, windows(), switch_lists, arrival_lists)
def test_kpis_do_not_depend_on_input_order(
    scans: list[ScanPoint], wins: list[Window], switches: list[ModeSwitch], arrivals: list[Arrival]
) -> None:
    forward = failover_kpis(scans, wins, switches, arrivals, 1, 10)
    backward = failover_kpis(scans[::-1], wins[::-1], switches[::-1], arrivals[::-1], 1, 10)
    assert forward == backward


@given(scan_points, windows(), switch_lists, arrival_lists)
def test_without_windows_only_the_conflict_rate_is_measured(
    scans: list[ScanPoint], wins: list[Window], switches: list[ModeSwitch], arrivals: list[Arrival]
) -> None:
    assert failover_kpis(scans, [], switches, arrivals, 2, 8) == Kpis(None, None, 0.25, None)


@given(scan_points, windows(), arrival_lists)
def test_restoration_is_at_most_the_slowest_arrival_after_any_window(
    scans: list[ScanPoint], wins: list[Window], arrivals: list[Arrival]
) -> None:
    kpis = failover_kpis(scans, wins, [], arrivals, 0, 0)
    if kpis.sync_restoration_s is not None:
        bound = max(max(0, a.received_ms - w.end_ms) for a in arrivals for w in wins) / 1000
        assert kpis.sync_restoration_s <= bound


@given(scan_points, switch_lists, arrival_lists)
def test_a_gate_alone_per_gate_is_the_venue(
    scans: list[ScanPoint], switches: list[ModeSwitch], arrivals: list[Arrival]
) -> None:
    only_a = [s for s in scans if s.gate == "a"]
    sw_a = [s for s in switches if s.gate == "a"]
    ar_a = [a for a in arrivals if a.gate == "a"]
    window = Window(10 * MIN, 30 * MIN, "w")
    venue = failover_kpis(only_a, [window], sw_a, ar_a, 1, 4)
    per_gate = kpis_per_gate(only_a, [window], sw_a, ar_a, {"a": 1}, {"a": 4})
    assert per_gate.get("a", venue) == venue


@given(scan_points)
def test_switches_alternate_modes_per_gate(scans: list[ScanPoint]) -> None:
    switches = switches_from_scans(scans)
    for gate in {s.gate for s in switches}:
        mine = [s.to_mode for s in switches if s.gate == gate]
        assert all(a != b for a, b in itertools.pairwise(mine))
