"""The gate config file: the shipped example loads, and every mistake names file, line and key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gate_daemon.config.load import load_config
from gate_daemon.config.sections import (
    DEFAULT_PINS,
    BuzzerKind,
    CameraSettings,
    DecoderKind,
    GateConfig,
    InputKind,
    SignalsKind,
    TurnstileSection,
)
from gate_daemon.core.decision import ScanKind
from gate_daemon.errors import SourceError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "gate.example.toml"
SYSTEMD = {
    "CREDENTIALS_DIRECTORY": "/run/credentials/gate-daemon.service",
    "STATE_DIRECTORY": "/var/lib/gate-daemon",
    "RUNTIME_DIRECTORY": "/run/gate-daemon",
}

VALID = """\
# A gate for the tests.
[gate]
id = "north-1"
event = "demo-2026"
zone = "floor"
state_dir = "state"
mode = "entry"
repeat_window_ms = 3000

[manifest]
path = "incoming/manifest.gdm"
trusted_keys = ["keys/signer.pub"]
poll_ms = 2000

[input]
kind = "stdin"
poll_ms = 100

[signals]
kind = "console"
color = "never"
hold_ms = 1500

[signals.pins]
green = "GPIO17"
red = 27
yellow = "BOARD15"

[control]
socket = "run/control.sock"
"""


def write(folder: Path, text: str) -> Path:
    path = folder / "gate.toml"
    path.write_text(text)
    return path


def line_of(text: str, marker: str) -> int:
    """The 1-based line of the one line of ``text`` that contains ``marker``."""
    lines = [n for n, line in enumerate(text.splitlines(), start=1) if marker in line]
    assert len(lines) == 1, (marker, lines)
    return lines[0]


def problems_of(path: Path, environ: dict[str, str] | None = None) -> SourceError:
    with pytest.raises(SourceError) as caught:
        load_config(path, environ if environ is not None else SYSTEMD)
    return caught.value


# ------------------------------------------------------------------ what loads


def test_the_shipped_example_loads_with_systemds_directories() -> None:
    config = load_config(EXAMPLE, SYSTEMD)
    assert config.source == EXAMPLE
    assert (config.gate.id, config.gate.event, config.gate.zone, config.gate.session) == (
        "north-1",
        "demo-2026",
        "floor",
        None,
    )
    assert config.gate.kind is ScanKind.ENTRY
    assert config.gate.repeat_window_ms == 3000
    assert config.gate.state_dir == Path("/var/lib/gate-daemon")
    assert config.ledger_path == Path("/var/lib/gate-daemon/ledger.sqlite")
    assert config.active_manifest_path == Path("/var/lib/gate-daemon/manifest.active")
    assert config.manifest.path == Path("/var/lib/gate-daemon/incoming/manifest.gdm")
    assert config.manifest.trusted_keys == (Path("/run/credentials/gate-daemon.service/manifest-signer.pub"),)
    assert config.manifest.poll_ms == 2000
    assert config.input.kind is InputKind.PICAMERA
    assert config.input.decoder is DecoderKind.AUTO
    assert config.input.camera == CameraSettings()  # the example spells out the defaults
    assert config.input.camera.lens_position == 4.0  # 25 cm
    assert config.signals.kind is SignalsKind.GPIO
    assert config.signals.pins == DEFAULT_PINS
    assert config.signals.buzzer is BuzzerKind.PLAIN
    assert config.turnstile == TurnstileSection(
        relay="GPIO24", passage="GPIO25", button="GPIO5", button_operator="steward"
    )
    assert config.control.socket == Path("/run/gate-daemon/control.sock")


def test_the_example_without_systemds_directories_names_each_use() -> None:
    error = problems_of(EXAMPLE, {})
    text = EXAMPLE.read_text()
    rendered = str(error)
    for key, marker in [
        ("gate.state_dir", "state_dir ="),
        ("manifest.trusted_keys[0]", "trusted_keys ="),
        ("control.socket", "socket ="),
    ]:
        assert f"{EXAMPLE}:{line_of(text, marker)}: {key}: " in rendered
    assert len(error.problems) == 3


def test_relative_paths_resolve_against_the_configs_folder(tmp_path: Path) -> None:
    folder = tmp_path / "etc" / "gate-daemon"
    folder.mkdir(parents=True)
    text = VALID.replace('kind = "stdin"', 'kind = "images"\npath = "frames"')
    config = load_config(write(folder, text), {})
    assert config.gate.state_dir == folder / "state"
    assert config.manifest.path == folder / "incoming/manifest.gdm"
    assert config.manifest.trusted_keys == (folder / "keys/signer.pub",)
    assert config.input.path == folder / "frames"
    assert config.control.socket == folder / "run/control.sock"
    assert config.signals.pins.red == "GPIO27"  # a bare number is a BCM number
    assert config.signals.pins.yellow == "BOARD15"
    assert config.signals.pins.buzzer == DEFAULT_PINS.buzzer


def test_defaults_fill_what_is_left_out(tmp_path: Path) -> None:
    minimal = '[gate]\nid = "g"\nevent = "e"\nstate_dir = "/srv/gate"\n[manifest]\npath = "m.gdm"\n'
    minimal += 'trusted_keys = ["a.pub", "b.pub"]\n'
    config = load_config(write(tmp_path, minimal), {})
    assert isinstance(config, GateConfig)
    assert config.gate.zone is None and config.gate.session is None
    assert config.gate.kind is ScanKind.ENTRY
    assert config.input.kind is InputKind.NONE and config.input.path is None
    assert config.signals.kind is SignalsKind.CONSOLE
    assert config.signals.color == "auto"
    assert config.control.socket == Path("/srv/gate/control.sock")
    assert config.manifest.trusted_keys == (tmp_path / "a.pub", tmp_path / "b.pub")


def test_systemd_may_list_several_directories(tmp_path: Path) -> None:
    text = VALID.replace('state_dir = "state"', 'state_dir = "${STATE_DIRECTORY}"')
    config = load_config(write(tmp_path, text), {"STATE_DIRECTORY": "/var/lib/a:/var/lib/b"})
    assert config.gate.state_dir == Path("/var/lib/a")


# ------------------------------------------------------------------ each mistake, named

# (replace this, with this, key named, words in the message, the line's marker; None: the table header)
MISTAKES: dict[str, tuple[str, str, str, str, str | None]] = {
    "unknown-key": (
        'mode = "entry"',
        'mode = "entry"\ncolour = "red"',
        "gate.colour",
        "unknown key (allowed here: confirm_timeout_ms, decision, event, id, mode, operator_idle_s,"
        " override_window_s, repeat_window_ms, session, state_dir, zone)",
        "colour =",
    ),
    "typod-section": (
        "[signals]\n",
        "[signal]\n",
        "signal",
        "unknown key (allowed here: control, gate, input, lan, manifest, screen, signals, turnstile, "
        "upstream)",
        "[signal]",
    ),
    "wrong-type": (
        "repeat_window_ms = 3000",
        'repeat_window_ms = "3000"',
        "gate.repeat_window_ms",
        "expected an integer, got a string",
        "repeat_window_ms",
    ),
    "boolean-for-number": (
        "hold_ms = 1500",
        "hold_ms = true",
        "signals.hold_ms",
        "expected an integer, got a boolean",
        "hold_ms",
    ),
    "out-of-bounds": (
        "poll_ms = 2000",
        "poll_ms = 5",
        "manifest.poll_ms",
        "5 is outside 100..3600000",
        "poll_ms = 5",
    ),
    "bad-mode": (
        'mode = "entry"',
        'mode = "both"',
        "gate.mode",
        '\'both\' must be "entry" or "exit"',
        "mode =",
    ),
    "bad-input-kind": (
        'kind = "stdin"',
        'kind = "camera"',
        "input.kind",
        "'camera' is not one of",
        'kind = "camera"',
    ),
    "hid-without-device": (
        'kind = "stdin"',
        'kind = "hid"',
        "input.device",
        'missing (required for kind = "hid"',
        "[input]",
    ),
    "odd-baud": (
        'kind = "stdin"',
        'kind = "serial"\ndevice = "/dev/ttyACM0"\nbaud = 9601',
        "input.baud",
        "9601 is not a serial speed",
        "baud =",
    ),
    "unknown-decoder": (
        'kind = "stdin"',
        'kind = "stdin"\ndecoder = "zbarr"',
        "input.decoder",
        "not one of",
        "decoder =",
    ),
    "camera-focus": (
        "poll_ms = 100",
        'poll_ms = 100\n\n[input.camera]\nfocus = "manual"',
        "input.camera.focus",
        'must be "continuous" or "fixed"',
        "focus =",
    ),
    "camera-gain-below-one": (
        "poll_ms = 100",
        "poll_ms = 100\n\n[input.camera]\ngain = 0.5",
        "input.camera.gain",
        "must be 0 (automatic) or 1.0..16.0",
        "gain =",
    ),
    "pin-used-twice": (
        "[control]\n",
        '[turnstile]\nrelay = "GPIO24"\npassage = "BOARD18"\n\n[control]\n',
        "turnstile.passage",
        "BOARD18 is GPIO24, already used by turnstile.relay",
        "passage =",
    ),
    "wiringpi-number": (
        "[control]\n",
        '[turnstile]\nrelay = "WPI0"\n\n[control]\n',
        "turnstile.relay",
        "'WPI0' is not a pin",
        "relay =",
    ),
    "lan-listen-without-port": (
        "[control]\n",
        '[lan]\nlisten = "0.0.0.0"\n\n[control]\n',
        "lan.listen",
        "must be HOST:PORT",
        "listen =",
    ),
    "lan-port-out-of-range": (
        "[control]\n",
        '[lan]\nlisten = "[::]:70000"\n\n[control]\n',
        "lan.listen",
        "must be HOST:PORT",
        "listen =",
    ),
    "header-pin-not-gpio": (
        "[control]\n",
        '[turnstile]\nrelay = "BOARD1"\n\n[control]\n',
        "turnstile.relay",
        "BOARD1 is not a GPIO pin",
        "relay =",
    ),
    "pin-with-a-leading-zero": (
        "[control]\n",
        '[turnstile]\nrelay = "GPIO05"\n\n[control]\n',
        "turnstile.relay",
        "'GPIO05' is not a pin",
        "relay =",
    ),
    "passage-without-relay": (
        "[control]\n",
        '[turnstile]\npassage = "GPIO25"\n\n[control]\n',
        "turnstile.passage",
        "a passage sensor needs a relay",
        "passage =",
    ),
    "pass-timeout-shorter-than-the-pulse": (
        "[control]\n",
        '[turnstile]\nrelay = "GPIO24"\npulse_ms = 3000\npassage = "GPIO25"\n'
        "pass_timeout_ms = 2000\n\n[control]\n",
        "turnstile.pass_timeout_ms",
        "shorter than pulse_ms",
        "pass_timeout_ms =",
    ),
    "images-without-path": (
        'kind = "stdin"',
        'kind = "images"',
        "input.path",
        'missing (required for kind = "images"',
        "[input]",
    ),
    "bad-color": ('color = "never"', 'color = "rainbow"', "signals.color", "must be", "color ="),
    "bad-id": ('id = "north-1"', 'id = "north 1"', "gate.id", "'north 1' must match", 'id = "north 1"'),
    "unset-credentials": (
        'trusted_keys = ["keys/signer.pub"]',
        'trusted_keys = ["keys/ok.pub", "${CREDENTIALS_DIRECTORY}/signer.pub"]',
        "manifest.trusted_keys[1]",
        "may be used, and only when set",
        "trusted_keys",
    ),
    "empty-state-dir": (
        'state_dir = "state"',
        'state_dir = ""',
        "gate.state_dir",
        "must not be empty",
        "state_dir",
    ),
    "nul-in-socket": (
        'socket = "run/control.sock"',
        'socket = "run/\\u0000.sock"',
        "control.socket",
        "NUL character",
        "socket =",
    ),
    "empty-trusted-key": (
        'trusted_keys = ["keys/signer.pub"]',
        'trusted_keys = [""]',
        "manifest.trusted_keys[0]",
        "must not be empty",
        "trusted_keys",
    ),
    "unknown-variable": (
        'state_dir = "state"',
        'state_dir = "${FOO}/state"',
        "gate.state_dir",
        "only ${CREDENTIALS_DIRECTORY}, ${STATE_DIRECTORY}, ${RUNTIME_DIRECTORY} may be used",
        "state_dir",
    ),
    "bad-pin": ('green = "GPIO17"', 'green = "GPIO17X"', "signals.pins.green", "is not a pin", "green ="),
    "pin-as-boolean": ("red = 27", "red = false", "signals.pins.red", "False is not a pin", "red ="),
    "socket-too-long": (
        'socket = "run/control.sock"',
        f'socket = "/run/{"s" * 120}.sock"',
        "control.socket",
        "too long for a unix socket path",
        "socket =",
    ),
    "missing-id": ('id = "north-1"\n', "", "gate.id", "missing (required)", "[gate]"),
    "no-trusted-keys": (
        'trusted_keys = ["keys/signer.pub"]',
        "trusted_keys = []",
        "manifest.trusted_keys",
        "list at least one .pub file",
        "trusted_keys",
    ),
    "keys-not-strings": (
        'trusted_keys = ["keys/signer.pub"]',
        "trusted_keys = [1, 2]",
        "manifest.trusted_keys",
        "expected an array of strings",
        "trusted_keys",
    ),
    "table-as-value": (
        "[control]\n",
        "[control.socket]\n",
        "control.socket",
        "expected a string, got a table",
        "[control.socket]",
    ),
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_each_mistake_names_file_line_and_key(tmp_path: Path, name: str) -> None:
    old, new, key, words, marker = MISTAKES[name]
    assert old in VALID
    text = VALID.replace(old, new, 1)
    path = write(tmp_path, text)
    error = problems_of(path, {})  # no systemd directories set
    rendered = str(error)
    line = line_of(text, marker) if marker else None
    assert f"{path}:{line}: {key}: " in rendered, rendered
    assert words in rendered, rendered
    assert rendered.startswith(f"1 problem in {path}\n"), rendered
    assert [p.where for p in error.problems] == [key]
    assert error.file == str(path)


def test_a_missing_section_is_named(tmp_path: Path) -> None:
    text = VALID.split("[manifest]")[0] + '[input]\nkind = "none"\n'
    path = write(tmp_path, text)
    error = problems_of(path)
    assert {p.where for p in error.problems} == {"manifest", "manifest.path", "manifest.trusted_keys"}
    assert f"{path}: manifest: missing (required)" in str(error)


def test_a_key_after_a_table_is_told_where_it_belongs(tmp_path: Path) -> None:
    text = VALID + 'gate = "north-1"\n'
    path = write(tmp_path, text)
    error = problems_of(path)
    line = len(text.splitlines())
    assert f"{path}:{line}: control.gate: belongs at the top of the file" in str(error)


def test_lines_are_counted_as_toml_counts_them(tmp_path: Path) -> None:
    # Only LF ends a TOML line: a comment or a string may hold U+2028 or U+0085, which
    # Python's str.splitlines() would also split at.
    text = "# north gate\u2028second entrance\x85\n" + VALID + 'gate = "north-1"\n'
    path = write(tmp_path, text)
    line = text.count("\n")
    assert f"{path}:{line}: control.gate: belongs at the top of the file" in str(problems_of(path))


def test_several_problems_are_reported_at_once(tmp_path: Path) -> None:
    text = (
        VALID.replace('mode = "entry"', 'mode = "sideways"')
        .replace("poll_ms = 2000", "poll_ms = 0")
        .replace('green = "GPIO17"', 'green = "LED"')
        .replace('color = "never"', 'color = "never"\nblink = true')
    )
    path = write(tmp_path, text)
    error = problems_of(path)
    rendered = str(error)
    assert rendered.startswith(f"4 problems in {path}\n")
    assert [p.where for p in error.problems] == [
        "gate.mode",
        "manifest.poll_ms",
        "signals.blink",
        "signals.pins.green",
    ]
    for problem in error.problems:
        assert problem.line is not None
        assert f"{path}:{problem.line}: {problem.where}: " in rendered


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"[gate\nid = 1\n", "not valid TOML"),
        (b'[gate]\nid = "\xff\xfe"\n', "not UTF-8"),
        (b'[gate]\nid = "a"\nid = "b"\n', "not valid TOML"),
    ],
    ids=["syntax", "encoding", "duplicate-key"],
)
def test_a_file_that_is_not_toml_is_a_source_error(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "gate.toml"
    path.write_bytes(content)
    error = problems_of(path)
    assert words in str(error)
    assert str(path) in str(error)


def test_a_missing_or_odd_file_is_a_source_error(tmp_path: Path) -> None:
    assert "cannot read" in str(problems_of(tmp_path / "absent.toml"))
    assert "cannot read" in str(problems_of(tmp_path))  # a folder


# ------------------------------------------------------------------ fuzz

_KEYS = st.sampled_from(
    [
        "id",
        "event",
        "zone",
        "session",
        "state_dir",
        "mode",
        "repeat_window_ms",
        "path",
        "trusted_keys",
        "poll_ms",
        "kind",
        "color",
        "hold_ms",
        "pins",
        "green",
        "buzzer",
        "socket",
        "x",
    ]
)
_SECTIONS = st.sampled_from(["gate", "manifest", "input", "signals", "control", "signals.pins", "other"])
_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
_SCALARS = st.one_of(
    _TEXT,
    st.sampled_from(["entry", "exit", "images", "stdin", "gpio", "${STATE_DIRECTORY}/x", "${FOO}", "GPIO4"]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=3)),
    max_leaves=8,
)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


@st.composite
def _documents(draw: st.DrawFn) -> str:
    out = []
    for section, table in draw(
        st.dictionaries(_SECTIONS, st.dictionaries(_KEYS, _VALUES, max_size=6))
    ).items():
        out.append(f"[{section}]")
        out += [f"{k} = {_toml(v)}" for k, v in table.items()]
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("config-fuzz")


def _load_only_source_errors(path: Path, lines: int) -> None:
    try:
        config = load_config(path, SYSTEMD)
    except SourceError as exc:
        assert exc.problems
        assert str(exc).startswith(f"{len(exc.problems)} problem")
        for problem in exc.problems:
            assert problem.line is None or 1 <= problem.line <= max(lines, 1)
    else:
        assert isinstance(config, GateConfig)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_documents())
def test_fuzz_config_shaped_documents_raise_only_source_errors(fuzz_dir: Path, doc: str) -> None:
    path = fuzz_dir / "shaped.toml"
    path.write_text(doc, encoding="utf-8")
    _load_only_source_errors(path, len(doc.splitlines()))


@given(text=st.text(max_size=300))
def test_fuzz_any_text_raises_only_source_errors(fuzz_dir: Path, text: str) -> None:
    path = fuzz_dir / "text.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    _load_only_source_errors(path, len(text.splitlines()))


@given(data=st.binary(max_size=300))
def test_fuzz_any_bytes_raise_only_source_errors(fuzz_dir: Path, data: bytes) -> None:
    path = fuzz_dir / "bytes.toml"
    path.write_bytes(data)
    _load_only_source_errors(path, data.count(b"\n") + 1)


_ASSIGNMENTS = [n for n, line in enumerate(VALID.splitlines()) if " = " in line]


@given(
    index=st.sampled_from(_ASSIGNMENTS), value=_VALUES, extra=st.one_of(st.none(), st.tuples(_KEYS, _VALUES))
)
def test_fuzz_one_value_changed_in_a_valid_config(
    fuzz_dir: Path, index: int, value: Any, extra: tuple[str, Any] | None
) -> None:
    lines = VALID.splitlines()
    key = lines[index].split(" = ")[0]
    lines[index] = f"{key} = {_toml(value)}"
    if extra is not None:
        lines.insert(index + 1, f"{extra[0]} = {_toml(extra[1])}")
    path = fuzz_dir / "mutated.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _load_only_source_errors(path, len(lines))
