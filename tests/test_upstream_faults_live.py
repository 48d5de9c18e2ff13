"""A central that hangs, answers garbage, or is asked first (online-first): the gate keeps scanning.

Real ``gate-daemon`` processes against the real ``gate-central`` process, paused with
SIGSTOP where it must hang (the kernel still accepts connections; nothing is answered),
or against a server that checks the gate's signatures exactly as the contract says and
then answers what no central should (``tests.fake_central.FakeCentral``). No scan may
wait on any of it beyond online-first's own deadline, and every failure must be named.
Nothing here measures time: each wait polls a condition with a generous deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from gate_daemon.core.decision import Decision
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.reasons import Reason
from gate_daemon.net.upstream import MAX_REPLY, UpstreamClient, UpstreamError
from tests.central_fixtures import CentralWorld
from tests.central_process import (
    CONVERGE,
    TICKETS,
    CentralProcess,
    loop_errors,
    manifest_version,
    own_records,
    upstream_config,
    upstream_status,
    wait_drained,
)
from tests.fake_central import FakeCentral
from tests.gate_process import GateProcess, Launcher, query, wait_until
from tests.live import payload, ticket, tickets_csv
from tests.loop_thread import LoopThread

#: What each loop must say about each kind of garbage (the start of its error).
GARBAGE_ERRORS = {
    "not_json": {
        "drain": "bad_reply: the answer is not JSON",
        "pull": "bad_reply: the answer is not JSON",
        "heartbeat": "bad_reply: the answer is not JSON",
    },
    "wrong_shape": {
        "drain": "bad_reply: results[0] has no status",
        "pull": "bad_reply: a pull answer needs records",
        "heartbeat": "bad_reply: the answer is not a JSON object",
    },
    "too_large": {"drain": "too_large:", "pull": "too_large:", "heartbeat": "too_large:"},
}


def admit(gate: GateProcess, n: int) -> str:
    """Scan ticket ``n``, which must be admitted; its record's uuid."""
    decision = gate.scan(payload(n))
    assert decision["outcome"] == "allow", decision
    return str(decision["record_id"])


def modes(gate: GateProcess) -> dict[str, str]:
    """How the gate recorded each redemption: ``online`` or ``offline``, by uuid."""
    return {
        str(uuid): str(mode) for uuid, mode in query(gate.ledger_path, "SELECT uuid, mode FROM redemptions")
    }


# ------------------------------------------------------------------ a central that hangs


def test_a_central_that_stops_answering_is_a_named_timeout_and_the_gate_scans_on(
    central_world: CentralWorld, gate_central: CentralProcess, launch: Launcher, tmp_path: Path
) -> None:
    gate = launch(upstream_config(central_world, tmp_path / "north-1", gate_central.url), name="north-1")
    wait_until(lambda: manifest_version(gate) == 1, CONVERGE, "the central's manifest")
    admitted = {admit(gate, 1)}
    wait_drained(gate, gate_central, admitted)

    gate_central.pause()  # longer than timeout_ms: until every loop has named it
    admitted |= {admit(gate, n) for n in range(2, 7)}

    def named() -> bool:
        errors = loop_errors(gate)
        return all((errors[name] or "").startswith("timeout:") for name in ("drain", "pull", "heartbeat"))

    wait_until(named, CONVERGE, "the loops to name the hang")
    admitted |= {admit(gate, n) for n in range(7, 10)}  # still answered, each one
    assert upstream_status(gate)["pending"] == 8

    gate_central.resume()
    wait_drained(gate, gate_central, admitted)
    wait_until(lambda: not any(loop_errors(gate).values()), CONVERGE, "every loop to succeed again")
    held = gate_central.checkins()
    assert set(held) == admitted == set(own_records(gate, "north-1"))
    assert {uuid: row[:5] for uuid, row in held.items()} == own_records(gate, "north-1")


# ------------------------------------------------------------------ a central that answers garbage


def garbage(fake: FakeCentral, kind: str) -> None:
    """Make ``fake`` answer every signed call (its challenges stay genuine) with ``kind`` of garbage."""

    async def not_json(request: web.Request, body: bytes) -> web.StreamResponse:
        return web.Response(body=b"<html><body>All systems go</body></html>", content_type="text/html")

    async def wrong_shape(request: web.Request, body: bytes) -> web.StreamResponse:
        if request.path == "/v1/checkins" and request.method == "POST":
            records = json.loads(body)["records"]
            answer: Any = {"results": [{"uuid": r["uuid"], "status": "stored"} for r in records], "cursor": 1}
        elif request.path == "/v1/checkins":
            answer = {"records": "all of them", "cursor": 3, "more": "maybe"}
        elif request.path == "/v1/heartbeat":
            answer = ["alive", "well"]
        else:
            answer = {"manifest": "is the one you have"}
        return web.json_response(answer)

    async def too_large(request: web.Request, body: bytes) -> web.StreamResponse:
        if request.method == "POST" and request.path == "/v1/checkins":  # says so up front
            return web.Response(body=b" " * (MAX_REPLY + 1), content_type="application/json")
        response = web.StreamResponse(headers=fake.fresh())  # says nothing, and never ends
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(2 * MAX_REPLY // 65536):
                await response.write(b" " * 65536)
        return response

    handler = {"not_json": not_json, "wrong_shape": wrong_shape, "too_large": too_large}[kind]
    for method, path in (("POST", "/v1/checkins"), ("GET", "/v1/checkins"), ("POST", "/v1/heartbeat")):
        fake.routes[(method, path)] = handler
    fake.routes[("GET", "/v1/manifest")] = not_json if kind != "wrong_shape" else wrong_shape


@pytest.fixture
def fake_central(central_world: CentralWorld, loop: LoopThread) -> Iterator[FakeCentral]:
    """A server checking the roster gates' signatures, answering only what a test sets."""

    async def start() -> FakeCentral:
        return await FakeCentral({gate: key.public for gate, key in central_world.keys.items()}).start()

    fake = loop.run(start())
    yield fake
    loop.run(fake.close())


@pytest.mark.parametrize("kind", sorted(GARBAGE_ERRORS))
def test_a_central_answering_garbage_is_named_per_loop_and_the_gate_scans_on(
    central_world: CentralWorld, fake_central: FakeCentral, launch: Launcher, tmp_path: Path, kind: str
) -> None:
    garbage(fake_central, kind)
    manifest = central_world.live.manifest(1, tickets_csv=tickets_csv(TICKETS))
    config = upstream_config(central_world, tmp_path / "north-1", fake_central.url, manifest=manifest)
    gate = launch(config, name="north-1")
    admitted = {admit(gate, n) for n in range(1, 4)}
    expected = GARBAGE_ERRORS[kind]

    def named() -> bool:
        errors = loop_errors(gate)
        return all((errors[name] or "").startswith(start) for name, start in expected.items())

    try:
        wait_until(named, CONVERGE, f"every loop to name the {kind} answers")
    except AssertionError:
        raise AssertionError(f"loops say {loop_errors(gate)}") from None
    assert (loop_errors(gate)["manifest"] or "").startswith("bad_reply:")
    assert {(s.gate, s.path_qs.split("?")[0]) for s in fake_central.seen} >= {
        ("north-1", "/v1/checkins"),
        ("north-1", "/v1/heartbeat"),
    }  # the garbage came back to genuine, signed calls

    admitted |= {admit(gate, n) for n in range(4, 7)}
    assert gate.scan(payload(1))["outcome"] == "already_used"
    state = upstream_status(gate)
    # Nothing was taken for an answer: every record is still to be sent, no cursor was moved.
    assert (state["pending"], state["cursor"], state["results"], state["up"]) == (6, 0, {}, False)
    assert set(own_records(gate, "north-1")) == admitted
    assert manifest_version(gate) == 1 and gate.alive


# ------------------------------------------------------------------ online-first


def test_online_first_asks_the_central_falls_back_when_it_hangs_and_returns_when_it_answers(
    central_world: CentralWorld, gate_central: CentralProcess, launch: Launcher, tmp_path: Path
) -> None:
    config = upstream_config(
        central_world,
        tmp_path / "north-1",
        gate_central.url,
        decision="online-first",
        validate_timeout_ms=1500,
        breaker_latency_ms=1000,
        breaker_failures=2,
        probe_interval_ms=200,
        probes=2,
    )
    gate = launch(config, name="north-1")
    wait_until(lambda: manifest_version(gate) == 1, CONVERGE, "the central's manifest")
    assert gate.status()["online"]["mode"] == "online"

    # Online: the central decides first and marks the ticket; the gate's record completes the mark.
    first = admit(gate, 1)
    assert modes(gate)[first] == "online"
    assert gate.counters()["online_scans"] == 1
    assert gate_central.report()["validations"] == 1
    assert gate.scan(payload(1))["outcome"] == "already_used"
    wait_drained(gate, gate_central, {first})
    (mark,) = [(uuid, row) for uuid, row in gate_central.checkins().items() if row[0] == ticket(1)]
    assert mark[0] == first and mark[1][2] == "north-1" and mark[1][5] is True

    # The central hangs: each scan is still answered (decided here), and the breaker opens.
    gate_central.pause()
    during = []
    n = 1
    while gate.status()["online"]["mode"] == "online":
        n += 1
        assert n < 10, "the breaker never opened"
        during.append(admit(gate, n))
    counters = gate.counters()
    assert counters["mode_switch:offline"] == 1 and counters.get("mode_switch:online", 0) == 0
    n += 1
    during.append(admit(gate, n))  # offline: not even asked
    recorded = modes(gate)
    assert [recorded[uuid] for uuid in during] == ["offline"] * len(during)
    assert gate.status()["online"]["calls"]["skipped"] >= 1

    # It answers again: the probes close the breaker, and scans are asked first again.
    gate_central.resume()
    wait_until(lambda: gate.status()["online"]["mode"] == "online", CONVERGE, "the gate to go online again")
    assert gate.counters()["mode_switch:online"] == 1
    wait_drained(gate, gate_central, {first, *during})
    validations = gate_central.report()["validations"]
    n += 1
    last = admit(gate, n)
    assert modes(gate)[last] == "online"
    assert gate_central.report()["validations"] == validations + 1

    admitted = {first, *during, last}
    wait_drained(gate, gate_central, admitted)
    held = gate_central.checkins()
    assert set(held) == admitted
    assert sorted(row[0] for row in held.values()) == sorted(ticket(k) for k in range(1, n + 1))  # once each
    assert gate_central.report()["awaiting_signature"] == 0
    counters = gate.counters()
    # Asked first: the first admission, its repeat (refused by the central) and the last one.
    assert (counters["online_scans"], counters["offline_scans"]) == (3, len(during))


async def test_a_call_allowed_longer_than_the_clients_default_timeout_is_not_cut_short(
    tmp_path: Path,
) -> None:
    # A gate's httpx client is made with timeout_ms; online-first's validate_timeout_ms and
    # manifest_timeout_s may be longer, and are the deadlines of those calls.
    key = SecretKey.generate()
    fake = await FakeCentral({"north-1": key.public}).start()
    client = UpstreamClient(fake.url, "north-1", key, client=httpx.AsyncClient(timeout=0.2), timeout=0.2)
    decision = Decision(Reason.OK, "Welcome", ticket_id="T-1")

    @fake.route("POST", "/v1/validate")
    async def thoughtful(request: web.Request, body: bytes) -> web.StreamResponse:
        await asyncio.sleep(0.6)  # longer than the client's default, well inside the call's deadline
        return web.json_response({"uuid": json.loads(body)["uuid"], "decision": decision.as_dict()})

    @fake.route("GET", "/v1/manifest")
    async def building(request: web.Request, body: bytes) -> web.StreamResponse:
        await asyncio.sleep(0.6)  # a delta being built
        return web.Response(body=b"GDM", headers={"Manifest-Version": "2", "Manifest-Kind": "full"})

    try:
        answer = await client.validate("u-1", "P1-1", kind="entry", zone=None, session=None, timeout=10.0)
        assert answer == decision
        fetched = await client.manifest(1, tmp_path / "m", max_bytes=1 << 20, timeout=10.0)
        assert fetched is not None and fetched.version == 2 and (tmp_path / "m").read_bytes() == b"GDM"
        with pytest.raises(UpstreamError) as caught:  # a call's own deadline still holds
            await client.validate("u-2", "P1-1", kind="entry", zone=None, session=None, timeout=0.2)
        assert caught.value.name == "timeout"
    finally:
        await client.aclose()
        await fake.close()
