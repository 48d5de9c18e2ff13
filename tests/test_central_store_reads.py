"""The central's store read by pulls while a push is in its transaction (real SQLite file)."""

from __future__ import annotations

import asyncio
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

import pytest

from gate_daemon.core.records import Redemption
from gate_daemon.store.central.checkin_book import CentralStore


def _entry(ticket: str, seq: int, slot: int) -> Redemption:
    return Redemption(
        uuid=str(uuidlib.uuid4()),
        ticket_id=ticket,
        kind="entry",
        slot=slot,
        origin="north-1",
        epoch="e1",
        seq=seq,
        hlc=(1000 + seq) << 16,
        wall=time.time(),
        operator=None,
        mode="offline",
    )


async def test_a_pull_never_serves_a_push_that_is_rolled_back(tmp_path: Path) -> None:
    store = await CentralStore.open(tmp_path / "central.sqlite")
    try:
        # Two tickets entered twice each: the push judges both for conflicts, inside its
        # transaction. While it judges the first, a pull comes in; judging the second fails,
        # so the push is rolled back and none of its cursors was ever given.
        records = [_entry("A", 1, 1), _entry("A", 2, 2), _entry("B", 3, 1), _entry("B", 4, 2)]
        pulled: list[asyncio.Task[Any]] = []

        def entries_allowed(ticket: str) -> int:
            if ticket == "A":
                pulled.append(asyncio.ensure_future(store.pull(0, 10)))
                return 2
            raise RuntimeError("the push fails after the pull came in")

        with pytest.raises(RuntimeError):
            await store.push([(r, "sig") for r in records], entries_allowed, time.time())
        served, cursor, more = await pulled[0]
        assert (served, cursor, more) == ([], 0, False)
        assert await store.cursor() == 0
        # The next push takes the same cursors for other records: a gate that had been
        # served 1..4 above would never pull these.
        again = [_entry("C", 5, 1)]
        results, cursor = await store.push([(r, "sig") for r in again], lambda _t: 1, time.time())
        assert [r.status for r in results] == ["applied"] and cursor == 1
        served, cursor, _more = await store.pull(0, 10)
        assert [item["uuid"] for item in served] == [again[0].uuid] and cursor == 1
    finally:
        await store.aclose()
