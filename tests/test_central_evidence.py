"""The central keeps the gates' evidence rows (``POST /v1/evidence``) and every heartbeat (``beats``).

Over real HTTP on 127.0.0.1 with signed requests, against a real SQLite file, read back
the way the reports read it.
"""

from __future__ import annotations

import sqlite3
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

from gate_daemon.core.ticket_history import history
from gate_daemon.store.central.reports import read_incident, read_ticket
from tests.central_fixtures import make_central_world, serving

T0 = 1_800_000_000.0


def row(n: int, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "uuid": str(uuidlib.UUID(int=n)), "hlc": n, "wall": T0 + n, "device": "camera", "operator": None,
        "ticket_id": "P-001", "kind": "entry", "outcome": "deny", "reason": "revoked",
        "resolution": "refused", "mode": "offline", "manifest_version": 1,
    }  # fmt: skip
    base.update(changes)
    return base


async def test_evidence_is_kept_once_and_under_the_gate_that_signed_it(tmp_path: Path) -> None:
    world = make_central_world(tmp_path / "central")
    async with serving(world) as running:
        north = running.gates["north-1"]
        batch = {"scans": [row(1), row(2, outcome="allow", reason="ok", resolution="admitted")]}
        first = await north.request("POST", "/v1/evidence", batch)
        assert first.status_code == 200, first.text
        assert first.json() == {"stored": 2, "duplicate": 0}
        again = await north.request(
            "POST", "/v1/evidence", {"scans": [row(2), row(3)]}
        )  # a resend, and one new
        assert again.json() == {"stored": 1, "duplicate": 1}
        # Another gate's row under north-1's uuid is its own row, under the gate that signed it.
        south = running.gates["south-1"]
        assert (await south.request("POST", "/v1/evidence", {"scans": [row(1)]})).json() == {
            "stored": 1,
            "duplicate": 0,
        }

        for body, named in (
            ({"scans": []}, "scans:"),
            ({"scans": [row(4, payload="P1-1")]}, "scans[0].'payload':"),
            ({"scans": [row(5), row(6, mode="peer")]}, "scans[1].mode:"),
            ({"scans": [row(7, device="a\x1bb")]}, "scans[0].device:"),
            ({"rows": []}, "rows:"),
        ):
            refused = await north.request("POST", "/v1/evidence", body)
            assert (refused.status_code, refused.json()["error"]) == (400, "bad_request"), body
            assert refused.json()["detail"].startswith(named), refused.json()
        too_many = await north.request("POST", "/v1/evidence", {"scans": [row(n) for n in range(10, 511)]})
        assert (too_many.status_code, too_many.json()["error"]) == (413, "too_large")

    facts = read_ticket(world.config.database, "P-001")
    assert [(s.uuid, s.gate, s.outcome) for s in facts.scans] == [
        (str(uuidlib.UUID(int=1)), "north-1", "deny"),
        (str(uuidlib.UUID(int=1)), "south-1", "deny"),
        (str(uuidlib.UUID(int=2)), "north-1", "allow"),
        (str(uuidlib.UUID(int=3)), "north-1", "deny"),
    ]


async def test_a_gate_that_uploads_another_gates_uuids_first_hides_nothing(tmp_path: Path) -> None:
    # A stolen south-1 knows north-1's scan uuids (they travel in shared records) and uploads
    # rows under them before north-1 can: north-1's own rows are still stored, and both
    # rows show in the ticket's history, each under the gate that uploaded it.
    world = make_central_world(tmp_path / "central")
    async with serving(world) as running:
        north, south = running.gates["north-1"], running.gates["south-1"]
        forged = {"scans": [row(1, outcome="deny", reason="revoked"), row(2)]}
        assert (await south.request("POST", "/v1/evidence", forged)).json() == {"stored": 2, "duplicate": 0}
        honest = {"scans": [row(1, outcome="allow", reason="ok", resolution="admitted"), row(2)]}
        answer = await north.request("POST", "/v1/evidence", honest)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"stored": 2, "duplicate": 0}
        assert (await north.request("POST", "/v1/evidence", honest)).json() == {"stored": 0, "duplicate": 2}

    facts = read_ticket(world.config.database, "P-001")
    assert [(s.uuid, s.gate, s.outcome) for s in facts.scans] == [
        (str(uuidlib.UUID(int=1)), "north-1", "allow"),
        (str(uuidlib.UUID(int=1)), "south-1", "deny"),
        (str(uuidlib.UUID(int=2)), "north-1", "deny"),
        (str(uuidlib.UUID(int=2)), "south-1", "deny"),
    ]
    rows = history(facts.scans, facts.records, facts.conflicts)
    assert [(r.uuid, r.gate) for r in rows] == [
        (str(uuidlib.UUID(int=1)), "north-1"),
        (str(uuidlib.UUID(int=1)), "south-1"),
        (str(uuidlib.UUID(int=2)), "north-1"),
        (str(uuidlib.UUID(int=2)), "south-1"),
    ]


async def test_every_heartbeat_is_kept_with_the_route(tmp_path: Path) -> None:
    world = make_central_world(tmp_path / "central")
    async with serving(world) as running:
        north = running.gates["north-1"]
        for route, scans in (("online", 3), ("offline", 5), ("sideways", 6)):
            beat = {
                "sent_at": T0,
                "counters": {"scans": scans, "offline_scans": 2},
                "status": {"route": route},
            }
            assert (await north.request("POST", "/v1/heartbeat", beat)).status_code == 200
    with sqlite3.connect(world.config.database) as db:
        rows = db.execute("SELECT gate, mode, scans, offline, pending FROM beats ORDER BY at").fetchall()
    assert rows == [
        ("north-1", "online", 3, 2, None),
        ("north-1", "offline", 5, 2, None),
        ("north-1", "unknown", 6, 2, None),
    ]
    data = read_incident(
        world.config.database, time.time() - 60, time.time() + 60
    )  # beats at the central's time
    assert [b.mode for b in data.beats] == ["online", "offline", "unknown"]
    assert data.gates == ["north-1"]
