"""A keyboard-wedge scanner's key events, turned back into the text it typed (US layout).

A USB barcode scanner in keyboard mode "types" each code it reads and presses Enter.
Linux reports that as key events: ``(code, value)`` with value 1 for a press, 0 for a
release and 2 for the kernel's autorepeat. ``KeyboardWedge`` replays them the way a US
keyboard layout would and hands back one payload per Enter. Pure: no I/O, no evdev.

What it does with what it cannot type as text, and why:

* A key that types nothing on a US layout (Esc, F1, arrows, Backspace, any unknown code
  below 256), or a character key pressed while Ctrl, Alt or Meta is held, becomes
  ``UNREADABLE`` (U+FFFD) in the payload. Dropping it could turn an unreadable code into
  a different, valid one; U+FFFD is not printable ASCII, so the gate answers
  ``invalid_payload``. Shift with a keypad digit or dot counts as such a key: Shift undoes
  Num Lock there, and a PC would move the cursor, not type.
* Modifiers, Caps Lock, Num Lock and Scroll Lock change state or nothing, and type nothing.
  Codes from 256 up (mouse, joystick and media buttons) are no keyboard keys and are ignored.
* Autorepeat is ignored: a scanner presses and releases every key, so a repeat only means
  a release arrived late, and typing the character again would change the code.
* Keypad digits are digits (Num Lock is taken to be on, as scanners in keypad mode expect).
* A payload is kept verbatim (spaces included); an Enter after nothing but whitespace
  is ignored, like a blank line on stdin.
* A payload longer than ``MAX_LINE`` keeps its first ``MAX_LINE`` characters followed by
  ``UNREADABLE``, so it is refused whatever the token parser's own limit.
"""

from __future__ import annotations

from gate_daemon.hardware.stdin_input import MAX_LINE

#: Stands in for anything that could not be read: never valid in a payload (not ASCII).
UNREADABLE = "\ufffd"

# Key codes from linux/input-event-codes.h: kernel ABI, fixed for good, so no evdev here.
KEY_TAB = 15
KEY_ENTER = 28
KEY_LEFTCTRL = 29
KEY_LEFTSHIFT = 42
KEY_RIGHTSHIFT = 54
KEY_LEFTALT = 56
KEY_SPACE = 57
KEY_CAPSLOCK = 58
KEY_NUMLOCK = 69
KEY_SCROLLLOCK = 70
KEY_KPENTER = 96
KEY_RIGHTCTRL = 97
KEY_RIGHTALT = 100
KEY_LEFTMETA = 125
KEY_RIGHTMETA = 126
#: The first code that is a button, not a keyboard key.
BTN_MISC = 0x100

PRESS, RELEASE, REPEAT = 1, 0, 2

# The main block row by row: the first row's code, then each key's character without and with Shift.
_ROWS = (
    (2, "1234567890-=", "!@#$%^&*()_+"),
    (16, "qwertyuiop[]", "QWERTYUIOP{}"),
    (30, "asdfghjkl;'`", 'ASDFGHJKL:"~'),
    (43, "\\zxcvbnm,./", "|ZXCVBNM<>?"),
)
_PLAIN = {first + i: char for first, chars, _ in _ROWS for i, char in enumerate(chars)}
_SHIFTED = {first + i: char for first, _, chars in _ROWS for i, char in enumerate(chars)}
_PLAIN.update({KEY_SPACE: " ", KEY_TAB: "\t"})
_SHIFTED.update({KEY_SPACE: " ", KEY_TAB: "\t"})
#: Keypad keys that Shift turns into cursor keys (with Num Lock on).
_KEYPAD_NUMBERS = dict(zip((82, 79, 80, 81, 75, 76, 77, 71, 72, 73, 83), "0123456789.", strict=True))
_KEYPAD_SIGNS = {55: "*", 74: "-", 78: "+", 98: "/", 117: "=", 121: ","}

_SHIFTS = frozenset({KEY_LEFTSHIFT, KEY_RIGHTSHIFT})
_CHORDS = frozenset({KEY_LEFTCTRL, KEY_RIGHTCTRL, KEY_LEFTALT, KEY_RIGHTALT, KEY_LEFTMETA, KEY_RIGHTMETA})
_SILENT = frozenset({KEY_CAPSLOCK, KEY_NUMLOCK, KEY_SCROLLLOCK})
_ENTERS = frozenset({KEY_ENTER, KEY_KPENTER})


#: A scanner types a code in one burst (milliseconds between keys). A pause longer than
#: this inside a payload means its Enter was lost: what came before is a scan of its own.
SCAN_GAP = 1.0


class KeyboardWedge:
    """One keyboard's typing state: held modifiers, Caps Lock and the payload typed so far."""

    def __init__(self) -> None:
        self._held: set[int] = set()
        self._caps = False
        self._typed: list[str] = []
        self._overlong = False
        self._last: float | None = None  # when the last character was typed

    def feed(self, code: int, value: int, at: float | None = None) -> str | None:
        """Take one key event (``at``: its time in seconds); the payload it completes, else None.

        A payload is completed by Enter or, when a character comes more than ``SCAN_GAP``
        after the one before, by that pause: the scan whose Enter was lost is returned
        marked unreadable (the gate records it as ``invalid_payload``) and the character
        starts the next one, which then reads clean.
        """
        if code in _SHIFTS or code in _CHORDS:
            if value == PRESS:
                self._held.add(code)
            elif value == RELEASE:
                self._held.discard(code)
            return None
        if value != PRESS or code >= BTN_MISC:
            return None
        if code in _ENTERS:
            return self._finish()
        if code == KEY_CAPSLOCK:
            self._caps = not self._caps
            return None
        if code in _SILENT:
            return None
        stale = None
        if at is not None:
            if self._typed and self._last is not None and at - self._last > SCAN_GAP:
                self._overlong = True  # marks it unreadable, like a cut payload
                stale = self._finish()
            self._last = at
        self._type(self._character(code))
        return stale

    def _character(self, code: int) -> str:
        if not self._held.isdisjoint(_CHORDS):
            return UNREADABLE
        shifted = not self._held.isdisjoint(_SHIFTS)
        if code in _KEYPAD_NUMBERS:
            return UNREADABLE if shifted else _KEYPAD_NUMBERS[code]
        if code in _KEYPAD_SIGNS:
            return _KEYPAD_SIGNS[code]
        char = _PLAIN.get(code)
        if char is None:
            return UNREADABLE
        if char.isalpha():
            shifted ^= self._caps
        return _SHIFTED[code] if shifted else char

    def _type(self, char: str) -> None:
        if len(self._typed) < MAX_LINE:
            self._typed.append(char)
        else:
            self._overlong = True

    def _finish(self) -> str | None:
        text = "".join(self._typed)
        if self._overlong:
            text += UNREADABLE
        self._typed.clear()
        self._overlong = False
        return text if text.strip() else None
