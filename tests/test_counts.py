"""Counters bumped outside a scan: counted in the ledger, or logged when it cannot take them.

Real parts: a real ledger file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gate_daemon.gate.counts import count_softly
from gate_daemon.store.ledger import Ledger

NAME = "passage:unreleased"


async def test_a_count_lands_in_the_ledger(tmp_path: Path) -> None:
    ledger = await Ledger.open(tmp_path / "ledger.sqlite", "gate-1")
    try:
        await count_softly(ledger, NAME)
        await count_softly(ledger, NAME)
        assert (await ledger.counters())[NAME] == 2
    finally:
        await ledger.close()


async def test_a_count_the_ledger_cannot_take_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = await Ledger.open(tmp_path / "ledger.sqlite", "gate-1")
    await ledger.close()  # what a count meets while the gate shuts down
    with caplog.at_level(logging.ERROR, logger="gate_daemon.gate.counts"):
        await count_softly(ledger, NAME)
    [record] = caplog.records
    assert record.getMessage().startswith(f"cannot count {NAME} in the ledger: ")
