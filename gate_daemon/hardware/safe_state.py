"""Drive every output of a gate to its safe level: relay locked, lights and buzzer off.

The unit runs ``gate-daemon safe-state`` after the daemon has stopped for any reason
(``ExecStopPost=``), crashes and ``kill -9`` included. A clean stop already leaves the
outputs off; a killed process does not get to, and a GPIO line released by a dead
process keeps the level it was last driven to, so a relay caught mid-pulse would stay
energised (turnstile free) until the next start. This claims each output pin, drives it
inactive (``initial_value=False``, which honours an active-low relay) and releases it.
"""

from __future__ import annotations

from typing import Any

from gate_daemon.config.sections import GateConfig, SignalsKind


def output_pins(config: GateConfig) -> list[tuple[str, str, bool]]:
    """``(what, pin, active_high)`` for every output the config drives."""
    out: list[tuple[str, str, bool]] = []
    if config.signals.kind is SignalsKind.GPIO:
        pins = config.signals.pins
        out += [("green light", pins.green, True), ("red light", pins.red, True)]
        out.append(("yellow light", pins.yellow, True))
        if pins.buzzer is not None:
            out.append(("buzzer", pins.buzzer, True))
    relay = config.turnstile.relay
    if relay is not None:
        out.append(("turnstile relay", relay, not config.turnstile.relay_active_low))
    return out


def make_safe(config: GateConfig, pin_factory: Any = None) -> list[str]:
    """Drive each output inactive; one line per output saying what was done or what failed."""
    report: list[str] = []
    outputs = output_pins(config)
    if not outputs:
        return report
    from gpiozero import OutputDevice

    for what, pin, active_high in outputs:
        try:
            device = OutputDevice(pin, active_high=active_high, initial_value=False, pin_factory=pin_factory)
        except Exception as exc:  # a busy or missing pin: say so, and do the others
            report.append(f"{what} ({pin}): FAILED: {type(exc).__name__}: {exc}")
            continue
        device.close()
        report.append(f"{what} ({pin}): off")
    return report
