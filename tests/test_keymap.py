"""The keyboard-wedge key map: key events as a scanner sends them, back into the text it typed.

Key codes here come from python-evdev's ``ecodes`` (the kernel's header), never from the
module under test, so the module's own numbers are checked against them too.
"""

from __future__ import annotations

import string
from collections.abc import Iterable

import pytest
from evdev import ecodes
from hypothesis import given
from hypothesis import strategies as st

from gate_daemon.core.tokens import PayloadError, parse_payload
from gate_daemon.hardware.keymap import UNREADABLE, KeyboardWedge
from gate_daemon.hardware.stdin_input import MAX_LINE

PRESS, RELEASE, REPEAT = 1, 0, 2

_PUNCTUATION = {
    "MINUS": "-_", "EQUAL": "=+", "LEFTBRACE": "[{", "RIGHTBRACE": "]}", "SEMICOLON": ";:",
    "APOSTROPHE": "'\"", "GRAVE": "`~", "BACKSLASH": "\\|", "COMMA": ",<", "DOT": ".>", "SLASH": "/?",
}  # fmt: skip
#: How a US keyboard types each printable ASCII character: (key code, with Shift).
US: dict[str, tuple[int, bool]] = {" ": (ecodes.KEY_SPACE, False)}
for _letter in string.ascii_lowercase:
    US[_letter] = (ecodes.ecodes[f"KEY_{_letter.upper()}"], False)
    US[_letter.upper()] = (ecodes.ecodes[f"KEY_{_letter.upper()}"], True)
for _digit, _shifted in zip("1234567890", "!@#$%^&*()", strict=True):
    US[_digit] = (ecodes.ecodes[f"KEY_{_digit}"], False)
    US[_shifted] = (ecodes.ecodes[f"KEY_{_digit}"], True)
for _name, (_plain, _shifted) in _PUNCTUATION.items():
    US[_plain] = (ecodes.ecodes[f"KEY_{_name}"], False)
    US[_shifted] = (ecodes.ecodes[f"KEY_{_name}"], True)
SHIFTS = (ecodes.KEY_LEFTSHIFT, ecodes.KEY_RIGHTSHIFT)
MODIFIERS = (
    *SHIFTS, ecodes.KEY_LEFTCTRL, ecodes.KEY_RIGHTCTRL, ecodes.KEY_LEFTALT, ecodes.KEY_RIGHTALT,
    ecodes.KEY_LEFTMETA, ecodes.KEY_RIGHTMETA,
)  # fmt: skip
PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))


def test_the_us_table_covers_printable_ascii() -> None:
    assert sorted(US) == sorted(PRINTABLE)


def tap(code: int) -> list[tuple[int, int]]:
    return [(code, PRESS), (code, RELEASE)]


def typed(text: str, shift: int = ecodes.KEY_LEFTSHIFT) -> list[tuple[int, int]]:
    """Key events for ``text`` as a scanner sends them: Shift around each shifted key."""
    events = []
    for char in text:
        code, shifted = US[char]
        keys = tap(code)
        events += [(shift, PRESS), *keys, (shift, RELEASE)] if shifted else keys
    return events


def enter() -> list[tuple[int, int]]:
    return tap(ecodes.KEY_ENTER)


def feed(wedge: KeyboardWedge, events: Iterable[tuple[int, int]]) -> list[str]:
    return [p for code, value in events if (p := wedge.feed(code, value)) is not None]


def read(*streams: Iterable[tuple[int, int]]) -> list[str]:
    wedge = KeyboardWedge()
    return feed(wedge, (event for stream in streams for event in stream))


@st.composite
def scanner_typing(draw: st.DrawFn) -> tuple[str, list[tuple[int, int]]]:
    """Non-blank printable text and its key events, Shift sent the ways scanners send it."""
    text = draw(st.text(st.sampled_from(PRINTABLE), min_size=1, max_size=200).filter(str.strip))
    events: list[tuple[int, int]] = []
    held: int | None = None  # a Shift kept down across a run of shifted characters
    for char in text:
        code, shifted = US[char]
        if shifted and held is None:
            held = draw(st.sampled_from(SHIFTS))
            events.append((held, PRESS))
        elif not shifted and held is not None:
            events.append((held, RELEASE))
            held = None
        events += tap(code)
        if held is not None and draw(st.booleans()):
            events.append((held, RELEASE))
            held = None
    if held is not None:
        events.append((held, RELEASE))
    return text, [*events, *enter()]


@given(scanner_typing())
def test_what_a_scanner_types_comes_back_unchanged(case: tuple[str, list[tuple[int, int]]]) -> None:
    text, events = case
    wedge = KeyboardWedge()
    assert feed(wedge, events) == [text]
    assert feed(wedge, events) == [text]  # nothing left over from the first


events_ = st.lists(st.tuples(st.integers(-5, 0x300), st.integers(-2, 3)), max_size=300)


@given(events_)
def test_any_event_stream_gives_only_bounded_non_blank_payloads(events: list[tuple[int, int]]) -> None:
    wedge = KeyboardWedge()
    for code, value in events:
        payload = wedge.feed(code, value)
        assert payload is None or (payload.strip() and len(payload) <= MAX_LINE + 1)


@given(events_, st.text(st.sampled_from(PRINTABLE), min_size=1, max_size=50).filter(str.strip))
def test_after_any_noise_and_an_enter_the_next_scan_reads_right(
    events: list[tuple[int, int]], text: str
) -> None:
    wedge = KeyboardWedge()
    feed(wedge, [*events, *enter()])
    # What a scanner's next scan starts from: every modifier up, Caps Lock off.
    feed(wedge, [(key, RELEASE) for key in MODIFIERS])
    if feed(wedge, typed("a") + enter()) == ["A"]:
        feed(wedge, tap(ecodes.KEY_CAPSLOCK))
    assert feed(wedge, typed(text) + enter()) == [text]


def test_left_and_right_shift_each_count_until_both_are_up() -> None:
    left, right = SHIFTS
    a = ecodes.KEY_A
    events = [(left, PRESS), *tap(a), (right, PRESS), (left, RELEASE), *tap(a), (right, RELEASE), *tap(a)]
    assert read(events, enter()) == ["AAa"]
    assert read([(right, PRESS), *tap(ecodes.KEY_1), (right, RELEASE), *tap(ecodes.KEY_1)], enter()) == ["!1"]


def test_caps_lock_turns_letters_only_and_shift_undoes_it() -> None:
    caps = tap(ecodes.KEY_CAPSLOCK)
    assert read(caps, typed("ab1-"), typed("Q!"), enter()) == ["AB1-q!"]
    assert read(caps, typed("a"), caps, typed("a"), enter()) == ["Aa"]
    # A held Caps Lock repeats: that is no second toggle.
    assert read([(ecodes.KEY_CAPSLOCK, PRESS), (ecodes.KEY_CAPSLOCK, REPEAT)], typed("x"), enter()) == ["X"]


def test_keypad_types_digits_and_signs_and_ends_with_its_enter() -> None:
    keys = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "0", "DOT", "MINUS", "PLUS", "ASTERISK", "SLASH")
    events = [e for name in keys for e in tap(ecodes.ecodes[f"KEY_KP{name}"])]
    assert read(events, tap(ecodes.KEY_KPENTER)) == ["1234567890.-+*/"]


def test_a_shifted_keypad_digit_is_unreadable_not_a_digit() -> None:
    # Shift undoes Num Lock: a PC would have moved the cursor (KP1 is End).
    shifted = [(ecodes.KEY_LEFTSHIFT, PRESS), *tap(ecodes.KEY_KP1), (ecodes.KEY_LEFTSHIFT, RELEASE)]
    assert read(typed("A"), shifted, enter()) == [f"A{UNREADABLE}"]


def test_autorepeat_types_nothing_more() -> None:
    a = ecodes.KEY_A
    assert read([(a, PRESS), (a, REPEAT), (a, REPEAT), (a, RELEASE)], enter()) == ["a"]
    assert read(typed("ab"), [(ecodes.KEY_ENTER, PRESS), (ecodes.KEY_ENTER, REPEAT)]) == ["ab"]


def test_blank_enters_are_ignored() -> None:
    assert read(enter(), enter(), typed("  "), enter(), tap(ecodes.KEY_KPENTER)) == []
    assert read(enter(), typed(" X "), enter()) == [" X "]  # kept verbatim


def test_keys_that_type_nothing_make_the_payload_unreadable() -> None:
    for name in ("ESC", "F1", "BACKSPACE", "LEFT", "DELETE", "HOME", "RESERVED"):
        [payload] = read(typed("T-0001"), tap(ecodes.ecodes[f"KEY_{name}"]), enter())
        assert payload == f"T-0001{UNREADABLE}", name
    chord = [(ecodes.KEY_LEFTCTRL, PRESS), *tap(ecodes.KEY_J), (ecodes.KEY_LEFTCTRL, RELEASE)]
    assert read(typed("O-1"), chord, typed("00"), enter()) == [f"O-1{UNREADABLE}00"]
    alt = [(ecodes.KEY_RIGHTALT, PRESS), *tap(ecodes.KEY_KP6), *tap(ecodes.KEY_KP5)]
    assert read(alt, [(ecodes.KEY_RIGHTALT, RELEASE)], typed("B"), enter()) == [f"{UNREADABLE * 2}B"]
    # Such payloads are refused by name (invalid_payload), never read as another code.
    [with_tab] = read(typed("REF"), tap(ecodes.KEY_TAB), typed("1"), enter())
    for refused in (with_tab, payload):
        with pytest.raises(PayloadError, match="outside printable ASCII"):
            parse_payload(refused)


def test_modifiers_locks_and_buttons_type_nothing() -> None:
    quiet = [
        *tap(ecodes.KEY_NUMLOCK),
        *tap(ecodes.KEY_SCROLLLOCK),
        *tap(ecodes.KEY_LEFTMETA),
        *tap(ecodes.KEY_LEFTALT),
        *tap(ecodes.BTN_LEFT),
        *tap(ecodes.KEY_OK),
    ]
    assert read(typed("ab"), quiet, typed("c"), enter()) == ["abc"]


def test_an_overlong_payload_is_cut_and_marked() -> None:
    wedge = KeyboardWedge()
    [payload] = feed(wedge, typed("A" * (MAX_LINE + 500)) + enter())
    assert payload == "A" * MAX_LINE + UNREADABLE
    with_space = feed(wedge, typed("B" * MAX_LINE) + enter())
    assert with_space == ["B" * MAX_LINE]  # exactly the cap still fits
    assert feed(wedge, typed("next") + enter()) == ["next"]


def test_release_of_a_key_never_pressed_is_harmless() -> None:
    assert read([(ecodes.KEY_LEFTSHIFT, RELEASE), (ecodes.KEY_A, RELEASE)], typed("a"), enter()) == ["a"]


def test_a_scan_whose_enter_was_lost_ends_at_the_pause_marked_unreadable() -> None:
    from gate_daemon.hardware.keymap import SCAN_GAP

    wedge = KeyboardWedge()
    out = []
    t = 100.0
    for code, value in typed("A100-2"):  # Enter lost
        out.append(wedge.feed(code, value, t))
        t += 0.004
    t += SCAN_GAP + 0.5  # the next person steps up
    for code, value in typed("O-105-C2") + enter():
        out.append(wedge.feed(code, value, t))
        t += 0.004
    assert [text for text in out if text is not None] == ["A100-2\ufffd", "O-105-C2"]


def test_a_slow_scanner_within_the_gap_reads_one_code() -> None:
    from gate_daemon.hardware.keymap import SCAN_GAP

    wedge = KeyboardWedge()
    t = 0.0
    out = []
    for code, value in typed("REF-0001") + enter():
        out.append(wedge.feed(code, value, t))
        t += SCAN_GAP / 5  # a scanner at its slowest delay: a shifted key is four events
    assert [text for text in out if text is not None] == ["REF-0001"]
