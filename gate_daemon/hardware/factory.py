"""Build the adapters a gate's config names: scan input, decoder, signals, turnstile pins, button.

The daemon, ``gatectl hwtest`` and the benchmarks build their hardware here. Each adapter
module is imported only when the config asks for it, so a gate without GPIO never
imports gpiozero and a laptop never imports picamera2. ``pin_factory`` is gpiozero's (its
``MockFactory`` in tests; None for the board's own). A pin that cannot be claimed is a
``GateError`` naming it; what was claimed before it is released.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO

from gate_daemon.config.sections import GateConfig, InputKind, SignalsKind
from gate_daemon.core.decision import Decision
from gate_daemon.errors import GateError
from gate_daemon.hardware.ports import Contact, Decoder, Relay, ScanInput, Signals


class NullSignals:
    """Signals for ``kind = "none"``: decisions are recorded and returned, not shown."""

    def show(self, decision: Decision) -> None:
        """Show nothing."""

    def service(self, problem: str | None) -> None:
        """Show nothing."""

    async def aclose(self) -> None:
        """Nothing to release."""


def make_signals(config: GateConfig, pin_factory: Any = None) -> Signals:
    """The signals adapter the config asks for."""
    kind = config.signals.kind
    if kind is SignalsKind.CONSOLE:
        from gate_daemon.hardware.console_signals import ConsoleSignals

        return ConsoleSignals(color=config.signals.color)
    if kind is SignalsKind.GPIO:
        from gate_daemon.hardware.gpio_signals import GpioSignals

        try:
            return GpioSignals(
                config.signals.pins,
                config.signals.hold_ms / 1000,
                buzzer=config.signals.buzzer,
                pin_factory=pin_factory,
            )
        except Exception as exc:  # gpiozero raises its own tree for missing or busy pins
            raise GateError(
                f"cannot drive GPIO pins {config.signals.pins}: {type(exc).__name__}: {exc}"
            ) from None
    return NullSignals()


def make_turnstile_pins(config: GateConfig, pin_factory: Any = None) -> tuple[Relay, Contact | None] | None:
    """The turnstile's relay and passage sensor (None without one), when the config wires them."""
    section = config.turnstile
    if section.relay is None:
        return None
    from gate_daemon.hardware.turnstile_pins import GpioContact, GpioRelay

    relay: GpioRelay | None = None
    try:
        relay = GpioRelay(section.relay, section.pulse_ms / 1000, section.relay_active_low, pin_factory)
        passage = None
        if section.passage is not None:
            passage = GpioContact(section.passage, section.passage_active_low, pin_factory)
    except Exception as exc:  # gpiozero raises its own tree for missing or busy pins
        if relay is not None:
            relay.device.close()
        raise GateError(f"cannot drive the turnstile's pins: {type(exc).__name__}: {exc}") from None
    return relay, passage


def make_button(config: GateConfig, pin_factory: Any = None) -> Contact | None:
    """The steward's button, when the config wires one."""
    pin = config.turnstile.button
    if pin is None:
        return None
    from gate_daemon.hardware.turnstile_pins import GpioContact

    try:
        return GpioContact(pin, active_low=True, pin_factory=pin_factory)
    except Exception as exc:  # gpiozero raises its own tree for missing or busy pins
        raise GateError(f"cannot read the button on {pin}: {type(exc).__name__}: {exc}") from None


def make_decoder(config: GateConfig) -> Decoder:
    """The QR decoder the config asks for (``GateError`` when its library is missing)."""
    from gate_daemon.hardware.decoders import make_decoder as choose

    return choose(config.input.decoder)


def make_input(
    config: GateConfig,
    stdin: BinaryIO | None = None,
    *,
    on_unreadable: Callable[[], Awaitable[None]] | None = None,
) -> ScanInput | None:
    """The scan input the config asks for (None for ``kind = "none"``)."""
    kind = config.input.kind
    if kind is InputKind.STDIN:
        from gate_daemon.hardware.stdin_input import StdinInput

        return StdinInput(stdin)
    if kind is InputKind.IMAGES:
        from gate_daemon.hardware.image_folder import ImageFolderInput

        assert config.input.path is not None  # the config requires it for this kind
        if not config.input.path.is_dir():
            raise GateError(f"input.path {config.input.path} is not a folder")
        return ImageFolderInput(
            config.input.path,
            config.input.poll_ms / 1000,
            decoder=make_decoder(config),
            on_unreadable=on_unreadable,
        )
    if kind is InputKind.PICAMERA:
        from gate_daemon.hardware.picamera_input import PicameraInput

        return PicameraInput(config.input.camera, make_decoder(config))
    if kind is InputKind.HID:
        from gate_daemon.hardware.hid_scanner import HidScannerInput

        assert config.input.device is not None  # the config requires it for this kind
        return HidScannerInput(config.input.device, grab=config.input.grab)
    if kind is InputKind.SERIAL:
        from gate_daemon.hardware.serial_scanner import SerialScannerInput

        assert config.input.device is not None  # the config requires it for this kind
        return SerialScannerInput(config.input.device, config.input.baud)
    return None
