"""``tickets.csv``: one row per ticket, checked completely before anything is built.

Columns (header row required, any order, unknown columns rejected; only ``ticket_id``
and ``status`` are required)::

    ticket_id  1..64 bytes, unique
    order_id   the order it belongs to (with seat, forms the legacy ORDER-SEAT payload)
    seat       seat or item label
    status     completed | pending | canceled | refunded | blocked
    session    a session id from event.toml, or empty for any session
    zone       a zone id from event.toml, or empty for any zone
    entries    1..255 (default 1), or "reentry" for unlimited re-entry after an exit scan
    name       the holder's name, optional: shown on the gate screen for an ID check
               (docs/SCREEN.md); every gate's manifest then carries it
    code       an optional reference code: printable ASCII, at least 12 characters and
               64 bits by the estimate below (make them random with >= 96 bits); only
               its salted hash enters the manifest, and a ticket with a code does not
               open by its ORDER-SEAT text
"""

from __future__ import annotations

import csv
import io
import math
import string
from pathlib import Path

from gate_daemon.core.ticket_record import Status, TicketEntry
from gate_daemon.core.tokens import (
    MAX_PAYLOAD,
    MAX_TICKET_ID,
    OpaqueCode,
    PayloadError,
    code_hash,
    parse_entries,
    parse_payload,
)
from gate_daemon.errors import Problem, SourceError
from gate_daemon.files import read_regular
from gate_daemon.provision.event import EventSpec

COLUMNS = ("ticket_id", "order_id", "seat", "status", "session", "zone", "entries", "code", "name")
REQUIRED = ("ticket_id", "status")
#: tickets.csv is read whole: a million rows are about 80 MB.
MAX_FILE = 1 << 30
MIN_CODE = 12
#: Codes under this many bits (estimated from their length and alphabet) are refused:
#: a stolen gate could try them all offline against the manifest's hashes.
MIN_CODE_BITS = 64
MAX_TEXT = 64
#: Reading stops once this many problems are known: the file needs fixing either way.
MAX_PROBLEMS = 1000
_STATUSES = {s.value: s for s in Status}
_ALPHABETS = [
    set(a)
    for a in (
        string.digits,
        string.digits + "ABCDEF",
        string.digits + "abcdef",
        string.digits + string.ascii_uppercase,
        string.digits + string.ascii_lowercase,
        string.digits + string.ascii_letters,
    )
]


def load_tickets(path: Path, event: EventSpec) -> list[TicketEntry]:
    """Read every row; raise ``SourceError`` listing bad rows by line and column."""
    name = str(path)
    try:
        data = read_regular(path, MAX_FILE)
    except OSError as exc:
        raise SourceError(name, [Problem("", f"cannot read: {exc.strerror}")]) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SourceError(name, [Problem("", f"not UTF-8 text (byte {exc.start})", line)]) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    problems: list[Problem] = []
    try:
        header = next(reader, None)
        if header is None:
            raise SourceError(name, [Problem("", "empty file: a header row is required", 1)])
        columns = _header([h.strip() for h in header], name)
        return _TicketRows(columns, event, problems, name).read(reader)
    except csv.Error as exc:
        problems.append(Problem("", f"not valid CSV: {exc}", reader.line_num))
        raise SourceError(name, problems) from None


def _header(header: list[str], name: str) -> dict[str, int]:
    problems = []
    columns: dict[str, int] = {}
    for i, column in enumerate(header):
        if column not in COLUMNS:
            problems.append(
                Problem(f"column {column!r}", f"unknown column (allowed: {', '.join(COLUMNS)})", 1)
            )
        elif column in columns:
            problems.append(Problem(f"column {column!r}", "appears twice", 1))
        columns[column] = i
    for column in REQUIRED:
        if column not in columns:
            problems.append(Problem(f"column {column!r}", "missing (required)", 1))
    if problems:
        raise SourceError(name, problems)
    return columns


class _TicketRows:
    """The rows of one tickets.csv, and what earlier rows claimed: ids, codes, order-seat texts."""

    def __init__(self, columns: dict[str, int], event: EventSpec, problems: list[Problem], name: str) -> None:
        self.event = event
        self.problems = problems
        self.name = name
        # Mapping each id to itself lets every row share one string object per session/zone.
        self.sessions = {s.id: s.id for s in event.sessions}
        self.zones = {z.id: z.id for z in event.zones}
        self.width = len(columns)
        self.columns = {c: columns.get(c) for c in COLUMNS}
        self.first_line: dict[str, int] = {}
        self.codes: dict[str, int] = {}
        self.legacy: dict[str, int] = {}

    def bad(self, line: int, column: str, message: str) -> None:
        """Record a problem; stop reading once there are too many to be worth listing."""
        self.problems.append(Problem(f"column {column!r}" if column else "", message, line))
        if len(self.problems) >= MAX_PROBLEMS:
            self.problems.append(Problem("", f"stopped reading after {MAX_PROBLEMS} problems", line))
            raise SourceError(self.name, self.problems)

    def read(self, reader: csv.Reader) -> list[TicketEntry]:  # type: ignore[name-defined]
        """Every ticket; ``SourceError`` listing every problem if any row has one."""
        entries: list[TicketEntry] = []
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != self.width:
                self.bad(line, "", f"expected {self.width} fields, found {len(row)}")
                continue
            cell = {c: (row[i].strip() if i is not None else "") for c, i in self.columns.items()}
            before = len(self.problems)
            entry = self._entry(line, cell)
            if len(self.problems) == before:
                entries.append(entry)
        for text, line in self.legacy.items():
            if text in self.codes:
                self.bad(self.codes[text], "code", f"equals the order-seat code of line {line}")
        if self.problems:
            raise SourceError(self.name, self.problems)
        return entries

    def _entry(self, line: int, cell: dict[str, str]) -> TicketEntry:
        """The ticket of one row, its problems recorded (the entry is dropped if it has any)."""
        bad = self.bad
        tid = cell["ticket_id"]
        if not tid:
            bad(line, "ticket_id", "empty")
        elif len(tid.encode()) > MAX_TICKET_ID or not tid.isprintable():
            bad(line, "ticket_id", f"must be 1 to {MAX_TICKET_ID} bytes of printable text")
        elif tid in self.first_line:
            bad(line, "ticket_id", f"duplicate of line {self.first_line[tid]}")
        for column in ("order_id", "seat", "name"):
            if len(cell[column].encode()) > MAX_TEXT or not cell[column].isprintable():
                bad(line, column, f"must be at most {MAX_TEXT} bytes of printable text")
        status = _STATUSES.get(cell["status"].lower())
        if status is None:
            bad(line, "status", f"{cell['status']!r} is not one of {', '.join(_STATUSES)}")
        if cell["session"] and cell["session"] not in self.sessions:
            bad(line, "session", f"{cell['session']!r} is not a session in the event file")
        if cell["zone"] and cell["zone"] not in self.zones:
            bad(line, "zone", f"{cell['zone']!r} is not a zone in the event file")
        allowed = parse_entries(cell["entries"])
        if allowed is None:
            bad(line, "entries", f"{cell['entries']!r} must be 1..255 or 'reentry'")
        code = cell["code"]
        if code:
            reason = _code_problem(code)
            if reason:
                bad(line, "code", reason)
            elif code in self.codes:
                bad(line, "code", f"duplicate of line {self.codes[code]}")
            self.codes.setdefault(code, line)
        entry = TicketEntry(
            ticket_id=tid,
            status=status or Status.COMPLETED,
            order_id=cell["order_id"],
            seat=cell["seat"],
            session=self.sessions.get(cell["session"], ""),
            zone=self.zones.get(cell["zone"], ""),
            entries=allowed if allowed is not None else 1,
            code_hash=code_hash(self.event.event_id, code) if code else None,
            name=cell["name"],
        )
        text = entry.legacy_text if self.event.legacy_codes else None
        if text is not None:
            if text in self.legacy:
                bad(
                    line,
                    "seat",
                    f"order {entry.order_id} seat {entry.seat} duplicates line {self.legacy[text]}",
                )
            elif (unreadable := _payload_problem(text)) is not None:
                bad(line, "order_id", f"order-seat text {text!r} cannot be scanned: {unreadable}")
            self.legacy.setdefault(text, line)
        self.first_line.setdefault(tid, line)
        return entry


def _code_problem(code: str) -> str | None:
    if not MIN_CODE <= len(code) <= MAX_PAYLOAD:
        return f"must be {MIN_CODE} to {MAX_PAYLOAD} characters"
    unreadable = _payload_problem(code)
    if unreadable is not None:
        return unreadable
    advice = "use >= 96 random bits, e.g. 26 base32 characters"
    bits = code_bits(code)
    if bits < MIN_CODE_BITS:
        return f"too easy to guess (about {bits:.0f} bits; {advice})"
    if len(set(code)) < 4:
        return f"too easy to guess (fewer than 4 different characters; {advice})"
    return None


def code_bits(code: str) -> float:
    """At most how many bits of randomness ``code`` can hold, given its length and alphabet."""
    chars = set(code)
    for alphabet in _ALPHABETS:
        if chars <= alphabet:
            return len(code) * math.log2(len(alphabet))
    return len(code) * math.log2(95)


def _payload_problem(text: str) -> str | None:
    """Why a gate could not read ``text`` as a code to look up, if it could not."""
    try:
        parsed = parse_payload(text)
    except PayloadError as exc:
        return exc.detail
    if not isinstance(parsed, OpaqueCode):
        return "looks like a signed ticket payload"
    return None
