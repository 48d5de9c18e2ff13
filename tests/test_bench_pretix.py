"""``gatectl bench pretix``: both answers timed for the same tickets of a real pretix."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from gate_daemon.bench import pretix as bench_pretix
from gate_daemon.cli.gatectl import parser
from tests.pretix_server import PretixServer

pytestmark = pytest.mark.pretix


def test_the_bench_times_pretix_redeem_and_the_gate_scan_for_each_ticket(
    pretix: PretixServer, tmp_path: Path
) -> None:
    figures = bench_pretix.measure_against(pretix, tmp_path, 5)
    assert figures["pretix_redeem"]["count"] == figures["gate_scan"]["count"] == 5
    assert figures["gate_scan"]["p50_ms"] > 0 and figures["pretix_redeem"]["p50_ms"] > 0
    assert figures["ratio_p50"] == round(
        figures["pretix_redeem"]["p50_ms"] / figures["gate_scan"]["p50_ms"], 1
    )


def test_gatectl_offers_the_pretix_suite() -> None:
    args = parser().parse_args(["bench", "pretix", "--rounds", "3", "--json"])
    assert isinstance(args, argparse.Namespace) and args.suite == "pretix" and args.rounds == 3


@pytest.mark.slow
def test_the_bench_measures_the_bridge_both_ways_and_a_backlog(pretix: PretixServer, tmp_path: Path) -> None:
    figures = bench_pretix.measure_bridge(pretix, tmp_path / "venue", 5)
    assert figures["cancel_lag_s"] > 0 and figures["checkin_lag_s"] > 0
    assert figures["backlog"]["count"] == 5 and figures["backlog"]["per_s"] > 0
