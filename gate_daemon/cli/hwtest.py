"""``gatectl hwtest``: walk a tech through the gate's hardware, one device at a time.

Each step prints one line: ``PASS``, ``FAIL`` or ``SKIP``, the device, and what was seen.
Lights and buzzer need a person to look and listen, so the step asks; the relay step
asks before it releases the turnstile; the sensor and the button steps wait for the
tech to turn the turnstile or press the button; the camera step captures one frame and
reports its brightness, its sharpness and whether a QR code in view decodes; a scanner
step waits for one code. The pins come from the gate's config; the daemon must be
stopped first (it holds them). Off the Pi, ``GPIOZERO_PIN_FACTORY=mock`` runs it on
gpiozero's mock pins.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gate_daemon.config.sections import GateConfig, InputKind, SignalsKind
from gate_daemon.core.decision import Decision
from gate_daemon.core.reasons import Reason
from gate_daemon.hardware.ports import Frame

#: Every step, in the order they run.
STEPS = ("lights", "buzzer", "relay", "sensor", "button", "camera", "scanner")
#: A frame's mean luminance outside this range is too dark or too bright to read codes well.
BRIGHTNESS_RANGE = (40.0, 220.0)
#: Below this sharpness score the frame is blurred (focus, or a dirty lens).
MIN_SHARPNESS = 8.0


@dataclass
class Prompter:
    """How the test talks to the tech: ``say`` a line, ``ask`` a yes/no question."""

    say: Callable[[str], None]
    ask: Callable[[str], bool]


@dataclass
class HardwareTest:
    """The walk-through for one gate config; ``run`` returns 0 when nothing failed."""

    config: GateConfig
    prompter: Prompter
    pin_factory: Any = None
    wait: float = 20.0
    open_camera: Callable[[int], Any] | None = None
    results: list[tuple[str, str, str]] = field(default_factory=list)

    def _line(self, status: str, what: str, detail: str) -> None:
        self.results.append((status, what, detail))
        self.prompter.say(f"{status:<4}  {what}: {detail}")

    async def run(self, steps: tuple[str, ...] = STEPS) -> int:
        """Run ``steps`` in order; the exit status (1 if any step failed)."""
        table: dict[str, Callable[[], Awaitable[None]]] = {
            "lights": self.lights,
            "buzzer": self.buzzer,
            "relay": self.relay,
            "sensor": self.sensor,
            "button": self.button,
            "camera": self.camera,
            "scanner": self.scanner,
        }
        for step in steps:
            try:
                await table[step]()
            except Exception as exc:  # one broken device must not hide the others
                hint = ""
                if "in use" in str(exc).lower() or "busy" in str(exc).lower():
                    hint = " (stop the gate first: sudo systemctl stop gate-daemon)"
                self._line("FAIL", step, f"{type(exc).__name__}: {exc}{hint}")
        failed = sum(1 for status, _, _ in self.results if status == "FAIL")
        passed = sum(1 for status, _, _ in self.results if status == "PASS")
        self.prompter.say(
            f"hwtest: {passed} passed, {failed} failed, {len(self.results) - passed - failed} skipped"
        )
        return 1 if failed else 0

    # ------------------------------------------------------------------ outputs

    def _signals(self) -> Any:
        from gate_daemon.hardware.gpio_signals import GpioSignals

        cfg = self.config.signals
        return GpioSignals(cfg.pins, hold=1.5, buzzer=cfg.buzzer, pin_factory=self.pin_factory)

    async def lights(self) -> None:
        """Each light on in turn; the tech says whether it lit."""
        if self.config.signals.kind is not SignalsKind.GPIO:
            self._line("SKIP", "lights", f'signals.kind is "{self.config.signals.kind.value}", not "gpio"')
            return
        signals = self._signals()
        try:
            for name in ("green", "red", "yellow"):
                led = getattr(signals, name)
                pin = getattr(self.config.signals.pins, name)
                led.on()
                seen = self.prompter.ask(f"Is the {name.upper()} light on (and only it)?")
                led.off()
                self._line("PASS" if seen else "FAIL", f"{name} light ({pin})", "lit" if seen else "not seen")
        finally:
            await signals.aclose()

    async def buzzer(self) -> None:
        """Each outcome's sound in turn; the tech says whether they heard four distinct patterns."""
        pins = self.config.signals.pins
        if self.config.signals.kind is not SignalsKind.GPIO or pins.buzzer is None:
            self._line("SKIP", "buzzer", "no buzzer configured")
            return
        signals = self._signals()
        try:
            for reason in (Reason.OK, Reason.UNKNOWN_TICKET, Reason.ALREADY_USED, Reason.TOO_EARLY):
                decision = Decision(reason, "hwtest")
                self.prompter.say(f"      playing {decision.outcome.value}")
                signals.show(decision)
                await asyncio.sleep(1.2)
            heard = self.prompter.ask("Did you hear four different sounds, one per outcome?")
            what = f"buzzer ({pins.buzzer}, {self.config.signals.buzzer.value})"
            self._line("PASS" if heard else "FAIL", what, "heard" if heard else "not heard")
        finally:
            await signals.aclose()

    async def relay(self) -> None:
        """Pulse the relay, after asking: the turnstile really unlocks."""
        section = self.config.turnstile
        if section.relay is None:
            self._line("SKIP", "relay", "no turnstile.relay configured")
            return
        from gate_daemon.hardware.turnstile_pins import GpioRelay

        what = f"relay ({section.relay}{', active low' if section.relay_active_low else ''})"
        if not self.prompter.ask(f"Release the turnstile now, for {section.pulse_ms} ms?"):
            self._line("SKIP", what, "not released (the tech said no)")
            return
        relay = GpioRelay(section.relay, section.pulse_ms / 1000, section.relay_active_low, self.pin_factory)
        try:
            relay.pulse()
            await asyncio.sleep(section.pulse_ms / 1000 + 0.2)
            released = self.prompter.ask("Did the turnstile unlock (and lock again)?")
        finally:
            await relay.aclose()
        self._line(
            "PASS" if released else "FAIL", what, "released and locked" if released else "no release seen"
        )

    # ------------------------------------------------------------------ inputs

    async def _contact(self, what: str, pin: str | None, active_low: bool, prompt: str) -> None:
        if pin is None:
            self._line("SKIP", what, f"no turnstile.{what} configured")
            return
        from gate_daemon.hardware.turnstile_pins import GpioContact

        contact = GpioContact(pin, active_low, self.pin_factory)
        closed = asyncio.Event()
        try:
            if contact.closed:
                self._line("FAIL", f"{what} ({pin})", "closed before anything happened: wiring or polarity")
                return
            contact.listen(closed.set)
            self.prompter.say(f"      {prompt} (waiting {self.wait:.0f} s)")
            started = time.monotonic()
            try:
                await asyncio.wait_for(closed.wait(), timeout=self.wait)
            except TimeoutError:
                self._line("FAIL", f"{what} ({pin})", f"nothing within {self.wait:.0f} s")
                return
            self._line("PASS", f"{what} ({pin})", f"closed after {time.monotonic() - started:.1f} s")
        finally:
            await contact.aclose()

    async def sensor(self) -> None:
        """Wait for the passage sensor to see the turnstile turn."""
        section = self.config.turnstile
        await self._contact(
            "passage", section.passage, section.passage_active_low, "Push the turnstile through one turn"
        )

    async def button(self) -> None:
        """Wait for the steward's button."""
        await self._contact("button", self.config.turnstile.button, True, "Press the steward button")

    async def camera(self) -> None:
        """One frame: brightness, sharpness, and whether a QR code in view decodes."""
        kind = self.config.input.kind
        if kind not in (InputKind.PICAMERA, InputKind.IMAGES):
            self._line("SKIP", "camera", f'input.kind is "{kind.value}"')
            return
        if not self.prompter.ask("Hold a QR code (a ticket, or any code) in the scan window. Ready?"):
            self._line("SKIP", "camera", "no code held up (the tech said no)")
            return
        frame = await asyncio.to_thread(self._frame)
        if frame is None:
            self._line("FAIL", "camera", f"no image in {self.config.input.path}")
            return
        from gate_daemon.hardware.factory import make_decoder
        from gate_daemon.hardware.frame_quality import brightness, sharpness

        bright, sharp = brightness(frame), sharpness(frame)
        codes = make_decoder(self.config).decode(frame)
        low, high = BRIGHTNESS_RANGE
        size = f"{frame.width}x{frame.height}"
        self._line(
            "PASS" if low <= bright <= high else "FAIL",
            "camera brightness",
            f"{bright:.0f} of 255 in a {size} frame "
            f"(good: {low:.0f}..{high:.0f}; adjust the light or exposure_us)",
        )
        self._line(
            "PASS" if sharp >= MIN_SHARPNESS else "FAIL",
            "camera sharpness",
            f"{sharp:.1f} (good: {MIN_SHARPNESS:.0f} or more; check focus, focus_cm, the lens)",
        )
        # A code's text may be a ticket (a bearer secret): say only that it decoded.
        self._line(
            "PASS" if codes else "FAIL",
            "camera decode",
            f"{len(codes)} QR code(s) read" if codes else "no QR code read: check distance, focus and glare",
        )

    def _frame(self) -> Frame | None:
        if self.config.input.kind is InputKind.PICAMERA:
            from gate_daemon.hardware.picamera_input import capture_frame

            return capture_frame(self.config.input.camera, open_camera=self.open_camera)
        folder = self.config.input.path
        assert folder is not None  # the config requires it for images
        images = sorted(
            (p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
            key=lambda p: p.stat().st_mtime,
        )
        if not images:
            return None
        from PIL import Image

        from gate_daemon.hardware.decoders import frame_from_image

        with Image.open(images[-1]) as image:
            return frame_from_image(image)

    async def scanner(self) -> None:
        """Wait for one code from a HID or serial scanner."""
        kind = self.config.input.kind
        if kind not in (InputKind.HID, InputKind.SERIAL):
            self._line("SKIP", "scanner", f'input.kind is "{kind.value}"')
            return
        from gate_daemon.hardware.factory import make_input

        source = make_input(self.config)
        assert source is not None
        what = f"{kind.value} scanner ({self.config.input.device})"
        self.prompter.say(f"      scan any barcode or QR code (waiting {self.wait:.0f} s)")
        try:
            payload = await asyncio.wait_for(_first(source.payloads()), timeout=self.wait)
        except TimeoutError:
            self._line("FAIL", what, f"nothing read within {self.wait:.0f} s")
            return
        finally:
            await source.aclose()
        self._line("PASS", what, f"read a code of {len(payload)} characters")


async def _first(payloads: Any) -> str:
    async for payload in payloads:
        return str(payload)
    raise TimeoutError


def console_prompter(assume_yes: bool) -> Prompter:
    """Ask on the terminal; with ``assume_yes``, every question is answered yes."""

    def ask(question: str) -> bool:
        if assume_yes:
            print(f"      {question} yes (--yes)")
            return True
        with contextlib.suppress(EOFError):
            return input(f"      {question} [y/N] ").strip().lower() in {"y", "yes"}
        return False

    return Prompter(say=lambda line: print(line, flush=True), ask=ask)


def run_hwtest(config: GateConfig, steps: tuple[str, ...], assume_yes: bool, wait: float) -> int:
    """``gatectl hwtest``: the walk-through on this machine's pins."""
    test = HardwareTest(config, console_prompter(assume_yes), wait=wait)
    print(f"hwtest: gate {config.gate.id} from {config.source}; steps: {', '.join(steps)}")
    return asyncio.run(test.run(steps))
