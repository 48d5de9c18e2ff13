"""``gatectl hwtest`` on gpiozero's mock pins: every step passes, fails and skips as it should."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from gate_daemon.cli.hwtest import STEPS, HardwareTest, Prompter
from gate_daemon.config.load import load_config
from gate_daemon.provision.qrimage import write_qr
from tests.live import LiveWorld, write_gate_config

RELAY, PASSAGE, BUTTON = 24, 25, 5
TURNSTILE = """
[turnstile]
relay = "GPIO24"
pulse_ms = 100
passage = "GPIO25"
button = "GPIO5"
"""


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    made = MockFactory(pin_class=MockPWMPin)
    yield made
    made.close()


class Tech:
    """Answers questions from a script and does what the prompts ask, on the mock pins."""

    def __init__(self, pins: MockFactory, answers: Callable[[str], bool] = lambda _q: True) -> None:
        self.pins = pins
        self.answers = answers
        self.lines: list[str] = []
        self.questions: list[str] = []
        self.lit: dict[str, bool] = {}
        self.relay_went_high = False
        self.act = True

    def say(self, line: str) -> None:
        self.lines.append(line)
        if not self.act:
            return
        loop = asyncio.get_running_loop()
        if "Push the turnstile" in line:
            loop.call_later(0.05, self.pins.pin(PASSAGE).drive_low)
        if "Press the steward button" in line:
            loop.call_later(0.05, self.pins.pin(BUTTON).drive_low)

    def ask(self, question: str) -> bool:
        self.questions.append(question)
        for name, number in (("GREEN", 17), ("RED", 27), ("YELLOW", 22)):
            if name in question:
                self.lit[name] = bool(self.pins.pin(number).state)
        if "Did the turnstile unlock" in question:
            self.relay_went_high = any(change.state for change in self.pins.pin(RELAY).states)
        return self.answers(question)

    @property
    def prompter(self) -> Prompter:
        return Prompter(self.say, self.ask)

    def status(self, what: str) -> str:
        return next(
            line.split()[0]
            for line in self.lines
            if what in line and line.split()[0] in {"PASS", "FAIL", "SKIP"}
        )


def config_for(tmp_path: Path, live: LiveWorld, **kwargs: object) -> Path:
    return write_gate_config(tmp_path / "gate.toml", live, signals="gpio", extra=TURNSTILE, **kwargs)  # type: ignore[arg-type]


async def test_a_good_gate_passes_every_step(tmp_path: Path, live: LiveWorld, pins: MockFactory) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    write_qr("GATE-HWTEST", frames / "view.png", scale=6)
    config = load_config(config_for(tmp_path, live, input_kind="images", images=frames), {})
    tech = Tech(pins)
    code = await HardwareTest(config, tech.prompter, pin_factory=pins, wait=3).run()
    assert tech.lit == {"GREEN": True, "RED": True, "YELLOW": True}  # each was on when asked about
    assert tech.relay_went_high
    for what in ("green light", "red light", "yellow light", "buzzer", "relay", "passage", "button"):
        assert tech.status(what) == "PASS", tech.lines
    assert tech.status("camera decode") == "PASS"
    assert tech.status("camera brightness") == "PASS"
    assert tech.status("scanner") == "SKIP"
    assert "GATE-HWTEST" not in "\n".join(tech.lines)  # a code's text is never printed
    assert code == 0
    assert tech.lines[-1] == "hwtest: 10 passed, 0 failed, 1 skipped"


async def test_the_relay_is_not_released_without_a_yes(
    tmp_path: Path, live: LiveWorld, pins: MockFactory
) -> None:
    config = load_config(config_for(tmp_path, live), {})
    tech = Tech(pins, answers=lambda q: "Release" not in q)
    code = await HardwareTest(config, tech.prompter, pin_factory=pins, wait=1).run(("relay",))
    assert tech.status("relay") == "SKIP"
    assert not any(change.state for change in pins.pin(RELAY).states)
    assert code == 0


async def test_what_the_tech_does_not_see_fails(tmp_path: Path, live: LiveWorld, pins: MockFactory) -> None:
    config = load_config(config_for(tmp_path, live), {})
    tech = Tech(pins, answers=lambda q: "RED" not in q)
    tech.act = False  # nobody turns the turnstile or presses the button
    code = await HardwareTest(config, tech.prompter, pin_factory=pins, wait=0.3).run(
        ("lights", "sensor", "button")
    )
    assert tech.status("red light") == "FAIL" and tech.status("green light") == "PASS"
    assert tech.status("passage") == "FAIL" and tech.status("button") == "FAIL"
    assert "nothing within" in "\n".join(tech.lines)
    assert code == 1


async def test_a_busy_pin_says_to_stop_the_gate(tmp_path: Path, live: LiveWorld, pins: MockFactory) -> None:
    from gpiozero import LED

    config = load_config(config_for(tmp_path, live), {})
    held = LED("GPIO17", pin_factory=pins)  # the running daemon holds the lights
    try:
        tech = Tech(pins)
        assert await HardwareTest(config, tech.prompter, pin_factory=pins).run(("lights",)) == 1
        assert "stop the gate first" in tech.lines[0]
    finally:
        held.close()


async def test_a_camera_frame_without_a_code_fails_the_decode(
    tmp_path: Path, live: LiveWorld, pins: MockFactory
) -> None:
    from PIL import Image

    frames = tmp_path / "frames"
    frames.mkdir()
    Image.new("L", (640, 480), 128).save(frames / "grey.png")
    config = load_config(config_for(tmp_path, live, input_kind="images", images=frames), {})
    tech = Tech(pins)
    assert await HardwareTest(config, tech.prompter, pin_factory=pins).run(("camera",)) == 1
    assert tech.status("camera brightness") == "PASS"
    assert tech.status("camera sharpness") == "FAIL"  # a flat grey frame has no edges
    assert tech.status("camera decode") == "FAIL"


def test_gatectl_hwtest_runs_on_mock_pins(tmp_path: Path, live: LiveWorld) -> None:
    config = config_for(tmp_path, live)
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock"}
    gatectl = [sys.executable, "-m", "gate_daemon.cli.gatectl", "hwtest", "--config", str(config)]
    done = subprocess.run(
        [*gatectl, "--only", "lights,relay", "--yes"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "PASS  green light (GPIO17): lit" in done.stdout
    assert "PASS  relay (GPIO24): released and locked" in done.stdout
    assert "Traceback" not in done.stderr
    bad = subprocess.run(
        [*gatectl, "--only", "lamps"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert bad.returncode == 1 and "unknown step lamps" in bad.stderr


def test_every_step_is_listed_in_order() -> None:
    assert STEPS == ("lights", "buzzer", "relay", "sensor", "button", "camera", "scanner")
