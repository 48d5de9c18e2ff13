"""Supervisor commands: the signed body, its parse, its verification and the replay rules.

A command changes one thing at one gate: its lane (``open``, ``supervised``,
``closed``), its decision mode (force an online-first gate ``online`` or ``offline``,
or give it back to its breaker: ``auto``) or the one-line message its screen shows.
It is a JSON object, every key required::

    {"v": 1, "event": "demo-2026", "gate": "north-1", "kind": "lane", "value": "closed",
     "supervisor": "sam", "issued_ms": 1767222000000, "nonce": "<32 lowercase hex>"}

signed by a supervisor's key over ``DOMAIN`` + its canonical JSON (keys sorted, no
spaces, non-ASCII escaped: a browser builds the same bytes), and carried as
``{"command": BODY, "sig": BASE64}``. Only supervisors in the signed manifest's roster
(``[[supervisors]]`` in event.toml) can sign one; revoking one is a new manifest
without them.

Everything here is pure. The checks run in this order, and the first that fails names
the refusal (``CommandRefused.name``):

1. ``bad_command``        the envelope or body is not one (a missing key, a wrong type)
2. ``bad_signature``      no signature, or one that is not 64 bytes of base64
3. ``unknown_supervisor`` the signer is not in the active manifest's roster
4. ``bad_signature``      the signature does not verify under the supervisor's key
5. ``wrong_event``        the command is for another event
6. ``wrong_gate``         ... or another gate
7. ``expired``            ``issued_ms`` is more than ``EXPIRY_MS`` before the receiver's clock, or
                          more than ``FUTURE_MS`` after it (a command dated ahead would
                          otherwise make every correctly dated one ``stale``)
8. ``replayed``           its nonce was applied before (``ordering``)
9. ``stale``              a newer command of the same kind was applied (``ordering``), by a
                          supervisor still in the roster: revoking one lets the others command

Steps 8 and 9 need what the receiver applied before; ``ordering`` takes it as values.
Commands of one kind are ordered by ``(issued_ms, nonce)``: two commands issued in the
same millisecond are ordered by their nonces, so every receiver, whatever order the two
delivery paths bring them in, ends on the same one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, replace
from typing import Any, Literal

from gate_daemon.core.keys import SIGNATURE_SIZE, SecretKey
from gate_daemon.core.manifest_header import RosterSupervisor
from gate_daemon.errors import WireError

DOMAIN = b"gate-daemon/command/v1\x00"
VERSION = 1
#: How far a command's ``issued_ms`` may lie before the receiver's clock.
EXPIRY_MS = 24 * 3600 * 1000
#: How far it may lie after it (clocks a little apart; not a day ahead).
FUTURE_MS = 5 * 60 * 1000
MAX_MESSAGE = 140
#: The largest ``issued_ms``: JavaScript's largest safe integer, so a page signs what it means.
MAX_MS = 2**53 - 1
KEYS = frozenset({"v", "event", "gate", "kind", "value", "supervisor", "issued_ms", "nonce"})
#: A gate, event or supervisor id (as event.toml's).
IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NONCE = re.compile(r"[0-9a-f]{32}")

Kind = Literal["lane", "mode", "message"]
LaneValue = Literal["open", "supervised", "closed"]
ModeValue = Literal["online", "offline", "auto"]
VALUES: dict[str, tuple[str, ...]] = {
    "lane": ("open", "supervised", "closed"),
    "mode": ("online", "offline", "auto"),
}
#: Refusals, in the order the checks run (see above).
REFUSALS = (
    "bad_command",
    "bad_signature",
    "unknown_supervisor",
    "wrong_event",
    "wrong_gate",
    "expired",
    "replayed",
    "stale",
)
_STATUS = {"bad_command": 400, "replayed": 409, "stale": 409}
#: Refused before the signature verified: anyone can send these, so a receiver only counts them.
UNVERIFIED = frozenset({"bad_command", "bad_signature", "unknown_supervisor"})
#: Character categories a message may not hold: controls, format characters (bidi overrides,
#: zero widths), lone surrogates, line breaks.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


class CommandRefused(WireError):
    """A command refused; ``name`` is one of ``REFUSALS``.

    ``duplicate``: a ``replayed`` command that is the very one applied before (the other
    delivery path's copy), which a receiver answers as "not applied" rather than an error.
    ``detail`` is cut to ``kept`` characters: an unverified sender's bytes can end up in it.
    """

    kept = 200

    def __init__(self, name: str, detail: str, *, duplicate: bool = False, ahead: bool = False) -> None:
        super().__init__(name, detail, _STATUS.get(name, 403))
        self.duplicate = duplicate
        #: An ``expired`` command dated ahead of the receiver's clock (which may be behind).
        self.ahead = ahead


@dataclass(frozen=True, slots=True)
class Command:
    """A command body, read and checked for shape (not yet verified)."""

    event: str
    gate: str
    kind: Kind
    value: str
    supervisor: str
    issued_ms: int
    nonce: str

    def body(self) -> dict[str, Any]:
        """The JSON object, as signed."""
        return {
            "v": VERSION,
            "event": self.event,
            "gate": self.gate,
            "kind": self.kind,
            "value": self.value,
            "supervisor": self.supervisor,
            "issued_ms": self.issued_ms,
            "nonce": self.nonce,
        }

    def signed_bytes(self) -> bytes:
        """The canonical JSON of the body: what the signature covers, after ``DOMAIN``."""
        return canonical(self.body())

    def digest(self) -> str:
        """SHA-256 of the signed bytes: the same command, whichever path it came by."""
        return hashlib.sha256(self.signed_bytes()).hexdigest()

    def describe(self) -> str:
        """One line for logs and answers (a message's text is shown, it is public)."""
        return f"{self.kind} {self.value!r} for gate {self.gate} by {self.supervisor}"


@dataclass(frozen=True, slots=True)
class SignedCommand:
    """A command and its signature, as received."""

    command: Command
    signature: bytes

    def envelope(self) -> dict[str, Any]:
        """The wire form: ``{"command": BODY, "sig": BASE64}``."""
        return {"command": self.command.body(), "sig": base64.b64encode(self.signature).decode()}


def canonical(body: dict[str, Any]) -> bytes:
    """Keys sorted, no spaces, non-ASCII as ``\\uXXXX``: the bytes a browser's JSON builds alike."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign(command: Command, key: SecretKey) -> SignedCommand:
    """Sign ``command`` with a supervisor's key."""
    return SignedCommand(command, key.sign(DOMAIN, command.signed_bytes()))


# ---------------------------------------------------------------- parse


def parse_envelope(data: object) -> SignedCommand:
    """Read ``{"command": BODY, "sig": BASE64}``; ``CommandRefused`` names what is wrong."""
    if not isinstance(data, dict):
        raise CommandRefused("bad_command", "the envelope must be a JSON object")
    extra = set(data) - {"command", "sig"}
    if extra:
        raise CommandRefused("bad_command", f"unknown envelope field {str(sorted(extra)[0])[:64]!r}")
    if "command" not in data:
        raise CommandRefused("bad_command", "the envelope has no command")
    command = parse_command(data["command"])
    sig = data.get("sig")
    if sig is None or sig == "":
        raise CommandRefused("bad_signature", "the command is not signed")
    if not isinstance(sig, str) or len(sig) > 128:
        raise CommandRefused("bad_signature", "sig must be the base64 of a 64-byte signature")
    try:
        raw = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError):
        raise CommandRefused("bad_signature", "sig is not valid base64") from None
    if len(raw) != SIGNATURE_SIZE:
        raise CommandRefused("bad_signature", f"sig is {len(raw)} bytes, not {SIGNATURE_SIZE}")
    return SignedCommand(command, raw)


def parse_command(body: object) -> Command:
    """Read a command body; ``CommandRefused("bad_command")`` naming the field that is wrong."""
    if not isinstance(body, dict):
        raise CommandRefused("bad_command", "command: must be a JSON object")
    missing = sorted(KEYS - set(body))
    if missing:
        raise CommandRefused("bad_command", f"command.{missing[0]}: missing")
    extra = sorted(str(k) for k in set(body) - KEYS)
    if extra:
        raise CommandRefused("bad_command", f"command: unknown field {extra[0][:64]!r}")
    if _whole(body["v"]) != VERSION:
        raise CommandRefused("bad_command", f"command.v: must be {VERSION}")
    event = _ident(body, "event")
    gate = _ident(body, "gate")
    supervisor = _ident(body, "supervisor")
    kind = body["kind"]
    if kind not in ("lane", "mode", "message"):
        raise CommandRefused("bad_command", 'command.kind: must be "lane", "mode" or "message"')
    value = _value(kind, body["value"])
    issued = _whole(body["issued_ms"])
    if issued is None or not 0 <= issued <= MAX_MS:
        raise CommandRefused("bad_command", "command.issued_ms: must be an integer of unix milliseconds")
    nonce = body["nonce"]
    if not isinstance(nonce, str) or NONCE.fullmatch(nonce) is None:
        raise CommandRefused("bad_command", "command.nonce: must be 32 lowercase hex digits")
    return Command(event, gate, kind, value, supervisor, issued, nonce)


def _whole(value: object) -> int | None:
    """An integer as JSON Schema reads one (``7`` or ``7.0``); None for anything else."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if type(value) is int else None


def _ident(body: dict[str, Any], key: str) -> str:
    value = body[key]
    if not isinstance(value, str) or IDENT.fullmatch(value) is None:
        raise CommandRefused(
            "bad_command", f"command.{key}: must be an id (letters, digits, . _ -; at most 64)"
        )
    return value


def _value(kind: str, value: object) -> str:
    if not isinstance(value, str):
        raise CommandRefused("bad_command", "command.value: must be a string")
    if kind in VALUES:
        if value not in VALUES[kind]:
            allowed = ", ".join(VALUES[kind])
            raise CommandRefused("bad_command", f"command.value: a {kind} command takes one of {allowed}")
        return value
    return check_message(value)


def check_message(text: str) -> str:
    """A message as a screen shows it: at most ``MAX_MESSAGE`` characters, one printable line."""
    if len(text) > MAX_MESSAGE:
        raise CommandRefused("bad_command", f"command.value: a message is at most {MAX_MESSAGE} characters")
    for char in text:
        if unicodedata.category(char) in _UNPRINTABLE:
            raise CommandRefused(
                "bad_command",
                f"command.value: a message may not hold control or format character U+{ord(char):04X}",
            )
    return text


# ---------------------------------------------------------------- verify


def verify(
    signed: SignedCommand,
    supervisors: tuple[RosterSupervisor, ...],
    *,
    event: str,
    gate: str | None,
    now_ms: int,
) -> Command:
    """Steps 3 to 7: the roster, the signature, the event, the gate (None: any) and the time."""
    command = signed.command
    keys = [s.key for s in supervisors if s.id == command.supervisor]
    if not keys:
        raise CommandRefused(
            "unknown_supervisor", f"{command.supervisor} is not a supervisor in the active manifest"
        )
    if not any(key.verify(DOMAIN, command.signed_bytes(), signed.signature) for key in keys):
        raise CommandRefused("bad_signature", f"the signature does not verify for {command.supervisor}")
    if command.event != event:
        raise CommandRefused("wrong_event", f"the command is for event {command.event}, this is {event}")
    if gate is not None and command.gate != gate:
        raise CommandRefused("wrong_gate", f"the command is for gate {command.gate}, this is {gate}")
    if command.issued_ms > now_ms + FUTURE_MS:
        ahead = (command.issued_ms - now_ms) // 1000
        raise CommandRefused(
            "expired", f"the command is dated {ahead} s ahead of this clock (at most 300 s)", ahead=True
        )
    if command.issued_ms < now_ms - EXPIRY_MS:
        raise CommandRefused("expired", "the command was issued more than 24 hours before this clock's time")
    return command


# ---------------------------------------------------------------- ordering and the lane


@dataclass(frozen=True, slots=True)
class Applied:
    """The last command applied of one kind."""

    value: str
    supervisor: str
    issued_ms: int
    nonce: str
    applied_ms: int


def ordering(
    command: Command, seen: str | None, last: Applied | None, roster: frozenset[str] | None = None
) -> None:
    """Steps 8 and 9: ``seen`` is the digest of the command applied with this nonce, if any.

    ``replayed`` when the nonce was applied before; ``stale`` when ``last`` (the last
    command of this kind applied) comes after it in ``(issued_ms, nonce)`` order, unless
    its supervisor is not in ``roster`` (the active supervisors' ids; None: not checked).
    """
    if last is not None and roster is not None and last.supervisor not in roster:
        last = None
    if seen is not None:
        same = seen == command.digest()
        what = "this command" if same else "another command with this nonce"
        raise CommandRefused("replayed", f"{what} was applied already", duplicate=same)
    if last is not None and (command.issued_ms, command.nonce) < (last.issued_ms, last.nonce):
        raise CommandRefused("stale", f"a newer {command.kind} command (by {last.supervisor}) was applied")


@dataclass(frozen=True, slots=True)
class LaneState:
    """What supervisors set at a gate: the last command applied of each kind (None: none yet)."""

    lane: Applied | None = None
    mode: Applied | None = None
    message: Applied | None = None

    @property
    def state(self) -> str:
        """``open``, ``supervised`` or ``closed``."""
        return "open" if self.lane is None else self.lane.value

    @property
    def mode_forced(self) -> str | None:
        """``online`` or ``offline`` when a supervisor forced the decision mode; None: the breaker's."""
        if self.mode is None or self.mode.value == "auto":
            return None
        return self.mode.value

    @property
    def text(self) -> str | None:
        """The message for screens, or None."""
        return self.message.value if self.message is not None and self.message.value else None

    def last(self, kind: str) -> Applied | None:
        """The last command applied of ``kind``."""
        return {"lane": self.lane, "mode": self.mode, "message": self.message}[kind]

    def applying(self, command: Command, now_ms: int) -> LaneState:
        """The state once ``command`` is applied at ``now_ms``."""
        applied = Applied(command.value, command.supervisor, command.issued_ms, command.nonce, now_ms)
        return replace(self, **{command.kind: applied})
