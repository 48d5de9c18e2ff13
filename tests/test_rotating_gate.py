"""Rotating codes at a real gate (a real ledger file): what the camera's repeat window does with them.

A camera sees the phone in many frames; the gate drops a sighting that repeats one within
its repeat window. A rotating code changes every step, so the repeat is the page (the
certificate), not the payload: a phone held across a step boundary is one scan.
"""

from __future__ import annotations

from pathlib import Path

from gate_daemon.core.reasons import Reason
from gate_daemon.core.rotating import DEFAULT_PERIOD, certificate_id, repeat_key, step_of
from tests.gate_fixtures import gate_rig
from tests.support import SAT_START, World
from tests.test_rotating import certificate, code_at

#: One second before a step boundary: the next step's code is shown a second later.
BEFORE_BOUNDARY = (step_of(SAT_START, DEFAULT_PERIOD) + 1) * DEFAULT_PERIOD - 1


async def test_a_phone_held_across_a_step_boundary_is_one_scan(shared_world: World, tmp_path: Path) -> None:
    cert = certificate(shared_world, "T-ROT-9")
    async with gate_rig(shared_world, tmp_path / "gate", now=BEFORE_BOUNDARY) as rig:
        first = await rig.gate.sighted(code_at(cert, BEFORE_BOUNDARY), device="camera")
        assert first is not None and first.decision.reason is Reason.OK
        # One second on, the page shows the next step's code: a new payload of the same page.
        rig.clock.now += 1
        rig.mono.now += 1
        nxt = code_at(cert, rig.clock.now)
        assert nxt != code_at(cert, BEFORE_BOUNDARY)
        assert await rig.gate.sighted(nxt, device="camera") is None  # a repeat, not already_used
        assert rig.gate.volatile["repeats"] == 1
        assert rig.rows("SELECT reason FROM scans") == [("ok",)]
        assert rig.gate.shift.pending is None  # nothing left for a supervisor's badge to force
        # Another ticket's page in the same second is its own scan.
        other = await rig.gate.sighted(
            code_at(certificate(shared_world, "T-ROT-10"), rig.clock.now), device="camera"
        )
        assert other is not None and other.decision.reason is Reason.OK
        # Shown again once the window has passed, it is a scan again: the ticket has been used.
        rig.mono.now += rig.gate.repeat_window
        again = await rig.gate.sighted(nxt, device="camera")
        assert again is not None and again.decision.reason is Reason.ALREADY_USED


def test_the_repeat_key_of_a_rotating_code_is_its_certificate(shared_world: World) -> None:
    cert = certificate(shared_world)
    codes = {code_at(cert, SAT_START + 15 * n) for n in range(3)}
    assert len(codes) == 3
    assert {repeat_key(c, f"fp-{c}") for c in codes} == {"holder:" + certificate_id(cert)}
    assert repeat_key("GDR1:NOTBASE32!", "fp") == "fp"  # unparsable: the payload itself
    assert repeat_key("REF-SAT-FLOOR-0001", "fp") == "fp"
