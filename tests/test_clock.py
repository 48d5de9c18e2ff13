"""The gate's clock: never earlier than a floor it has earned (kept in the ledger's file) and carried on
by the monotonic clock, its offset from the central's signed time and Date headers, decisions with the
central's time when the system clock is off, and warnings in words."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gate_daemon.gate.clock import DRIFT, ESTIMATE_AGE, GateClock
from gate_daemon.store.ledger import Ledger
from tests.gate_fixtures import Clock, query

T = 1_795_000_000.0  # some moment in 2026
EXPIRES = T + 86400  # the active manifest's expiry in these tests


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    opened = await Ledger.open(tmp_path / "ledger.sqlite", "north-1")
    try:
        yield opened
    finally:
        await opened.close()


def flag(tmp_path: Path, *, synced: bool | None) -> Path:
    """A systemd-timesyncd flag file: present (synced), absent in its folder (not), or no folder."""
    folder = tmp_path / "timesync"
    if synced is None:
        return folder / "synchronized"
    folder.mkdir(exist_ok=True)
    path = folder / "synchronized"
    if synced:
        path.touch()
    return path


def clock_at(tmp_path: Path, now: float, floor: float = 0.0, **kwargs: object) -> tuple[GateClock, Clock]:
    """A clock whose system clock reads ``now``; its monotonic clock stands still unless given."""
    system = Clock(now)
    if "synced_flag" not in kwargs:
        kwargs["synced_flag"] = flag(tmp_path, synced=True)
    kwargs.setdefault("ceiling", lambda: EXPIRES)  # an active manifest expiring a day after T
    kwargs.setdefault("monotonic", Clock(0.0))
    return GateClock(floor, system=system, **kwargs), system  # type: ignore[arg-type]


def running(tmp_path: Path, now: float, **kwargs: object) -> tuple[GateClock, Clock, Clock]:
    """A clock whose system clock reads ``now``, with the monotonic clock the test moves on."""
    monotonic = Clock(500.0)
    clock, system = clock_at(tmp_path, now, monotonic=monotonic, **kwargs)
    return clock, system, monotonic


# ------------------------------------------------------------------ the floor


def test_now_is_never_earlier_than_the_floor(tmp_path: Path) -> None:
    clock, system = clock_at(tmp_path, 1000.0)  # a Pi that booted without network: near 1970
    assert clock.now() == 1000.0
    clock.raise_floor(T, "manifest")
    assert clock.now() == T
    system.now = T + 50  # the system clock catches up and passes it
    assert clock.now() == T + 50


def test_the_floor_only_rises(tmp_path: Path) -> None:
    clock, _ = clock_at(tmp_path, T)
    clock.raise_floor(T - 100, "manifest")
    assert (clock.floor, clock.floor_source) == (T - 100, "manifest")
    clock.raise_floor(T - 200, "server")
    clock.raise_floor(T - 100, "server")
    assert (clock.floor, clock.floor_source) == (T - 100, "manifest")
    clock.raise_floor(T + 10, "server")
    assert (clock.floor, clock.floor_source) == (T + 10, "server")


def test_the_decision_time_runs_on_from_the_floor(tmp_path: Path) -> None:
    """A system clock behind the floor must not freeze the gate at the floor: time passes from it."""
    clock, system, monotonic = running(tmp_path, 1000.0)  # a Pi that booted without network: near 1970
    clock.raise_floor(T, "manifest")
    assert clock.now() == T
    monotonic.now += 2.0
    assert clock.now() == T + 2.0  # not T for ever: sessions open, windows end
    monotonic.now += 58.0
    assert clock.now() == T + 60.0 and clock.earliest() == T + 60.0
    system.now = T + 3600  # the system clock is set, and is later: it is decided with
    assert clock.now() == T + 3600


def test_a_floor_runs_from_when_it_was_learned(tmp_path: Path) -> None:
    clock, _, monotonic = running(tmp_path, 1000.0)
    clock.raise_floor(T, "history", at=monotonic.now - 10)  # known ten seconds ago
    assert clock.now() == T + 10
    clock.raise_floor(T + 5, "manifest")  # learned now, but earlier than the running floor
    assert (clock.now(), clock.floor_source) == (T + 10, "history")
    clock.raise_floor(T + 11, "server")
    assert (clock.now(), clock.floor_source) == (T + 11, "server")


async def test_saving_keeps_the_running_floor(ledger: Ledger, tmp_path: Path) -> None:
    monotonic = Clock(100.0)
    clock = await GateClock.load(ledger, system=Clock(1000.0), monotonic=monotonic)
    clock.raise_floor(T, "manifest")
    monotonic.now += 30.0
    await clock.save(ledger)
    assert query(ledger.path, "SELECT value FROM meta WHERE key = 'time_floor'") == [(repr(T + 30.0),)]
    again = await GateClock.load(ledger, system=Clock(1000.0), monotonic=Clock(0.0))
    assert (again.now(), again.floor_source) == (T + 30.0, "ledger")


async def test_the_floor_is_kept_in_the_ledgers_file(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = await Ledger.open(path, "north-1")
    try:
        clock = await GateClock.load(ledger, system=Clock(1000.0), monotonic=Clock(0.0))
        assert (clock.floor, clock.floor_source) == (0.0, None)
        clock.raise_floor(T + 0.25, "manifest")
        await clock.save(ledger)
    finally:
        await ledger.close()
    assert query(path, "SELECT value FROM meta WHERE key = 'time_floor'") == [(repr(T + 0.25),)]
    ledger = await Ledger.open(path, "north-1")
    try:
        again = await GateClock.load(ledger, system=Clock(1000.0), monotonic=Clock(0.0))
    finally:
        await ledger.close()
    assert (again.floor, again.floor_source) == (T + 0.25, "ledger")
    assert again.now() == T + 0.25  # after the reboot that matters


async def test_save_writes_only_when_the_floor_rose(ledger: Ledger) -> None:
    clock = await GateClock.load(ledger, system=Clock(T), monotonic=Clock(0.0))  # no time passes
    await clock.save(ledger)  # nothing earned: nothing written
    assert query(ledger.path, "SELECT COUNT(*) FROM meta WHERE key = 'time_floor'") == [(0,)]
    clock.raise_floor(T, "server")
    await clock.save(ledger)
    # Someone else's value in the file: a save with no rise since must leave it alone.
    with sqlite3.connect(ledger.path) as conn:
        conn.execute("UPDATE meta SET value = 'sentinel' WHERE key = 'time_floor'")
    conn.close()
    clock.raise_floor(T - 5, "server")  # not a rise
    await clock.save(ledger)
    assert query(ledger.path, "SELECT value FROM meta WHERE key = 'time_floor'") == [("sentinel",)]
    clock.raise_floor(T + 5, "server")
    await clock.save(ledger)
    assert query(ledger.path, "SELECT value FROM meta WHERE key = 'time_floor'") == [(repr(T + 5),)]


async def test_a_loaded_floor_is_not_saved_again(ledger: Ledger) -> None:
    clock = await GateClock.load(ledger, monotonic=Clock(0.0))  # no time passes: the floor does not move
    clock.raise_floor(T, "manifest")
    await clock.save(ledger)
    with sqlite3.connect(ledger.path) as conn:
        conn.execute("UPDATE meta SET value = 'sentinel' WHERE key = 'time_floor'")
    conn.close()
    # Not loaded from 'sentinel' here: a fresh clock with the floor it would have loaded.
    fresh = GateClock(T, monotonic=Clock(0.0))
    await fresh.save(ledger)
    assert query(ledger.path, "SELECT value FROM meta WHERE key = 'time_floor'") == [("sentinel",)]


async def test_a_floor_that_is_not_a_number_is_ignored_with_an_error(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    async with ledger.transaction() as tx:
        await tx.set_meta([("time_floor", "yesterday")])
    with caplog.at_level(logging.ERROR, logger="gate_daemon.gate.clock"):
        clock = await GateClock.load(ledger, system=Clock(T))
    assert clock.floor == 0.0 and clock.now() == T
    assert "'yesterday' is not a number" in caplog.text


@pytest.mark.parametrize("kept", ["nan", "inf", "-5.0"])
async def test_a_floor_that_is_not_a_time_is_ignored_with_an_error(
    ledger: Ledger, caplog: pytest.LogCaptureFixture, kept: str
) -> None:
    async with ledger.transaction() as tx:
        await tx.set_meta([("time_floor", kept)])
    with caplog.at_level(logging.ERROR, logger="gate_daemon.gate.clock"):
        clock = await GateClock.load(ledger, system=Clock(T), monotonic=Clock(0.0))
    assert clock.floor == 0.0 and clock.now() == T
    assert f"{kept!r} is not a time" in caplog.text


# ------------------------------------------------------------------ the central's Date


def test_a_servers_date_raises_the_floor_no_further_than_the_manifests_expiry(tmp_path: Path) -> None:
    # Date is not signed: a central (or anyone between) saying it is next year can push
    # the floor only to the signed manifest's expiry.
    clock, _ = clock_at(tmp_path, T)
    clock.saw_server(T + 365 * 86400, sent=T, received=T + 0.1)
    assert clock.floor == EXPIRES and clock.floor_source == "server"


def test_without_a_manifest_a_servers_date_raises_no_floor(tmp_path: Path) -> None:
    clock, _ = clock_at(tmp_path, T - 3600, ceiling=lambda: None)
    clock.saw_server(T, sent=T - 3600, received=T - 3600 + 0.1)
    assert clock.floor == 0.0 and clock.now() == T - 3600
    assert clock.offset == pytest.approx(-3600 + 0.05 - 0.5)  # still measured and shown


def test_a_system_clock_ahead_of_the_central_has_a_positive_offset(tmp_path: Path) -> None:
    clock, _ = clock_at(tmp_path, T + 30)
    clock.saw_server(T, sent=T + 30.0, received=T + 30.2)
    assert clock.offset == pytest.approx(30.1 - 0.5)
    assert clock.rtt == pytest.approx(0.2)
    assert clock.floor == T and clock.floor_source == "server"


def test_a_system_clock_behind_the_central_has_a_negative_offset_and_the_floor_rises(tmp_path: Path) -> None:
    clock, _ = clock_at(tmp_path, T - 3600)
    clock.saw_server(T, sent=T - 3600, received=T - 3600 + 0.1)
    assert clock.offset == pytest.approx(-3600 + 0.05 - 0.5)
    assert clock.floor == T and clock.now() == T  # decided with the central's time, not the Pi's


def test_the_quicker_exchange_gives_the_better_estimate(tmp_path: Path) -> None:
    clock, _ = clock_at(tmp_path, T)
    clock.saw_server(T, sent=T, received=T + 0.1)
    best = clock.offset
    clock.saw_server(T + 10, sent=T + 8, received=T + 12)  # a four-second round trip: not believed
    assert clock.offset == best and clock.rtt == pytest.approx(0.1)
    clock.saw_server(T + 20, sent=T + 20.4, received=T + 20.55)  # as quick as the best, within twice
    assert clock.offset == pytest.approx(20.475 - 20.5, abs=1e-6)


def test_an_old_estimate_gives_way_even_while_answers_keep_coming(tmp_path: Path) -> None:
    """The system clock is stepped by an hour (NTP, a tech): a one-lucky-round-trip estimate must not
    hide that forever just because every later answer came a little slower."""
    clock, system = clock_at(tmp_path, T)
    clock.saw_server(T, sent=T + 0.5, received=T + 0.501)  # offset about 0: a very quick exchange
    assert abs(clock.offset or 0) < 0.1
    step = 3600.0
    for n in range(1, 11):  # every 15 s (the heartbeat), each a little slower than twice the best
        at = T + 15 * n
        system.now = at + step
        clock.saw_server(at, sent=at + step, received=at + step + 0.01)
    assert clock.offset == pytest.approx(step + 0.005 - 0.5)
    assert clock.warning() == "the system clock is 3600 s ahead of the central server's"


def test_a_lucky_estimate_ages_while_the_clock_drifts(tmp_path: Path) -> None:
    """One very quick exchange, then steady answers a little slower: the estimate must follow the drift."""
    clock, system = clock_at(tmp_path, T)
    clock.saw_server(T, sent=T + 0.5, received=T + 0.5005)
    drift = 0.002  # seconds gained per second: a Pi with no NTP, running fast
    for n in range(1, 481):  # two hours of heartbeats, every 15 s
        at = T + 15 * n
        system.now = at + 15 * n * drift + 0.5
        clock.saw_server(at, sent=system.now, received=system.now + 0.01)
    assert clock.offset == pytest.approx(7200 * drift, abs=0.1)
    assert clock.warning() == "the system clock is 14 s ahead of the central server's"


# ------------------------------------------------------------------ the central's signed time

DAY = 86400.0


def test_a_clock_a_day_ahead_decides_with_the_centrals_signed_time(tmp_path: Path) -> None:
    clock, system, monotonic = running(tmp_path, T + DAY)
    assert clock.now() == T + DAY  # nothing known yet: the system clock, a day ahead
    clock.saw_signed_time(T, sent=T + DAY, received=T + DAY + 0.2, rtt=0.2)
    # The central read its clock mid-exchange: its time now is T plus half the round trip.
    assert clock.now() == pytest.approx(T + 0.1)
    monotonic.now += 60.0
    system.now += 60.0
    assert clock.now() == pytest.approx(T + 60.1)  # carried on by the monotonic clock
    assert clock.offset == pytest.approx(DAY + 0.1) and clock.authenticated
    assert clock.warning() == (
        "the system clock is 86400 s ahead of the central's signed time; "
        "deciding with the central's time instead"
    )
    status = clock.status()
    assert (status["source"], status["authenticated"], status["known"]) == ("central", True, True)
    assert status["central_age_s"] == pytest.approx(60.1)


def test_a_clock_behind_decides_with_the_centrals_signed_time_and_its_floor_rises(tmp_path: Path) -> None:
    clock, _, monotonic = running(tmp_path, 1000.0, ceiling=lambda: None)  # no manifest: no cap needed
    clock.saw_signed_time(T, sent=1000.0, received=1000.1, rtt=0.1)
    assert (clock.floor, clock.floor_source) == (T, "central")  # signed by the manifest key
    assert clock.now() == pytest.approx(T + 0.05)
    monotonic.now += 10
    assert clock.now() == pytest.approx(T + 10.05)


def test_a_signed_time_within_the_threshold_leaves_the_system_clock(tmp_path: Path) -> None:
    clock, system, _ = running(tmp_path, T + 2)
    clock.saw_signed_time(T, sent=T + 2, received=T + 2.1, rtt=0.1)
    assert clock.now() == T + 2 and clock.source() == "system"
    assert clock.warning() is None and clock.offset == pytest.approx(2.05)
    system.now = T + 3 * DAY  # stepped later, by hand or by a bad NTP server: the central's time holds
    assert clock.now() == pytest.approx(T + 0.05) and clock.source() == "central"


def test_a_day_off_stays_corrected_long_after_the_central_was_heard(tmp_path: Path) -> None:
    clock, system, monotonic = running(tmp_path, T + DAY)
    clock.saw_signed_time(T, sent=T + DAY, received=T + DAY, rtt=0.0)
    monotonic.now += 3 * DAY  # offline for days: the crystal drifts seconds, the clock is a day off
    system.now += 3 * DAY
    assert clock.now() == pytest.approx(T + 3 * DAY) and clock.source() == "central"
    # It no longer counts as knowing the time, for status, once TRUSTED_FOR has passed.
    assert clock.status()["central_age_s"] is None


def test_a_small_correction_gives_way_once_drift_could_explain_it(tmp_path: Path) -> None:
    clock, system, monotonic = running(tmp_path, T + 60)
    clock.saw_signed_time(T, sent=T + 60, received=T + 60, rtt=0.0)
    assert clock.source() == "central"
    gone = (60 - clock.warn_offset) / DRIFT + 3600  # by then 100 ppm of drift is more than 60 s
    monotonic.now += gone
    system.now += gone
    assert clock.now() == T + 60 + gone and clock.source() == "system"
    assert clock.warning() == "the system clock is 60 s ahead of the central server's"


def test_a_signed_time_from_a_held_back_exchange_steers_nothing(tmp_path: Path) -> None:
    clock, system, monotonic = running(tmp_path, T)  # a right system clock
    # The request was held 100 s on the way: the central read T + 100, and the answer came at
    # once, so from the exchange's midpoint its time would look 50 s ahead.
    monotonic.now += 100
    system.now += 100
    clock.saw_signed_time(T + 100, sent=T, received=T + 100, rtt=100.0)
    assert clock.reference is None and clock.now() == T + 100 and clock.source() == "system"
    clock.saw_signed_time(T + 100.05, sent=T + 100, received=T + 100.1, rtt=0.1)  # a quick one
    assert clock.reference is not None and clock.corrected() is None  # within the threshold
    assert clock.now() == pytest.approx(T + 100.05)  # the floor it raised, no more


def test_a_quicker_signed_exchange_replaces_a_slower_one(tmp_path: Path) -> None:
    clock, system, monotonic = running(tmp_path, T + DAY)
    clock.saw_signed_time(T, sent=T + DAY, received=T + DAY + 1.0, rtt=1.0)
    monotonic.now += 10
    system.now += 10
    clock.saw_signed_time(T + 12, sent=T + DAY + 10, received=T + DAY + 13, rtt=3.0)  # slow: not taken
    assert clock.rtt == 1.0 and clock.now() == pytest.approx(T + 10.5)
    clock.saw_signed_time(T + 10.2, sent=T + DAY + 10, received=T + DAY + 10.2, rtt=0.2)
    assert clock.rtt == 0.2 and clock.now() == pytest.approx(T + 10.3)
    monotonic.now += ESTIMATE_AGE + 1  # an old estimate gives way even to a slower answer
    clock.saw_signed_time(T + 80, sent=T + DAY + 71, received=T + DAY + 73, rtt=2.0)
    assert clock.rtt == 2.0 and clock.now() == pytest.approx(T + 81)


def test_a_date_header_does_not_replace_the_signed_estimate(tmp_path: Path) -> None:
    clock, _, _ = running(tmp_path, T + DAY)
    clock.saw_signed_time(T, sent=T + DAY, received=T + DAY, rtt=0.0)
    clock.saw_server(T + 2 * DAY, sent=T + DAY, received=T + DAY)  # a forged Date on the path
    assert clock.offset == pytest.approx(DAY) and clock.authenticated
    assert clock.now() == pytest.approx(T)


def test_a_floor_ahead_of_the_centrals_signed_time_is_taken_down(tmp_path: Path) -> None:
    """A floor from a clock that was wrong earlier (this gate's own records) must not outvote the central."""
    clock, _, _ = running(tmp_path, T + DAY)
    clock.raise_floor(T + DAY, "history")
    clock.saw_signed_time(T, sent=T + DAY, received=T + DAY + 0.2, rtt=0.2)
    assert (clock.floor, clock.floor_source) == (T, "central")
    assert clock.now() == pytest.approx(T + 0.1)


def test_a_floor_within_the_round_trip_of_the_signed_time_stays(tmp_path: Path) -> None:
    clock, _, _ = running(tmp_path, T)
    clock.raise_floor(T + 3, "manifest")  # within the threshold: nothing shows it wrong
    clock.saw_signed_time(T, sent=T, received=T + 0.2, rtt=0.2)
    assert (clock.floor, clock.floor_source) == (T + 3, "manifest")


def test_answers_without_a_good_signed_time_are_counted_and_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock, _, _ = running(tmp_path, T)
    with caplog.at_level(logging.WARNING, logger="gate_daemon.gate.clock"):
        for _ in range(3):
            clock.unsigned_answer("its answers carry no Central-Time header")
        clock.unsigned_answer("its Central-Time is not signed by a trusted manifest key")
    assert clock.status()["unsigned_answers"] == 4
    assert [r.getMessage() for r in caplog.records] == [
        "clock: the central's time is not taken from its answers: its answers carry no Central-Time header",
        "clock: the central's time is not taken from its answers: "
        "its Central-Time is not signed by a trusted manifest key",
    ]


def test_a_gate_that_cannot_know_the_time_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock, _, _ = running(tmp_path, 1000.0, synced_flag=flag(tmp_path, synced=False))
    assert clock.known() is False and clock.status()["known"] is False
    with caplog.at_level(logging.WARNING, logger="gate_daemon.gate.clock"):
        clock.check()
        clock.check()
    (said,) = [r.getMessage() for r in caplog.records]
    assert said == (
        "clock: the system clock is not synchronised (systemd-timesyncd says so); this gate cannot know the "
        "time (no synchronised clock, no signed time from the central): it decides with the system clock, "
        "with no floor"
    )
    clock.saw_signed_time(T, sent=1000.0, received=1000.0, rtt=0.0)
    assert clock.known() is True and clock.source() == "central"


def test_without_timesyncd_or_the_central_the_gate_cannot_say(tmp_path: Path) -> None:
    clock, _, _ = running(tmp_path, T, synced_flag=flag(tmp_path, synced=None))
    assert clock.known() is None and clock.warning() is None


# ------------------------------------------------------------------ warnings


def test_no_warning_for_a_good_clock(tmp_path: Path) -> None:
    clock, _ = clock_at(tmp_path, T)
    clock.saw_server(T, sent=T + 0.4, received=T + 0.6)
    assert clock.warning() is None
    assert clock.synchronised() is True


def test_a_system_clock_behind_the_floor_is_named(tmp_path: Path) -> None:
    clock, _ = clock_at(tmp_path, T - 120)
    clock.raise_floor(T, "manifest")
    assert clock.warning() == (
        "the system clock is 120 s behind the latest time this gate knows has passed (manifest); "
        "deciding with that time instead"
    )


def test_a_clock_just_below_the_floor_is_within_the_threshold(tmp_path: Path) -> None:
    clock, _ = clock_at(tmp_path, T - 4, warn_offset=5.0)
    clock.raise_floor(T, "server")
    assert clock.warning() is None


def test_an_offset_over_the_threshold_is_named(tmp_path: Path) -> None:
    clock, _ = clock_at(tmp_path, T + 40, warn_offset=10.0)
    clock.saw_server(T, sent=T + 40.5, received=T + 40.5)
    assert clock.warning() == "the system clock is 40 s ahead of the central server's"


def test_a_clock_behind_the_central_is_named_as_behind_the_floor(tmp_path: Path) -> None:
    # The central's Date raised the floor: the warning that matters is that the floor is decided with.
    clock, _ = clock_at(tmp_path, T - 40, warn_offset=10.0)
    clock.saw_server(T, sent=T - 39.5, received=T - 39.5)
    assert clock.offset == pytest.approx(-40.0)
    warning = clock.warning()
    assert warning is not None and warning.startswith("the system clock is 40 s behind the latest time")
    assert "(server)" in warning


def test_an_offset_within_the_threshold_is_fine(tmp_path: Path) -> None:
    clock, _ = clock_at(tmp_path, T + 8, warn_offset=10.0)
    clock.saw_server(T, sent=T + 8.5, received=T + 8.5)
    assert clock.offset == pytest.approx(8.0) and clock.warning() is None


def test_an_unsynchronised_clock_is_named(tmp_path: Path) -> None:
    clock, _ = clock_at(tmp_path, T, synced_flag=flag(tmp_path, synced=False))
    assert clock.synchronised() is False
    assert clock.warning() == "the system clock is not synchronised (systemd-timesyncd says so)"
    flag(tmp_path, synced=True)  # timesyncd got there
    assert clock.synchronised() is True and clock.warning() is None


def test_without_timesyncd_nothing_is_said(tmp_path: Path) -> None:
    clock, _ = clock_at(tmp_path, T, synced_flag=flag(tmp_path, synced=None))
    assert clock.synchronised() is None and clock.warning() is None


def test_a_clock_problem_is_logged_once_and_its_end_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock, system = clock_at(tmp_path, T - 600)
    with caplog.at_level(logging.INFO, logger="gate_daemon.gate.clock"):
        for n in range(5):
            clock.saw_server(T + n, sent=T - 600 + n, received=T - 600 + n)
        system.now = T + 10
        clock.saw_server(T + 10, sent=T + 10.5, received=T + 10.5)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "behind" in warnings[0].getMessage()
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == ["clock: fine again"]


def test_status_fields(tmp_path: Path) -> None:
    clock, _ = clock_at(tmp_path, T - 100)
    assert clock.status() == {
        "now": T - 100,
        "floor": None,
        "floor_source": None,
        "offset_s": None,
        "rtt_s": None,
        "synchronised": True,
        "warning": None,
        "source": "system",
        "authenticated": False,
        "central_age_s": None,
        "known": True,
        "unsigned_answers": 0,
    }
    clock.saw_server(T, sent=T - 100, received=T - 99.8)
    status = clock.status()
    assert status["now"] == T and status["floor"] == T and status["floor_source"] == "server"
    assert status["offset_s"] == pytest.approx(-100.4) and status["rtt_s"] == pytest.approx(0.2)
    assert "behind" in status["warning"]
    assert (status["source"], status["authenticated"], status["central_age_s"]) == ("floor", False, None)
