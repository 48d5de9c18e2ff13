"""The GPIO pins a gate config names: their spelling, their BCM numbers, one use each.

Pins are written as gpiozero takes them; a pin used by two devices would fight itself,
so every named pin is mapped to its BCM number and checked against the others.
"""

from __future__ import annotations

import re
from typing import Any

from gate_daemon.config.sections import DEFAULT_PINS, GpioPins, SignalsKind, SignalsSection, TurnstileSection
from gate_daemon.config.toml import Checker, KeyPath

#: A gpiozero pin name; no leading zero (gpiozero refuses "GPIO05" at start).
#: gpiozero pin names the config takes: BCM (GPIO17, BCM17, 17) or header (BOARD11, J8:11).
#: wiringPi numbers are left out: they would escape the check that no pin is used twice.
PIN = re.compile(r"(GPIO|BCM|BOARD|J8:)?(0|[1-9][0-9]?)")

#: Physical pin of the 40-pin header -> BCM GPIO number (the same on every 40-pin Pi).
BOARD_TO_BCM = {
    3: 2, 5: 3, 7: 4, 8: 14, 10: 15, 11: 17, 12: 18, 13: 27, 15: 22, 16: 23, 18: 24, 19: 10, 21: 9,
    22: 25, 23: 11, 24: 8, 26: 7, 27: 0, 28: 1, 29: 5, 31: 6, 32: 12, 33: 13, 35: 19, 36: 16, 37: 26,
    38: 20, 40: 21,
}  # fmt: skip


def bcm_number(pin: str) -> int | None:
    """The BCM GPIO number a pin name means, None for a header pin that is not a GPIO."""
    match = PIN.fullmatch(pin)
    if match is None:
        return None
    prefix, number = match.group(1), int(match.group(2))
    if prefix in ("BOARD", "J8:"):
        return BOARD_TO_BCM.get(number)
    return number if number <= 27 else None


def no_shared_pins(check: Checker, signals: SignalsSection, turnstile: TurnstileSection) -> None:
    """A problem for each pin that is not a GPIO, or that another device already uses."""
    used: dict[int, str] = {}
    wired: list[tuple[KeyPath, str | None]] = [
        (("turnstile", "relay"), turnstile.relay),
        (("turnstile", "passage"), turnstile.passage),
        (("turnstile", "button"), turnstile.button),
    ]
    if signals.kind is SignalsKind.GPIO:
        pins = signals.pins
        wired = [
            (("signals", "pins", "green"), pins.green),
            (("signals", "pins", "red"), pins.red),
            (("signals", "pins", "yellow"), pins.yellow),
            (("signals", "pins", "buzzer"), pins.buzzer),
            *wired,
        ]
    for where, pin in wired:
        if pin is None:
            continue
        number = bcm_number(pin)
        if number is None:
            check.problem(where, f"{pin} is not a GPIO pin of the 40-pin header (see hw/README.md)")
            continue
        if number in used:
            check.problem(where, f"{pin} is GPIO{number}, already used by {used[number]}")
            continue
        used[number] = ".".join(str(part) for part in where)


def pin_value(check: Checker, tbl: dict[str, Any], at: KeyPath, key: str, default: str | None) -> str | None:
    """The pin at ``key`` (a bare number means GPIO), or ``default`` when absent or wrong."""
    raw = tbl.get(key)
    if raw is None:
        return default
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = f"GPIO{raw}"
    if not isinstance(raw, str) or not PIN.fullmatch(raw):
        check.problem((*at, key), f"{raw!r} is not a pin (write GPIO17, BOARD11 or 17)")
        return default
    return raw


def gpio_pins(check: Checker, value: object, at: KeyPath) -> GpioPins:
    """The ``[signals.pins]`` table: the lights' and buzzer's pins, defaults for those unnamed."""
    tbl = check.table(value, at, {"green", "red", "yellow", "buzzer"})

    def pin(key: str, default: str | None) -> str | None:
        return pin_value(check, tbl, at, key, default)

    return GpioPins(
        green=pin("green", DEFAULT_PINS.green) or DEFAULT_PINS.green,
        red=pin("red", DEFAULT_PINS.red) or DEFAULT_PINS.red,
        yellow=pin("yellow", DEFAULT_PINS.yellow) or DEFAULT_PINS.yellow,
        buzzer=pin("buzzer", DEFAULT_PINS.buzzer),
    )
