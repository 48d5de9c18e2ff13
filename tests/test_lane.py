"""The lane at a running gate: closed, supervised, forced mode and message, by signed commands.

Real parts: a whole gate started from its config (``app.start``), its real ledger file, its
LAN API on 127.0.0.1 (commands are POSTed to ``/v1/command``), its control socket, and a
turnstile relay on gpiozero's mock pins.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from gpiozero.pins.mock import MockFactory

from gate_daemon.config.load import load_config
from gate_daemon.core.commands import UNVERIFIED, parse_command
from gate_daemon.core.keys import SecretKey
from gate_daemon.daemon import app
from gate_daemon.daemon.control import ask
from gate_daemon.net.metrics import render
from gate_daemon.provision.keyfiles import read_secret
from tests.gate_fixtures import query, serving_config
from tests.live import LiveWorld, make_live_world, write_gate_config
from tests.waiting import eventually

RELAY = 24
COUNTED = "SELECT value FROM counters WHERE name = ?"
#: L-0001, L-0002 and L-0009: session now, floor, one entry.
FIRST, SECOND, THIRD = "REF-LIVE-FLOOR-000001", "A100-2", "A107-1"


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    factory = MockFactory()
    yield factory
    factory.reset()


@pytest.fixture
def world(tmp_path: Path) -> LiveWorld:
    return make_live_world(tmp_path / "world", supervisors=("sam", "kim"))


class Pulses:
    """Whether the relay pin was ever driven high since made (gpiozero's mock pins keep their history)."""

    def __init__(self, pins: MockFactory) -> None:
        self.pin = pins.pin(RELAY)
        self.pin.clear_states()

    @property
    def pulsed(self) -> bool:
        return any(bool(change.state) for change in self.pin.states)


@asynccontextmanager
async def gate(
    world: LiveWorld, tmp_path: Path, pins: MockFactory, *, confirm_ms: int = 15000, **config: Any
) -> AsyncIterator[tuple[app.RunningGate, str]]:
    (tmp_path / "drop.gdm").write_bytes(world.manifest(1))
    path = write_gate_config(
        tmp_path / "gate.toml",
        world,
        confirm_timeout_ms=confirm_ms,
        extra='[turnstile]\nrelay = "GPIO24"\n[lan]\nlisten = "127.0.0.1:0"\n',
        **config,
    )
    async with serving_config(load_config(path, {}), pin_factory=pins) as running:
        assert running.lan is not None
        yield running, f"http://127.0.0.1:{running.lan.port}"


async def post(base: str, envelope: object) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base}/v1/command", data=json.dumps(envelope)) as response,
    ):
        return response.status, await response.json()


async def status(base: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/v1/status") as response:
        found: dict[str, Any] = await response.json()
        return found


def commands(running: app.RunningGate) -> list[tuple[Any, ...]]:
    return query(
        running.ledger.path, "SELECT outcome, supervisor, kind, value, via FROM commands ORDER BY id"
    )


async def test_a_closed_lane_refuses_every_scan_and_never_pulses_the_relay(
    world: LiveWorld, tmp_path: Path, pins: MockFactory
) -> None:
    async with gate(world, tmp_path, pins) as (running, base):
        pulses = Pulses(pins)
        code, answer = await post(base, world.command("lane", "closed", supervisor="sam"))
        assert code == 200 and answer["applied"] is True
        assert answer["state"]["state"] == "closed" and answer["state"]["by"] == "sam"
        for payload in (FIRST, "not a ticket", "A999-9"):
            result = await running.gate.scan(payload, device="test")
            assert result.decision.reason.value == "lane_closed", payload
        released = await running.gate.release(device="button", operator="steward")
        assert released.decision.reason.value == "lane_closed"
        assert not pulses.pulsed
        lane = (await status(base))["lane"]
        assert lane["state"] == "closed" and lane["by"] == "sam" and lane["since_ms"] is not None
        rows = query(running.ledger.path, "SELECT ticket_id, reason, resolution FROM scans ORDER BY hlc")
        assert rows[0] == ("L-0001", "lane_closed", "refused"), rows
        assert {reason for _, reason, _ in rows} == {"lane_closed"}
        assert commands(running) == [("applied", "sam", "lane", "closed", "lan")]
        # Reopened: the same ticket goes in (a refusal took no entry) and the relay pulses.
        code, answer = await post(base, world.command("lane", "open", supervisor="kim"))
        assert code == 200 and answer["state"]["state"] == "open"
        assert (await running.gate.scan(FIRST, device="test")).decision.reason.value == "ok"
        await eventually(lambda: pulses.pulsed)
        metrics = render(await running.status.snapshot()).decode()
        assert 'gate_lane_state{state="open"} 1.0' in metrics
        assert 'gate_commands_total{result="applied"} 2.0' in metrics


async def test_a_supervised_lane_holds_each_allow_until_a_steward_confirms(
    world: LiveWorld, tmp_path: Path, pins: MockFactory
) -> None:
    async with gate(world, tmp_path, pins) as (running, base):
        pulses = Pulses(pins)
        await post(base, world.command("lane", "supervised"))
        held = await running.gate.scan(FIRST, device="test")
        assert held.decision.reason.value == "ok" and held.pending
        assert held.as_dict()["pending"] is True
        denied = await running.gate.scan("A999-9", device="test")  # a refusal is not held
        assert not denied.pending
        lane = (await status(base))["lane"]
        assert lane["state"] == "supervised"
        assert lane["pending"]["ticket"] == "L-0001" and lane["pending"]["reason"] == "ok"
        assert not pulses.pulsed
        answer = await asyncio.to_thread(ask, running.config.control.socket, {"op": "confirm"})
        assert answer["ok"] is True and answer["confirmed"] is True
        assert answer["lane"]["pending"] is None
        await eventually(lambda: pulses.pulsed)
        assert running.gate.confirm("screen") is False  # nothing else waits
        await eventually(lambda: query(running.ledger.path, COUNTED, ("lane:confirmed",)) == [(1,)])


async def test_an_allow_nobody_confirms_is_voided_and_the_ticket_usable_again(
    world: LiveWorld, tmp_path: Path, pins: MockFactory
) -> None:
    async with gate(world, tmp_path, pins, confirm_ms=1000) as (running, base):
        pulses = Pulses(pins)
        await post(base, world.command("lane", "supervised"))
        held = await running.gate.scan(SECOND, device="test")
        assert held.pending

        def voided() -> bool:
            rows = query(running.ledger.path, "SELECT resolution FROM scans WHERE uuid = ?", (held.scan_id,))
            return rows == [("not_confirmed",)]

        await eventually(voided)
        assert (await status(base))["lane"]["pending"] is None
        assert running.gate.confirm("button") is False
        assert not pulses.pulsed
        counters = await running.ledger.counters()
        assert counters["lane:not_confirmed"] == 1
        # Voided: the holder can come back (and is held again, the lane being supervised).
        again = await running.gate.scan(SECOND, device="test")
        assert again.decision.reason.value == "ok" and again.pending


async def test_a_message_shows_in_status_and_an_empty_one_clears_it(
    world: LiveWorld, tmp_path: Path, pins: MockFactory
) -> None:
    async with gate(world, tmp_path, pins) as (_running, base):
        text = "Doors 2 and 3 only — North is closed"
        code, answer = await post(base, world.command("message", text))
        assert code == 200 and answer["state"]["message"] == text
        assert (await status(base))["lane"]["message"] == text
        code, answer = await post(base, world.command("message", ""))
        assert code == 200 and answer["state"]["message"] is None


async def test_a_forced_mode_shows_in_status_and_metrics(
    world: LiveWorld, tmp_path: Path, pins: MockFactory
) -> None:
    async with gate(world, tmp_path, pins) as (running, base):
        code, answer = await post(base, world.command("mode", "offline"))
        assert code == 200 and answer["state"]["mode_forced"] == "offline"
        metrics = render(await running.status.snapshot()).decode()
        assert 'gate_mode_forced{mode="offline"} 1.0' in metrics
        code, answer = await post(base, world.command("mode", "auto"))
        assert code == 200 and answer["state"]["mode_forced"] is None


# ------------------------------------------------------------------ refusals change nothing


def forged(world: LiveWorld) -> dict[str, Any]:
    """Signed by kim's key, claiming to be sam."""
    return world.command("lane", "closed", supervisor="sam", key=read_secret(world.supervisor_keys["kim"]))


def unsigned(world: LiveWorld) -> dict[str, Any]:
    envelope = world.command("lane", "closed")
    del envelope["sig"]
    return envelope


def tampered(world: LiveWorld) -> dict[str, Any]:
    """A genuine envelope whose value was changed after signing."""
    envelope = world.command("lane", "open")
    envelope["command"]["value"] = "closed"
    return envelope


REFUSED: dict[str, tuple[Callable[[LiveWorld], object], int, str]] = {
    "forged": (forged, 403, "bad_signature"),
    "tampered": (tampered, 403, "bad_signature"),
    "unsigned": (unsigned, 403, "bad_signature"),
    "bad-sig-length": (lambda w: {**w.command("lane", "closed"), "sig": "AAAA"}, 403, "bad_signature"),
    "unknown-supervisor": (
        lambda w: w.command("lane", "closed", supervisor="mallory", key=SecretKey.generate()),
        403,
        "unknown_supervisor",
    ),
    "wrong-gate": (lambda w: w.command("lane", "closed", gate="south-1"), 403, "wrong_gate"),
    "wrong-event": (lambda w: w.command("lane", "closed", event="other-2026"), 403, "wrong_event"),
    "expired": (
        lambda w: w.command("lane", "closed", issued_ms=int((w.now - 2 * 86400) * 1000)),
        403,
        "expired",
    ),
    "from-the-future": (
        lambda w: w.command("lane", "closed", issued_ms=int((time.time() + 2 * 86400) * 1000)),
        403,
        "expired",
    ),
    "bad-value": (lambda w: w.command("lane", "x"), 400, "bad_command"),
    "not-an-object": (lambda w: ["lane", "closed"], 400, "bad_command"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_a_refused_command_is_named_recorded_and_changes_nothing(
    case: str, world: LiveWorld, tmp_path: Path, pins: MockFactory
) -> None:
    make, status_code, name = REFUSED[case]
    async with gate(world, tmp_path, pins) as (running, base):
        before = (await status(base))["lane"]
        code, answer = await post(base, make(world))
        assert (code, answer["error"]) == (status_code, name), answer
        after = (await status(base))["lane"]
        assert {**after, "unverified": {}} == before
        assert (await running.gate.scan(FIRST, device="test")).decision.reason.value == "ok"
        rows = commands(running)
        if name in UNVERIFIED:
            # Anyone can send these: counted in memory and in /metrics, never written.
            assert rows == []
            assert f"command:{name}" not in await running.ledger.counters()
            assert (await status(base))["lane"]["unverified"] == {name: 1}
            metrics = render(await running.status.snapshot()).decode()
            assert f'gate_commands_unverified_total{{refusal="{name}"}} 1.0' in metrics
        else:
            assert [row[0] for row in rows] == [name]
            assert (await running.ledger.counters())[f"command:{name}"] == 1


async def test_a_replayed_command_is_a_no_op_and_an_older_one_stale(
    world: LiveWorld, tmp_path: Path, pins: MockFactory
) -> None:
    async with gate(world, tmp_path, pins) as (running, base):
        now_ms = int(time.time() * 1000)
        close = world.command("lane", "closed", issued_ms=now_ms)
        assert (await post(base, close))[1]["applied"] is True
        # The very command again (the central's copy, or a replay): nothing changes.
        code, answer = await post(base, close)
        assert code == 200 and answer["applied"] is False and answer["state"]["state"] == "closed"
        # Its nonce on another command: refused.
        reuse = world.command("lane", "open", issued_ms=now_ms + 5, nonce=close["command"]["nonce"])
        assert (await post(base, reuse))[1]["error"] == "replayed"
        # Issued before the one applied: stale, whichever path brought it late.
        older = world.command("lane", "open", issued_ms=now_ms - 1000)
        code, answer = await post(base, older)
        assert (code, answer["error"]) == (409, "stale")
        # Another kind is ordered on its own.
        assert (await post(base, world.command("message", "hi", issued_ms=now_ms - 1000)))[0] == 200
        assert (await status(base))["lane"]["state"] == "closed"
        outcomes = [row[0] for row in commands(running)]
        assert outcomes == ["applied", "replayed", "replayed", "stale", "applied"]


async def test_a_supervisor_dropped_from_a_newer_manifest_is_refused(
    world: LiveWorld, tmp_path: Path, pins: MockFactory
) -> None:
    async with gate(world, tmp_path, pins) as (running, base):
        assert (await post(base, world.command("lane", "supervised", supervisor="sam")))[0] == 200
        without_sam = dataclasses.replace(
            world.event, supervisors=tuple(s for s in world.event.supervisors if s.id != "sam")
        )
        (tmp_path / "drop.gdm").write_bytes(world.manifest(2, event=without_sam))
        await eventually(
            lambda: running.manifests.current is not None and running.manifests.current.version == 2
        )
        code, answer = await post(base, world.command("lane", "closed", supervisor="sam"))
        assert (code, answer["error"]) == (403, "unknown_supervisor")
        assert (await status(base))["lane"]["state"] == "supervised"
        assert (await post(base, world.command("lane", "open", supervisor="kim")))[0] == 200


async def test_revoking_a_supervisor_undoes_the_block_of_their_command_dated_ahead(
    world: LiveWorld, tmp_path: Path, pins: MockFactory
) -> None:
    async with gate(world, tmp_path, pins) as (running, base):
        now_ms = int(time.time() * 1000)
        # A day ahead: refused (before, it was applied and made every correct lane command stale).
        code, answer = await post(
            base, world.command("lane", "closed", supervisor="sam", issued_ms=now_ms + 86_400_000)
        )
        assert (code, answer["error"]) == (403, "expired") and "ahead" in answer["detail"]
        # Four minutes ahead is within the window: applied, and kim's command now is stale.
        ahead = world.command("lane", "closed", supervisor="sam", issued_ms=now_ms + 240_000)
        assert (await post(base, ahead))[0] == 200
        code, answer = await post(base, world.command("lane", "open", supervisor="kim"))
        assert (code, answer["error"]) == (409, "stale")
        # sam is revoked: the lane stays as sam left it, but kim commands again at once.
        without_sam = dataclasses.replace(
            world.event, supervisors=tuple(s for s in world.event.supervisors if s.id != "sam")
        )
        (tmp_path / "drop.gdm").write_bytes(world.manifest(2, event=without_sam))
        await eventually(
            lambda: running.manifests.current is not None and running.manifests.current.version == 2
        )
        assert (await status(base))["lane"]["state"] == "closed"
        code, answer = await post(base, world.command("lane", "open", supervisor="kim"))
        assert code == 200 and answer["state"]["state"] == "open", answer


async def test_a_gate_whose_manifest_names_no_supervisors_takes_no_command(
    tmp_path: Path, pins: MockFactory
) -> None:
    bare = make_live_world(tmp_path / "bare")
    signed_anyway = make_live_world(tmp_path / "other", supervisors=("sam",))
    async with gate(bare, tmp_path, pins) as (_running, base):
        code, answer = await post(base, signed_anyway.command("lane", "closed"))
        assert (code, answer["error"]) == (403, "unknown_supervisor")


async def test_the_release_button_confirms_a_held_allow_and_releases_by_hand_otherwise(
    world: LiveWorld, tmp_path: Path, pins: MockFactory
) -> None:
    button = '[turnstile]\nrelay = "GPIO24"\nbutton = "GPIO5"\nbutton_action = "release"\n'
    button += '[lan]\nlisten = "127.0.0.1:0"\n'
    (tmp_path / "drop.gdm").write_bytes(world.manifest(1))
    path = write_gate_config(tmp_path / "gate.toml", world, extra=button)
    async with serving_config(load_config(path, {}), pin_factory=pins) as running:
        assert running.lan is not None and running.button is not None
        base = f"http://127.0.0.1:{running.lan.port}"
        await eventually(lambda: running.button.device.when_activated is not None)  # type: ignore[union-attr]
        pulses = Pulses(pins)
        await post(base, world.command("lane", "supervised"))
        held = await running.gate.scan(FIRST, device="test")
        assert held.pending and not pulses.pulsed
        pins.pin(5).drive_low()  # the steward presses: the held allow goes through
        pins.pin(5).drive_high()
        await eventually(lambda: pulses.pulsed)
        assert running.gate.lane.held == 0
        counters = await running.ledger.counters()
        assert "manual_releases" not in counters  # a confirmation, not a release by hand
        rows = query(running.ledger.path, "SELECT resolution FROM scans WHERE uuid = ?", (held.scan_id,))
        assert rows == [("admitted",)]
        # Nothing held: the button releases by hand, as it always did.
        pins.pin(5).drive_low()
        pins.pin(5).drive_high()
        await eventually(lambda: query(running.ledger.path, COUNTED, ("manual_releases",)) == [(1,)])


async def test_an_allow_held_when_the_gate_stops_is_voided(
    world: LiveWorld, tmp_path: Path, pins: MockFactory
) -> None:
    async with gate(world, tmp_path, pins) as (running, base):
        await post(base, world.command("lane", "supervised"))
        held = await running.gate.scan(SECOND, device="test")
        assert held.pending
    # Stopped before anyone confirmed: the turnstile never opened, so the entry did not happen.
    rows = query(running.ledger.path, "SELECT resolution FROM scans WHERE uuid = ?", (held.scan_id,))
    assert rows == [("not_confirmed",)]
    assert query(running.ledger.path, "SELECT COUNT(*) FROM redemptions WHERE kind = 'void'") == [(1,)]


async def test_closing_the_lane_voids_every_held_allow_at_once(
    world: LiveWorld, tmp_path: Path, pins: MockFactory
) -> None:
    async with gate(world, tmp_path, pins) as (running, base):
        pulses = Pulses(pins)
        await post(base, world.command("lane", "supervised"))
        first = await running.gate.scan(FIRST, device="test")
        second = await running.gate.scan(SECOND, device="test")
        assert first.pending and second.pending and running.gate.lane.held == 2
        assert (await post(base, world.command("lane", "closed")))[0] == 200
        # Nobody passes a closed lane: both allows are voided now, not at their timeout.
        assert running.gate.lane.held == 0
        assert running.gate.confirm("button") is False
        rows = query(
            running.ledger.path,
            "SELECT resolution FROM scans WHERE uuid IN (?, ?)",
            (first.scan_id, second.scan_id),
        )
        assert rows == [("not_confirmed",), ("not_confirmed",)]
        assert (await status(base))["lane"]["pending"] is None
        assert not pulses.pulsed


async def test_a_held_allow_cannot_be_confirmed_while_the_lane_is_closed(
    world: LiveWorld, tmp_path: Path, pins: MockFactory
) -> None:
    async with gate(world, tmp_path, pins) as (running, base):
        await post(base, world.command("lane", "supervised"))
        held = await running.gate.scan(FIRST, device="test")
        assert held.pending
        # The lane's state as a closed command leaves it, before the voids land.
        running.gate.lane.state = running.gate.lane.state.applying(
            parse_command(world.command("lane", "closed")["command"]), 0
        )
        assert running.gate.confirm("screen") is False


async def test_the_central_s_commands_refused_for_a_reason_that_clears_up_are_not_acknowledged(
    world: LiveWorld, tmp_path: Path, pins: MockFactory
) -> None:
    async with gate(world, tmp_path, pins) as (running, _base):
        now_ms = int(time.time() * 1000)
        applied = world.command("message", "hello")
        unknown = world.command("lane", "closed", supervisor="mallory", key=SecretKey.generate())
        ahead = world.command("lane", "closed", issued_ms=now_ms + 3_600_000)  # this gate's clock behind
        old = world.command("lane", "closed", issued_ms=now_ms - 2 * 86_400_000)
        elsewhere = world.command("lane", "closed", gate="south-1")
        taken = await running.gate.lane.deliver([applied, unknown, ahead, old, elsewhere])
        assert taken == [e["command"]["nonce"] for e in (applied, old, elsewhere)]
        assert running.gate.lane.state.state == "open"
