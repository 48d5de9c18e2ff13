"""The central's side of supervisor commands: kept when verified, handed out in heartbeats until acknowledged.

Real parts: the central's application on 127.0.0.1, its SQLite file, signed heartbeats from a
roster gate.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from gate_daemon.core.commands import EXPIRY_MS
from gate_daemon.core.keys import SecretKey
from gate_daemon.provision.keyfiles import read_secret
from tests.central_fixtures import CentralWorld, Running, make_central_world, serving


@pytest.fixture
def world(tmp_path: Path) -> CentralWorld:
    return make_central_world(tmp_path / "central", supervisors=("sam", "kim"))


async def beat(running: Running, acked: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"sent_at": time.time(), "counters": {}, "status": {}}
    if acked is not None:
        body["acked"] = acked
    answer = await running.gates["north-1"].request("POST", "/v1/heartbeat", body)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


async def test_a_command_waits_for_its_gate_until_a_heartbeat_acknowledges_it(world: CentralWorld) -> None:
    async with serving(world) as running:
        close = world.live.command("lane", "closed", supervisor="sam")
        posted = await running.http.post("/v1/commands", json=close)
        assert posted.status_code == 200 and posted.json() == {"queued": True, "command": close["command"]}
        again = await running.http.post("/v1/commands", json=close)
        assert again.status_code == 200 and again.json()["queued"] is False
        other = world.live.command("message", "hi", supervisor="kim", gate="south-1")
        assert (await running.http.post("/v1/commands", json=other)).status_code == 200
        # north-1's heartbeat brings north-1's command only, until it acknowledges it.
        assert (await beat(running))["commands"] == [close]
        assert (await beat(running))["commands"] == [close]
        assert (await beat(running, [close["command"]["nonce"]]))["commands"] == []
        listed = (await running.http.get("/v1/commands", params={"gate": "north-1"})).json()
        assert listed["event"] == world.live.event.event_id
        [item] = listed["commands"]
        assert item["command"] == close["command"] and item["acked_at"] is not None
        # A gate acknowledges only its own commands: north-1 naming south-1's changes nothing.
        await beat(running, [other["command"]["nonce"]])
        south = (await running.http.get("/v1/commands", params={"gate": "south-1"})).json()["commands"]
        assert south[0]["acked_at"] is None


@pytest.mark.parametrize(
    ("make", "status", "name"),
    [
        (
            lambda w: w.command(
                "lane", "closed", supervisor="sam", key=read_secret(w.supervisor_keys["kim"])
            ),
            403,
            "bad_signature",
        ),
        (lambda w: {"command": w.command("lane", "closed")["command"]}, 403, "bad_signature"),
        (
            lambda w: w.command("lane", "closed", supervisor="eve", key=SecretKey.generate()),
            403,
            "unknown_supervisor",
        ),
        (lambda w: w.command("lane", "closed", gate="west-9"), 403, "wrong_gate"),
        (lambda w: w.command("lane", "closed", event="other-2026"), 403, "wrong_event"),
        (
            lambda w: w.command("lane", "closed", issued_ms=int((time.time() - 2 * 86400) * 1000)),
            403,
            "expired",
        ),
        (lambda w: w.command("lane", "ajar"), 400, "bad_command"),
    ],
)
async def test_a_refused_command_is_named_and_kept_nowhere(
    world: CentralWorld, make: Any, status: int, name: str
) -> None:
    async with serving(world) as running:
        answer = await running.http.post("/v1/commands", json=make(world.live))
        assert (answer.status_code, answer.json()["error"]) == (status, name), answer.text
        assert (await beat(running))["commands"] == []
        assert (await running.http.get("/v1/commands", params={"gate": "north-1"})).json()["commands"] == []


async def test_a_nonce_taken_by_another_command_is_replayed(world: CentralWorld) -> None:
    async with serving(world) as running:
        first = world.live.command("lane", "closed")
        assert (await running.http.post("/v1/commands", json=first)).status_code == 200
        reuse = world.live.command("lane", "open", nonce=first["command"]["nonce"])
        answer = await running.http.post("/v1/commands", json=reuse)
        assert (answer.status_code, answer.json()["error"]) == (409, "replayed")
        assert (await beat(running))["commands"] == [first]


@pytest.mark.parametrize(
    ("acked", "words"),
    [
        (["ABC"], "acked: each must be"),
        ("x", "acked: must be a list"),
        (["0" * 32] * 257, "acked: must be a list"),
    ],
)
async def test_a_heartbeat_with_bad_acknowledgements_is_refused_by_field(
    world: CentralWorld, acked: Any, words: str
) -> None:
    async with serving(world) as running:
        body = {"sent_at": time.time(), "counters": {}, "status": {}, "acked": acked}
        answer = await running.gates["north-1"].request("POST", "/v1/heartbeat", body)
        assert answer.status_code == 400 and answer.json()["detail"].startswith(words), answer.text


async def test_the_command_routes_name_bad_queries_and_bodies(world: CentralWorld) -> None:
    async with serving(world) as running:
        for params in ({}, {"gate": "no spaces"}, {"gate": "north-1", "more": "1"}):
            answer = await running.http.get("/v1/commands", params=params)
            assert answer.status_code == 400 and answer.json()["error"] == "bad_request", params
        answer = await running.http.post("/v1/commands", content=b"not json")
        assert answer.status_code == 400 and answer.json()["error"] == "not_json"
        answer = await running.http.post("/v1/commands", content=b"[" * 5000)
        assert answer.status_code == 413 and answer.json()["error"] == "too_large"


async def test_a_command_issued_more_than_a_day_ago_is_no_longer_sent(world: CentralWorld) -> None:
    """A gate leaves some refusals unacknowledged (they clear up); none stays in the queue forever."""
    async with serving(world) as running:
        close = world.live.command("lane", "closed", supervisor="sam")
        assert (await running.http.post("/v1/commands", json=close)).status_code == 200
        assert (await beat(running))["commands"] == [close]
        # A day and a minute later, still unacknowledged (its gate refused it unknown_supervisor):
        # every gate would refuse it expired now.
        with contextlib.closing(sqlite3.connect(world.config.database)) as db, db:
            db.execute("UPDATE commands SET issued_ms = issued_ms - ?", (EXPIRY_MS + 60_000,))
        assert (await beat(running))["commands"] == []
