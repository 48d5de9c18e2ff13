"""Online-first: the central's decision within a hard deadline, a breaker that keeps a sick central off
the scan path, and the gate that records every scan under one uuid whoever decided it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from gate_daemon.core.decision import Checkpoint, Decision, ScanKind
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.reasons import Reason
from gate_daemon.net.online import BreakerSettings, OnlineDecider, Switch
from gate_daemon.net.upstream import UpstreamClient
from gate_daemon.store.offline_reads import read_counters
from tests.fake_central import FakeCentral
from tests.gate_fixtures import GATE_ID, Rig, gate_rig
from tests.support import World
from tests.waiting import eventually

KEY = SecretKey.generate()
REF_T0001 = "REF-SAT-FLOOR-0001"  # T-0001: Saturday, floor, one entry
ALLOW = Decision(Reason.OK, "Welcome", ticket_id="T-0001").as_dict()
USED = Decision(Reason.ALREADY_USED, "Already used", ticket_id="T-0001", last_entry_gate="east-2").as_dict()
#: Bounds a failing test only.
GUARD = 20.0
#: For a test whose central answers at once: no deadline or latency limit a loaded machine could meet
#: (the defaults, 0.3 s and 0.25 s, are for tests that wait out a hung central).
PATIENT: dict[str, Any] = {"timeout": 10.0, "max_latency": 10.0}


class Central:
    """A fake central whose validate answer the test sets: a decision, a hang, or a slow answer."""

    def __init__(self, fake: FakeCentral) -> None:
        self.fake = fake
        self.decision: dict[str, Any] = ALLOW
        self.delay = 0.0
        #: Cleared: validate (and, with ``challenge_too``, the challenge) hang until it is set.
        self.healthy = asyncio.Event()
        self.healthy.set()
        self.challenge_too = False
        fake.route("POST", "/v1/validate")(self._validate)
        fake.route("POST", "/v1/validate/release")(self._release)
        fake.challenge_route = self._challenge

    @property
    def validations(self) -> list[str]:
        """The uuids of the validate calls that reached the central."""
        return [seen.json()["uuid"] for seen in self.fake.signed("POST", "/v1/validate")]

    @property
    def releases(self) -> list[str]:
        """The uuids whose marks the gate took back."""
        return [seen.json()["uuid"] for seen in self.fake.signed("POST", "/v1/validate/release")]

    async def _release(self, _request: web.Request, body: bytes) -> web.StreamResponse:
        return web.json_response({"uuid": json.loads(body)["uuid"], "released": True})

    def down(self, *, challenge_too: bool = False) -> None:
        self.healthy.clear()
        self.challenge_too = challenge_too

    def up(self) -> None:
        self.healthy.set()

    async def _validate(self, _request: web.Request, body: bytes) -> web.StreamResponse:
        await self._wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.json_response({"uuid": json.loads(body)["uuid"], "decision": self.decision})

    async def _challenge(self, _request: web.Request, _body: bytes) -> web.StreamResponse:
        if self.challenge_too:
            await self._wait()
        return web.json_response(
            {"challenge": self.fake.challenges.issue(), "ttl_ms": 30_000, "central": "c"}
        )

    async def _wait(self) -> None:
        # Hung until healthy again, or until the fake central closes.
        closing = asyncio.ensure_future(self.fake.release.wait())
        healthy = asyncio.ensure_future(self.healthy.wait())
        await asyncio.wait({closing, healthy}, return_when=asyncio.FIRST_COMPLETED)
        closing.cancel()
        healthy.cancel()


@pytest.fixture
async def central() -> AsyncIterator[Central]:
    fake = await FakeCentral({GATE_ID: KEY.public}).start()
    try:
        yield Central(fake)
    finally:
        await fake.close()


Make = Callable[..., OnlineDecider]


@pytest.fixture
async def make(central: Central) -> AsyncIterator[Make]:
    """Deciders against the fake central (timeout 0.3 s unless told), their clients closed at the end."""
    clients: list[UpstreamClient] = []
    tasks: list[asyncio.Task[None]] = []

    def build(
        *,
        on_switch: Callable[[Switch], None] | None = None,
        monotonic: Callable[[], float] | None = None,
        **kw: Any,
    ) -> OnlineDecider:
        settings = BreakerSettings(**{"timeout": 0.3, "max_latency": 0.25, "failures": 3, **kw})
        client = UpstreamClient(central.fake.url, GATE_ID, KEY, client=httpx.AsyncClient(), timeout=5.0)
        clients.append(client)
        extra: dict[str, Any] = {} if monotonic is None else {"monotonic": monotonic}
        decider = OnlineDecider(client, Checkpoint("floor"), settings, on_switch=on_switch, **extra)
        decider.probing = lambda: tasks.append(asyncio.create_task(decider.run()))  # type: ignore[attr-defined]
        return decider

    yield build
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for client in clients:
        await client.aclose()


async def ask(decider: OnlineDecider, uuid: str = "u-1", payload: str = REF_T0001) -> Decision | None:
    async with asyncio.timeout(GUARD):
        return await decider.decide(uuid, payload, ScanKind.ENTRY)


class Steps:
    """A monotonic clock that moves ``step`` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 1000.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


# ------------------------------------------------------------------ the decider alone


async def test_an_answer_is_the_centrals_decision(central: Central, make: Make) -> None:
    decider = make(**PATIENT)
    assert await ask(decider, "u-7") == Decision.from_dict(ALLOW)
    assert central.validations == ["u-7"]
    [seen] = central.fake.signed("POST", "/v1/validate")
    assert seen.json() == {
        "uuid": "u-7",
        "payload": REF_T0001,
        "kind": "entry",
        "zone": "floor",
        "session": None,
    }
    status = decider.status()
    assert status["mode"] == "online"
    assert status["calls"] == {"answered": 1, "failed": 0, "slow": 0, "skipped": 0}
    assert status["switches"] == {"online": 0, "offline": 0}
    assert status["last_switch"] is None and status["last_error"] is None
    assert status["latency_p50_ms"] is not None and status["latency_p99_ms"] is not None
    assert status["timeout_ms"] == pytest.approx(10_000)
    assert status["offline_seconds"] == 0


async def test_a_central_that_hangs_opens_the_breaker_after_failures_calls(
    central: Central, make: Make
) -> None:
    switches: list[Switch] = []
    decider = make(on_switch=switches.append)
    central.down()
    assert await ask(decider, "u-1") is None
    assert await ask(decider, "u-2") is None
    assert decider.route == "online" and switches == []
    assert await ask(decider, "u-3") is None
    assert decider.route == "offline"
    assert decider.switches == {"online": 0, "offline": 1}
    assert [s.to for s in switches] == ["offline"] and switches[0] is decider.last_switch
    assert switches[0].why.startswith("timeout: ")
    assert switches[0].took > 0
    assert decider.calls["failed"] == 3
    assert decider.status()["last_error"].startswith("timeout: ")
    assert central.validations == ["u-1", "u-2", "u-3"]


async def test_the_switch_took_from_the_first_bad_call(central: Central, make: Make) -> None:
    clock = Steps(0.1)
    decider = make(monotonic=clock)
    central.down()
    for n in range(3):
        assert await ask(decider, f"u-{n}") is None
    # Read at the first call's start, then once per call and once at the switch: three steps.
    assert decider.last_switch is not None
    assert decider.last_switch.took == pytest.approx(0.3)


async def test_a_good_answer_ends_a_streak(central: Central, make: Make) -> None:
    decider = make()
    central.down()
    assert await ask(decider, "u-1") is None
    assert await ask(decider, "u-2") is None
    central.up()
    assert await ask(decider, "u-3") is not None
    central.down()
    assert await ask(decider, "u-4") is None
    assert await ask(decider, "u-5") is None
    assert decider.route == "online"  # two in a row, not three
    assert await ask(decider, "u-6") is None
    assert decider.route == "offline"


async def test_while_offline_no_call_is_made(central: Central, make: Make) -> None:
    decider = make(failures=1)
    central.down()
    assert await ask(decider, "u-1") is None
    assert decider.route == "offline"
    central.up()  # the central is well, but only the probe may find out
    for n in range(5):
        assert await ask(decider, f"u-{n + 2}") is None
    assert central.validations == ["u-1"]
    assert decider.calls["skipped"] == 5


async def test_slow_answers_count_toward_opening(central: Central, make: Make) -> None:
    # Slower than max_latency, well within the timeout: the answer still counts, and so does the slowness.
    decider = make(timeout=10.0, max_latency=0.02)
    central.delay = 0.1
    for n in range(2):
        assert await ask(decider, f"u-{n}") == Decision.from_dict(ALLOW)
    assert decider.route == "online"
    assert await ask(decider, "u-2") == Decision.from_dict(ALLOW)
    assert decider.route == "offline"
    assert decider.calls == {"answered": 3, "failed": 0, "slow": 3, "skipped": 0}
    assert decider.last_switch is not None and decider.last_switch.why.startswith("slow: answered in ")


async def test_a_refusing_central_counts_as_failing(central: Central, make: Make) -> None:
    decider = make(failures=2, **PATIENT)
    central.decision = {"not": "a decision"}
    assert await ask(decider) is None
    assert await ask(decider) is None
    assert decider.route == "offline"
    assert decider.last_error is not None and decider.last_error.startswith("bad_reply: ")


async def test_the_probe_closes_the_breaker_once_the_central_answers_again(
    central: Central, make: Make
) -> None:
    switches: list[Switch] = []
    decider = make(failures=1, probe_interval=0.02, probes=2, on_switch=switches.append)
    central.down(challenge_too=True)
    assert await ask(decider, "u-1") is None
    decider.probing()  # type: ignore[attr-defined]
    # While the central stays down, probes time out and the gate stays offline.
    await eventually(lambda: (decider.last_error or "").startswith("probe: timeout"))
    assert decider.route == "offline"
    central.up()
    await eventually(lambda: decider.route == "online", timeout=GUARD)
    assert decider.switches == {"online": 1, "offline": 1}
    assert [s.to for s in switches] == ["offline", "online"]
    assert switches[1].why == "the central answers quickly again"
    assert decider.status()["offline_seconds"] > 0
    # Back online: scans are put to the central again.
    assert await ask(decider, "u-2") == Decision.from_dict(ALLOW)
    assert central.validations == ["u-2"]  # u-1 never got past the hung challenge


async def test_back_online_on_the_probes_word_one_bad_call_is_enough_to_go_back(
    central: Central, make: Make
) -> None:
    # A central whose challenges are quick but whose validation hangs: the probe closes the
    # breaker, and the first scan that waits out the timeout opens it again (not three).
    decider = make(failures=3, probe_interval=0.02, probes=1)
    central.down()  # validate hangs, challenges answer
    for n in range(3):
        assert await ask(decider, f"u-{n}") is None
    assert decider.route == "offline"
    decider.probing()  # type: ignore[attr-defined]
    await eventually(lambda: decider.route == "online", timeout=GUARD)
    assert await ask(decider, "u-9") is None
    assert decider.route == "offline" and decider.switches == {"online": 1, "offline": 2}
    # Once a scan's call is answered quickly, it takes a whole streak again.
    central.up()
    await eventually(lambda: decider.route == "online", timeout=GUARD)
    assert await ask(decider, "u-10") == Decision.from_dict(ALLOW)
    central.down()
    assert await ask(decider, "u-11") is None
    assert decider.route == "online"


async def test_the_probe_does_nothing_while_online(central: Central, make: Make) -> None:
    decider = make(probe_interval=0.01)
    decider.probing()  # type: ignore[attr-defined]
    gets = central.fake.challenge_gets
    await asyncio.sleep(0.1)
    assert central.fake.challenge_gets == gets and decider.route == "online"


async def test_status_while_offline(central: Central, make: Make) -> None:
    decider = make(failures=1)
    central.down()
    await ask(decider)
    status = decider.status()
    assert status["mode"] == "offline"
    assert status["last_switch"]["to"] == "offline"
    assert status["last_switch"]["why"].startswith("timeout: ")
    assert status["last_switch"]["took_s"] > 0
    assert status["latency_p50_ms"] is None  # no call was answered
    json.dumps(status)


# ------------------------------------------------------------------ through the gate


@contextlib.asynccontextmanager
async def online_gate(world: World, state: Path, decider: OnlineDecider) -> AsyncIterator[Rig]:
    async with gate_rig(world, state) as rig:
        rig.gate.online = decider
        yield rig


def scan_row(rig: Rig, scan_id: str) -> tuple[Any, ...]:
    [row] = rig.rows("SELECT outcome, reason, mode, resolution FROM scans WHERE uuid = ?", (scan_id,))
    return row


async def test_the_centrals_refusal_wins(central: Central, make: Make, world: World, tmp_path: Path) -> None:
    central.decision = USED
    async with online_gate(world, tmp_path / "gate", make(**PATIENT)) as rig:
        result = await rig.gate.scan(REF_T0001, device="test")
        assert result.decision.reason is Reason.ALREADY_USED
        assert result.decision.last_entry_gate == "east-2"
        assert central.validations == [result.scan_id]
        assert scan_row(rig, result.scan_id) == ("already_used", "already_used", "online", "refused")
        assert rig.scalar("SELECT COUNT(*) FROM redemptions") == 0
        assert [d.reason for d in rig.signals.shown] == [Reason.ALREADY_USED]
    counters = read_counters(tmp_path / "gate" / "ledger.sqlite")
    assert counters["online_scans"] == 1 and "offline_scans" not in counters


async def test_both_allowing_admits_online(
    central: Central, make: Make, world: World, tmp_path: Path
) -> None:
    async with online_gate(world, tmp_path / "gate", make(**PATIENT)) as rig:
        result = await rig.gate.scan(REF_T0001, device="test")
        assert result.decision.reason is Reason.OK and result.recorded
        assert central.validations == [result.scan_id]
        assert scan_row(rig, result.scan_id) == ("allow", "ok", "online", "admitted")
        assert rig.rows("SELECT uuid, ticket_id, mode FROM redemptions") == [
            (result.scan_id, "T-0001", "online")
        ]
    assert read_counters(tmp_path / "gate" / "ledger.sqlite")["online_scans"] == 1


async def test_the_gates_own_refusal_stands_against_a_central_allow(
    central: Central, make: Make, world: World, tmp_path: Path
) -> None:
    async with online_gate(world, tmp_path / "gate", make(**PATIENT)) as rig:
        first = await rig.gate.scan(REF_T0001, device="test")
        second = await rig.gate.scan(REF_T0001, device="test")  # the central (wrongly) allows it again
        assert first.decision.reason is Reason.OK
        assert second.decision.reason is Reason.ALREADY_USED
        assert scan_row(rig, second.scan_id)[2:] == ("online", "refused")
        assert rig.scalar("SELECT COUNT(*) FROM redemptions") == 1
        # The central marked the second scan when it allowed it: the gate takes the mark back,
        # in the background, and only that one (the first was admitted and will be pushed).
        decider = rig.gate.online
        assert isinstance(decider, OnlineDecider) and decider.status()["to_release"] == 1
        decider.probing()  # type: ignore[attr-defined]
        await eventually(lambda: central.releases == [second.scan_id], timeout=GUARD)
        await eventually(lambda: decider.status()["released"] == 1, timeout=GUARD)
        assert decider.status()["to_release"] == 0


async def test_a_scan_the_central_refused_leaves_nothing_to_take_back(
    central: Central, make: Make, world: World, tmp_path: Path
) -> None:
    central.decision = USED
    async with online_gate(world, tmp_path / "gate", make(**PATIENT)) as rig:
        result = await rig.gate.scan(REF_T0001, device="test")
        assert result.decision.reason is Reason.ALREADY_USED
        decider = rig.gate.online
        assert isinstance(decider, OnlineDecider) and decider.status()["to_release"] == 0


async def test_a_central_that_is_down_leaves_the_decision_to_the_gate(
    central: Central, make: Make, world: World, tmp_path: Path
) -> None:
    central.down()
    async with online_gate(world, tmp_path / "gate", make()) as rig:
        result = await rig.gate.scan(REF_T0001, device="test")
        assert result.decision.reason is Reason.OK and result.recorded
        # The central saw the scan under the uuid the gate recorded it with.
        assert central.validations == [result.scan_id]
        assert scan_row(rig, result.scan_id) == ("allow", "ok", "offline", "admitted")
        assert rig.rows("SELECT uuid, mode FROM redemptions") == [(result.scan_id, "offline")]
    counters = read_counters(tmp_path / "gate" / "ledger.sqlite")
    assert counters["offline_scans"] == 1 and "online_scans" not in counters


async def test_an_unreachable_central_leaves_the_decision_to_the_gate(
    central: Central, make: Make, world: World, tmp_path: Path
) -> None:
    decider = make()
    await central.fake.close()  # nothing listens there any more
    async with online_gate(world, tmp_path / "gate", decider) as rig:
        result = await rig.gate.scan(REF_T0001, device="test")
        assert result.decision.reason is Reason.OK
        assert scan_row(rig, result.scan_id)[2] == "offline"
    assert decider.last_error is not None and decider.last_error.startswith("unreachable: ")


async def test_a_garbled_central_decision_leaves_the_decision_to_the_gate(
    central: Central, make: Make, world: World, tmp_path: Path
) -> None:
    # A refusal whose details are not of their types: it must not reach the ledger (and cost the scan).
    central.decision = {**USED, "ticket_id": ["T-0001"], "entries_used": "2"}
    async with online_gate(world, tmp_path / "gate", make(**PATIENT)) as rig:
        result = await rig.gate.scan(REF_T0001, device="test")
        assert result.recorded and result.decision.reason is Reason.OK
        assert scan_row(rig, result.scan_id)[2] == "offline"
        assert rig.gate.volatile["unrecorded"] == 0
