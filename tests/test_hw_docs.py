"""The wiring docs in hw/ agree with the code, the shipped config and the Pi's header.

A venue tech wires a gate from hw/README.md alone, so its pin map, its config
snippets, the udev rule and the links between the docs are checked here against
``DEFAULT_PINS``, ``config/gate.example.toml``, the config loader and gpiozero's
own header data for the Pi 4 and Pi 5.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from gpiozero.pins.pi import PiBoardInfo

from gate_daemon.config.load import load_config
from gate_daemon.config.sections import DEFAULT_PINS
from gate_daemon.core.reasons import Outcome
from gate_daemon.hardware.gpio_signals import BEEPS, OUT_OF_SERVICE_BLINK, TONES

ROOT = Path(__file__).resolve().parents[1]
HW = ROOT / "hw"
README = HW / "README.md"
RULES = HW / "99-gate-scanner.rules"
EXAMPLE = ROOT / "config" / "gate.example.toml"
DOCS = sorted(HW.glob("*.md"))

#: Raspberry Pi 4 Model B 4GB and Raspberry Pi 5 4GB, by revision code.
BOARDS = {"Pi 4": 0xC03114, "Pi 5": 0xC04170}
SIGNAL_KEYS = ("green", "red", "yellow", "buzzer")
TURNSTILE_KEYS = ("relay", "passage", "button")
#: The project's turnstile pins, used only while the example config has no [turnstile] section.
TURNSTILE_DEFAULTS = {"relay": 24, "passage": 25, "button": 5}
#: What a config snippet in the docs needs around it to be a whole config file.
TABLE_HEAD = "| function | config key | BCM | physical pin |"
SHOWS_HEAD = "| event | light | plain buzzer | tonal buzzer | relay |"
COUNTS = {"one": 1, "two": 2, "three": 3}
#: A turnstile pin commented out in the example config (``# relay = "GPIO24"``).
COMMENTED_PIN = re.compile(r'^#\s*(relay|passage|button)\s*=\s*"([^"]+)"', flags=re.MULTILINE)
SNIPPET_HEADER = """\
[gate]
id = "doc"
event = "doc"
state_dir = "state"

[manifest]
path = "manifest.gdm"
trusted_keys = ["signer.pub"]

"""


@dataclass(frozen=True, slots=True)
class PinRow:
    """One row of the pin map table in hw/README.md."""

    function: str
    key: str | None
    alternative: bool
    bcm: int | None
    physical: tuple[int, ...]
    pull: str | None


def pin_number(name: str) -> int:
    """The BCM number in a gpiozero pin name written as GPIO17, BCM17 or 17."""
    match = re.fullmatch(r"(?:GPIO|BCM)?(\d{1,2})", name)
    assert match, f"{name!r} is not a BCM pin name"
    return int(match.group(1))


def without_fences(text: str) -> str:
    """Markdown text with its fenced code blocks removed."""
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def code_blocks(text: str, language: str) -> list[str]:
    """The bodies of the fenced code blocks marked with ``language``."""
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def pin_map() -> list[PinRow]:
    """The rows of the pin map table."""
    lines = README.read_text().splitlines()
    head = next((i for i, line in enumerate(lines) if line.startswith(TABLE_HEAD)), None)
    assert head is not None, "hw/README.md has no pin map table"
    rows = []
    for line in lines[head + 2 :]:
        if not line.startswith("|"):
            break
        function, key, bcm, physical, pull, _ = (cell.strip() for cell in line.strip("| ").split(" | "))
        named = re.search(r"`([a-z_.]+)`", key)
        rows.append(
            PinRow(
                function=function,
                key=named.group(1) if named else None,
                alternative="relay_active_low = true" in key,
                bcm=None if bcm == "—" else pin_number(bcm),
                physical=tuple(int(n) for n in re.findall(r"\d+", physical)),
                pull=None if pull == "—" else pull,
            )
        )
    return rows


def documented_pins() -> dict[str, int]:
    """BCM number by config key (``signals.pins.green``), from the table's main rows."""
    return {row.key: row.bcm for row in pin_map() if row.key and not row.alternative and row.bcm is not None}


def example_turnstile_pins() -> dict[str, int] | None:
    """The example config's turnstile pins, set or commented out; None without a [turnstile] section."""
    text = EXAMPLE.read_text()
    section = re.search(r"^\[turnstile\][^\n]*\n(.*?)(?=^\[|\Z)", text, flags=re.MULTILINE | re.DOTALL)
    if section is None:
        return None
    table = tomllib.loads(text).get("turnstile", {})
    pins = {key: pin_number(str(table[key])) for key in TURNSTILE_KEYS if key in table}
    for key, value in COMMENTED_PIN.findall(section.group(1)):
        pins.setdefault(key, pin_number(value))
    return pins


def test_the_pin_map_has_every_configurable_pin_once() -> None:
    rows = pin_map()
    main = [row.key for row in rows if row.key and not row.alternative]
    expected = [f"signals.pins.{k}" for k in SIGNAL_KEYS] + [f"turnstile.{k}" for k in TURNSTILE_KEYS]
    assert sorted(main) == sorted(expected)
    assert [row.key for row in rows if row.alternative] == ["turnstile.relay"]
    assert {row.function for row in rows if row.key is None} == {"3V3", "5V", "GND"}


def test_the_pin_map_matches_the_code_defaults() -> None:
    pins = documented_pins()
    for key in SIGNAL_KEYS:
        default = getattr(DEFAULT_PINS, key)
        assert default is not None
        assert pins[f"signals.pins.{key}"] == pin_number(default), key


def test_the_pin_map_matches_the_example_config() -> None:
    pins = documented_pins()
    example = tomllib.loads(EXAMPLE.read_text())
    for key in SIGNAL_KEYS:
        assert pins[f"signals.pins.{key}"] == pin_number(example["signals"]["pins"][key]), key
    turnstile = example_turnstile_pins()
    if turnstile is None:
        turnstile = TURNSTILE_DEFAULTS  # until config/gate.example.toml documents [turnstile]
    assert {key: pins[f"turnstile.{key}"] for key in TURNSTILE_KEYS} == turnstile


@pytest.mark.parametrize("board", BOARDS)
def test_the_physical_pins_are_the_boards(board: str) -> None:
    header = PiBoardInfo.from_revision(BOARDS[board]).headers["J8"].pins
    for row in pin_map():
        if row.bcm is not None:
            assert row.physical == (header_pin(header, f"GPIO{row.bcm}"),), row.function
        else:
            rail = tuple(sorted(n for n, pin in header.items() if pin.name == row.function))
            assert row.physical == rail, row.function


def header_pin(header: dict[int, object], name: str) -> int:
    """The physical pin number of a named pin on the 40-pin header."""
    numbers = [n for n, pin in header.items() if getattr(pin, "name", None) == name]
    assert len(numbers) == 1, f"{name} is not on the header"
    return numbers[0]


def test_the_documented_pulls_keep_the_relay_off_at_power_on() -> None:
    rows = pin_map()
    for row in rows:
        if row.bcm is not None:
            # The SoCs pull GPIO0-8 up and GPIO9-27 down at power-on.
            assert row.pull == ("up" if row.bcm <= 8 else "down"), row.function
    relay = next(row for row in rows if row.key == "turnstile.relay" and not row.alternative)
    active_low = next(row for row in rows if row.alternative)
    assert relay.pull == "down", "an active-high relay must sit on a pin pulled down at power-on"
    assert active_low.pull == "up", "an active-low relay must sit on a pin pulled up at power-on"


def test_the_default_config_snippet_matches_the_pin_map() -> None:
    blocks = code_blocks(README.read_text(), "toml")
    defaults = tomllib.loads(next(b for b in blocks if "[signals.pins]" in b))
    pins = documented_pins()
    for key in SIGNAL_KEYS:
        assert pin_number(defaults["signals"]["pins"][key]) == pins[f"signals.pins.{key}"], key
    for key in TURNSTILE_KEYS:
        assert pin_number(defaults["turnstile"][key]) == pins[f"turnstile.{key}"], key
    assert defaults["turnstile"]["relay_active_low"] is False
    active_low = tomllib.loads(next(b for b in blocks if "relay_active_low = true" in b))
    alternative = next(row for row in pin_map() if row.alternative)
    assert pin_number(active_low["turnstile"]["relay"]) == alternative.bcm


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_config_snippet_loads(doc: Path, tmp_path: Path) -> None:
    blocks = code_blocks(doc.read_text(), "toml")
    for index, block in enumerate(blocks):
        path = tmp_path / f"snippet-{index}.toml"
        path.write_text(SNIPPET_HEADER + block)
        load_config(path, environ={})  # raises SourceError naming the key and line


def shows_table() -> dict[str, list[str]]:
    """The rows of the "What the gate shows" table, by their first cell."""
    lines = README.read_text().splitlines()
    head = next((i for i, line in enumerate(lines) if line.startswith(SHOWS_HEAD)), None)
    assert head is not None, "hw/README.md has no table of what the gate shows"
    rows = {}
    for line in lines[head + 2 :]:
        if not line.startswith("|"):
            break
        event, *cells = (cell.strip() for cell in line.strip("| ").split(" | "))
        rows[event] = cells
    return rows


def count_in(cell: str) -> int:
    """The number a cell spells out first ("two short beeps", "rising two-note chirp")."""
    found = re.search(rf"\b({'|'.join(COUNTS)})\b", cell)
    assert found, f"{cell!r} says no number"
    return COUNTS[found.group(1)]


@pytest.mark.parametrize("outcome", list(Outcome), ids=lambda o: o.value)
def test_the_documented_sounds_are_the_signals(outcome: Outcome) -> None:
    _, plain, tonal, _ = shows_table()[outcome.value]
    on, _, count = BEEPS[outcome]
    assert count_in(plain) == count, plain
    assert [float(s) for s in re.findall(r"(\d+(?:\.\d+)?) s\b", plain)] == [on], plain
    notes = [note for note, _ in TONES[outcome] if note is not None]
    assert count_in(tonal) == len(notes), tonal
    assert re.findall(r"\b[A-G]#?\d\b", tonal) == list(dict.fromkeys(notes)), tonal


def test_the_documented_out_of_service_blink_is_the_signals() -> None:
    light = next(cells[0] for event, cells in shows_table().items() if event.startswith("out of service"))
    assert f"{OUT_OF_SERVICE_BLINK:g} s on, {OUT_OF_SERVICE_BLINK:g} s off" in light


# --- the udev rule ---------------------------------------------------------------------------

TOKEN = re.compile(r'(?P<key>[A-Z_]+)(?:\{(?P<attr>[^{}"]+)\})?(?P<op>==|!=|\+=|-=|:=|=)"(?P<value>[^"]*)"')
MATCH_ONLY = {"ACTION", "DEVPATH", "KERNEL", "KERNELS", "SUBSYSTEM", "SUBSYSTEMS", "DRIVER", "DRIVERS"}
MATCH_ONLY |= {"ATTRS", "TAGS", "TEST", "RESULT"}
ASSIGN_ONLY = {"OWNER", "GROUP", "MODE", "RUN", "LABEL", "GOTO", "IMPORT", "OPTIONS", "SECLABEL"}
EITHER = {"NAME", "SYMLINK", "ATTR", "SYSCTL", "ENV", "TAG", "CONST", "PROGRAM"}


@dataclass(frozen=True, slots=True)
class Token:
    """One ``KEY{attr}OP"value"`` of a udev rule."""

    key: str
    attr: str | None
    op: str
    value: str

    @property
    def matches(self) -> bool:
        return self.op in {"==", "!="}


def split_commas(line: str) -> list[str]:
    """A rule line's comma-separated parts; commas inside double quotes do not split."""
    parts, current, quoted = [], [], False
    for char in line:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def udev_rules() -> list[list[Token]]:
    """Every rule in the rules file, as its tokens."""
    rules = []
    text = RULES.read_text().replace("\\\n", "")
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tokens = []
        for part in split_commas(line):
            found = TOKEN.fullmatch(part.strip())
            assert found, f'line {number}: {part.strip()!r} is not KEY=="...", KEY="..." or KEY+="..."'
            tokens.append(Token(found["key"], found["attr"], found["op"], found["value"]))
        rules.append(tokens)
    return rules


def assigned(rule: list[Token], key: str) -> list[str]:
    """The values a rule assigns to ``key``."""
    return [t.value for t in rule if t.key == key and not t.matches]


def test_the_udev_rules_parse_as_key_operator_value_tokens() -> None:
    rules = udev_rules()
    assert len(rules) == 2
    for rule in rules:
        for token in rule:
            assert token.key in MATCH_ONLY | ASSIGN_ONLY | EITHER, token
            if token.key in MATCH_ONLY:
                assert token.matches, f"{token.key} can only be matched"
            if token.key in ASSIGN_ONLY:
                assert not token.matches, f"{token.key} can only be assigned"
            if token.key in {"ATTR", "ATTRS", "ENV", "SYSCTL"}:
                assert token.attr, f"{token.key} needs {{name}}"
        assert any(t.matches for t in rule) and not all(t.matches for t in rule)
        assert assigned(rule, "GROUP") and assigned(rule, "SYMLINK")
        assert [re.fullmatch(r"0[0-7]{3}", mode) is not None for mode in assigned(rule, "MODE")] == [True]


def test_the_udev_rules_make_the_documented_device_links() -> None:
    hid, serial = udev_rules()
    assert ("SUBSYSTEM", "input") in {(t.key, t.value) for t in hid if t.matches}
    assert assigned(hid, "SYMLINK") == ["gate-scanner"]
    assert assigned(hid, "GROUP") == ["input"]
    assert {t.attr: t.value for t in hid if t.key == "ENV" and not t.matches}["LIBINPUT_IGNORE_DEVICE"] == "1"
    assert ("SUBSYSTEM", "tty") in {(t.key, t.value) for t in serial if t.matches}
    assert assigned(serial, "SYMLINK") == ["gate-scanner-serial"]
    assert assigned(serial, "GROUP") == ["dialout"]
    for rule in (hid, serial):
        ids = {t.attr for t in rule if t.key == "ATTRS" and t.matches}
        assert {"idVendor", "idProduct"} <= ids
    made = {f"/dev/{link}" for rule in (hid, serial) for link in assigned(rule, "SYMLINK")}
    for doc in DOCS:
        named = set(re.findall(r"/dev/gate-scanner[\w-]*", doc.read_text()))
        assert named <= made, f"{doc.name} names a device link no rule makes: {named - made}"


# --- links -----------------------------------------------------------------------------------


def anchors(doc: Path) -> set[str]:
    """The heading anchors GitHub makes for a Markdown file."""
    headings = re.findall(r"^#{1,6} (.+)$", without_fences(doc.read_text()), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_points_at_something_that_exists(doc: Path) -> None:
    links = re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", without_fences(doc.read_text()))
    assert links, f"{doc.name} links to nothing"
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue  # http:, https:, mailto:
        target, _, fragment = link.partition("#")
        path = (doc.parent / target).resolve() if target else doc
        assert path.exists(), f"{doc.name}: {link} points at a missing file"
        if fragment and path.suffix == ".md":
            assert fragment in anchors(path), f"{doc.name}: {link} points at a missing heading"
