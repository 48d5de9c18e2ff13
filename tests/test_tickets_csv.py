"""tickets.csv: what loads, and every bad row named by line and column (with nothing built)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from gate_daemon.cli.gatectl import main as gatectl
from gate_daemon.core.ticket_record import Status, TicketEntry
from gate_daemon.core.tokens import code_hash
from gate_daemon.errors import Problem, SourceError
from gate_daemon.provision.tickets import MIN_CODE_BITS, code_bits, load_tickets
from tests.support import CLI_EXPIRES, EVENT_ID, World

HEADER = "ticket_id,order_id,seat,status,session,zone,entries,code\n"


def write(world: World, text: str | bytes, name: str = "bad.csv") -> Path:
    path = world.dir / name
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    return path


def problems_of(world: World, path: Path) -> list[Problem]:
    with pytest.raises(SourceError) as caught:
        load_tickets(path, world.event)
    assert caught.value.file == str(path)
    return caught.value.problems


def test_good_rows_load(world: World) -> None:
    path = write(
        world,
        "status , ticket_id,entries,code\n"
        " COMPLETED ,T-1,,\n"
        "\n"
        "pending,T-2,reentry,\n"
        "Canceled,T-3,255,A-LONG-ENOUGH-CODE\n",
    )
    assert load_tickets(path, world.event) == [
        TicketEntry("T-1", Status.COMPLETED, entries=1),
        TicketEntry("T-2", Status.PENDING, entries=0),
        TicketEntry("T-3", Status.CANCELED, entries=255, code_hash=code_hash(EVENT_ID, "A-LONG-ENOUGH-CODE")),
    ]


def test_byte_order_mark_is_accepted(world: World) -> None:
    path = write(world, ("\ufeffticket_id,status\nT-1,completed\n").encode())
    assert [t.ticket_id for t in load_tickets(path, world.event)] == ["T-1"]


BAD_ROWS = [
    ("T-1,O-1,A1,completed,sat,floor,1,GOOD-CODE-000001", None, None),
    ("T-2,O-1,A2,sold,sat,,1,", "status", "'sold' is not one of"),
    ("T-3,O-1,A3,completed,mon,,1,", "session", "'mon' is not a session"),
    ("T-4,O-1,A4,completed,,,0,", "entries", "must be 1..255 or 'reentry'"),
    ("T-5,O-1,A5,completed,,,many,", "entries", "must be 1..255 or 'reentry'"),
    ("", None, None),  # blank lines are skipped but still counted
    ("T-1,O-2,B1,completed,,,1,", "ticket_id", "duplicate of line 2"),
    ("T-6,O-2,B2,completed,,,1,GOOD-CODE-000001", "code", "duplicate of line 2"),
    ("T-7,O-2,B3,completed,,,1,SHORT", "code", "must be 12 to 512 characters"),
    ("T-8,O-2,B4,completed", "", "expected 8 fields, found 4"),
    ("T-9,O-2,B5,completed,,attic,1,", "zone", "'attic' is not a zone"),
    ("T-10,O-2,B6,completed,,,1,GD1:AAAAAAAAAAAAAAAA", "code", "signed ticket"),
    # Line 2 has a reference code, so its O-1-A1 opens nothing: this row may use it ...
    ("T-11,O-1,A1,completed,,,1,", None, None),
    ("T-12,O-3,C1,completed,,,\u00b2,", "entries", "must be 1..255 or 'reentry'"),
    (",O-3,C2,completed,,,1,", "ticket_id", "empty"),
    ("T-14,O-3,C3,completed,,,1,caf\u00e9-code-\u00e9\u00e9\u00e9", "code", "printable ASCII"),
    ("T-15,O-3,C4,completed,,,1,,extra", "", "expected 8 fields, found 9"),
    # ... but no other row without a code.
    ("T-16,O-1,A1,completed,,,1,", "seat", "order O-1 seat A1 duplicates line 14"),
    ("T-17,O-4,D1,completed,,,1,123456789012", "code", "too easy to guess (about 40 bits"),
    ("T-18,O-4,D2,completed,,,1,AAAAAAAAAAAAAAAA", "code", "too easy to guess"),
]
BAD_ROW_PROBLEMS = sum(words is not None for _, _, words in BAD_ROWS)


def test_each_bad_row_is_reported_with_line_and_column(world: World) -> None:
    path = write(world, HEADER + "\n".join(row for row, _, _ in BAD_ROWS) + "\n")
    problems = problems_of(world, path)
    expected = [
        (line, f"column {column!r}" if column else "", words)
        for line, (_, column, words) in enumerate(BAD_ROWS, start=2)
        if words is not None
    ]
    got = [(p.line, p.where) for p in problems]
    assert got == [(line, where) for line, where, _ in expected]
    for problem, (_, _, words) in zip(problems, expected, strict=True):
        assert words in problem.message, problem


def test_problems_render_with_file_and_line(world: World) -> None:
    path = write(world, HEADER + "T-1,,,sold,,,1,\n")
    with pytest.raises(SourceError) as caught:
        load_tickets(path, world.event)
    assert f"{path}:2: column 'status': 'sold' is not one of" in str(caught.value)
    assert str(caught.value).startswith(f"1 problem in {path}")


def test_code_equal_to_another_rows_order_seat_text(world: World) -> None:
    path = write(
        world, HEADER + "T-1,ORDER-0001,SEAT1,completed,,,1,\nT-2,,,completed,,,1,ORDER-0001-SEAT1\n"
    )
    [problem] = problems_of(world, path)
    assert (problem.line, problem.where) == (3, "column 'code'")
    assert "order-seat code of line 2" in problem.message


def test_unknown_column_in_the_header(world: World) -> None:
    path = write(world, "ticket_id,status,colour\nT-1,completed,red\n")
    [problem] = problems_of(world, path)
    assert (problem.line, problem.where) == (1, "column 'colour'")
    assert "unknown column" in problem.message


def test_missing_required_column(world: World) -> None:
    path = write(world, "ticket_id,order_id\nT-1,O-1\n")
    [problem] = problems_of(world, path)
    assert (problem.line, problem.where) == (1, "column 'status'")
    assert "missing (required)" in problem.message


def test_header_problems_together(world: World) -> None:
    path = write(world, "order_id,order_id,zone ,colour\n")
    problems = problems_of(world, path)
    assert [(p.line, p.where) for p in problems] == [
        (1, "column 'order_id'"),
        (1, "column 'colour'"),
        (1, "column 'ticket_id'"),
        (1, "column 'status'"),
    ]
    assert "appears twice" in problems[0].message


def test_empty_file(world: World) -> None:
    [problem] = problems_of(world, write(world, ""))
    assert problem.line == 1 and "header row is required" in problem.message


def test_not_utf8_names_the_line(world: World) -> None:
    path = write(world, HEADER.encode() + b"T-1,O-1,A1,completed,,,1,\nT-2,O-\xff,A2,completed,,,1,\n")
    [problem] = problems_of(world, path)
    assert problem.line == 3 and "not UTF-8" in problem.message


def test_broken_quoting(world: World) -> None:
    path = write(world, 'ticket_id,status\nT-1,completed\n"T-2"x,completed\n')
    [problem] = problems_of(world, path)
    assert problem.line == 3 and "not valid CSV" in problem.message


def test_missing_file(world: World) -> None:
    [problem] = problems_of(world, world.dir / "absent.csv")
    assert "cannot read" in problem.message


def test_reading_stops_after_a_thousand_problems(world: World) -> None:
    path = write(world, "ticket_id,status\n" + "".join(f"T-{i},sold\n" for i in range(1500)))
    problems = problems_of(world, path)
    assert len(problems) == 1001
    assert "stopped reading after 1000 problems" in problems[-1].message
    with pytest.raises(SourceError, match="and 981 more problems"):
        load_tickets(path, world.event)


def test_gatectl_build_with_bad_rows_writes_nothing(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(world, HEADER + "\n".join(row for row, _, _ in BAD_ROWS) + "\n")
    out = world.dir / "never.gdm"
    code = gatectl(
        [
            "manifest",
            "build",
            "--event",
            str(world.event_path),
            "--tickets",
            str(path),
            "--key",
            str(world.signer_key),
            "--version",
            "1",
            "--expires",
            CLI_EXPIRES,
            "-o",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert BAD_ROW_PROBLEMS == 17
    assert captured.err.startswith(f"SourceError: {BAD_ROW_PROBLEMS} problems in")
    assert f"{path}:3: column 'status'" in captured.err
    assert not out.exists()
    assert not list(world.dir.glob(".never.gdm*"))
    assert captured.out == ""


# ------------------------------------------------------------------ reference code strength


@pytest.mark.parametrize(
    ("code", "alphabet"),
    [
        ("123456789012", 10),  # digits
        ("0123456789ABCDEF", 16),  # upper-case hex
        ("0123456789abcdef", 16),  # lower-case hex
        ("AAAAAAAAAAAAAAAA", 16),  # "A" is a hex digit: the smallest alphabet that holds it
        ("ABCDEFGHJKLMN", 36),  # digits + upper case (base32 codes land here)
        ("7Q2M4XK9PV3HT8WZ6RJD5NCB", 36),
        ("abcdefghjklmn", 36),  # digits + lower case
        ("0123456789abcdeF", 62),  # mixed case
        ("REF-SAT-FLOOR-0001", 95),  # anything else printable
        ("a b c d e f g", 95),
    ],
)
def test_code_bits_is_length_times_the_smallest_alphabet(code: str, alphabet: int) -> None:
    assert code_bits(code) == pytest.approx(len(code) * math.log2(alphabet))


def test_code_bits_of_the_examples() -> None:
    assert code_bits("123456789012") == pytest.approx(39.86, abs=0.01)
    assert code_bits("REF-SAT-FLOOR-0001") == pytest.approx(118.26, abs=0.01)
    assert MIN_CODE_BITS == 64


@pytest.mark.parametrize(
    ("code", "bits"),
    [
        ("123456789012", 40),  # 12 digits
        ("1234567890123456789", 63),  # 19 digits: just short
        ("0123456789ABCDE", 60),  # 15 hex digits
        ("0123456789abcde", 60),
        ("ABCDEFGHJKLM", 62),  # 12 base32 characters
        ("aaaaaaaaaaaa", 48),
        ("AAAAAAAAAAAAAAAA", 64),  # enough bits by length, but one character repeated
        ("AB-AB-AB-AB-AB", 92),  # three distinct characters
        ("0a0a0a0a0a0a0a0a0a0a0a0a0a0a", 112),  # two
    ],
)
def test_codes_too_easy_to_guess_are_refused(world: World, code: str, bits: int) -> None:
    path = write(world, HEADER + f"T-1,,,completed,,,1,{code}\n")
    [problem] = problems_of(world, path)
    assert (problem.line, problem.where) == (2, "column 'code'")
    if bits < 64:
        assert problem.message.startswith(f"too easy to guess (about {bits} bits; ")
    else:  # enough bits by length: refused for repeating too few characters
        assert problem.message.startswith("too easy to guess (fewer than 4 different characters; ")


@pytest.mark.parametrize(
    "code",
    [
        "12345678901234567890",  # 20 digits: 66 bits
        "0123456789ABCDEF",  # 16 hex digits: exactly 64 bits
        "0123456789abcdef",
        "ABCDEFGHJKLMN",  # 13 base32 characters: 67 bits
        "ABCDEFabcdef",  # 12 mixed-case letters: 71 bits
        "A-B-C-D-E-F-",  # 12 characters with punctuation: 79 bits
        "ABC-ABC-ABC-ABC",  # four distinct characters
        "REF-SAT-FLOOR-0001",
        "7Q2M4XK9PV3HT8WZ6RJD5NCB",
    ],
)
def test_codes_strong_enough_load(world: World, code: str) -> None:
    path = write(world, HEADER + f"T-1,,,completed,,,1,{code}\n")
    [ticket] = load_tickets(path, world.event)
    assert ticket.code_hash == code_hash(EVENT_ID, code)


def test_the_demo_codes_pass(world: World) -> None:
    """The fixture's codes are readable on purpose, yet long enough to pass the estimate."""
    for code in ("REF-SAT-FLOOR-0001", "REF-REFUNDED-0005", "REF-SUNDAY-FLOOR-77"):
        assert code_bits(code) >= MIN_CODE_BITS
    assert len(world.tickets) == 11


# ------------------------------------------------------------------ ORDER-SEAT texts


def test_order_seat_duplicates_only_count_rows_without_a_code(world: World) -> None:
    path = write(
        world,
        HEADER
        + "T-1,O-1,A1,completed,,,1,CODE-FOR-TICKET-ONE\n"
        + "T-2,O-1,A1,completed,,,1,CODE-FOR-TICKET-TWO\n"  # two coded rows: neither has a text
        + "T-3,O-1,A1,completed,,,1,\n"  # the one row O-1-A1 opens
        + "T-4,O-1,A1,completed,,,1,\n",
    )
    [problem] = problems_of(world, path)
    assert (problem.line, problem.where) == (5, "column 'seat'")
    assert problem.message == "order O-1 seat A1 duplicates line 4"


def test_ticket_with_a_code_has_no_order_seat_text(world: World) -> None:
    path = write(world, HEADER + "T-1,O-1,A1,completed,,,1,CODE-FOR-TICKET-ONE\nT-2,O-1,A2,completed,,,1,\n")
    coded, plain = load_tickets(path, world.event)
    assert (coded.order_id, coded.seat, coded.legacy_text) == ("O-1", "A1", None)
    assert plain.legacy_text == "O-1-A2"
    assert TicketEntry("T-9", order_id="O-9", seat="S9", code_hash=b"\x00" * 16).legacy_text is None
    assert TicketEntry("T-9", order_id="O-9", seat="S9").legacy_text == "O-9-S9"
    assert TicketEntry("T-9", order_id="O-9").legacy_text is None


def test_without_legacy_codes_order_seat_texts_are_not_checked(world: World) -> None:
    """With ``legacy_codes = false`` no ORDER-SEAT text opens anything, so none can clash."""
    event = dataclasses.replace(world.event, legacy_codes=False)
    text = (
        HEADER
        + "T-1,O-1,A1,completed,,,1,\n"
        + "T-2,O-1,A1,completed,,,1,\n"
        + "T-3,,,completed,,,1,ORDER-0001-SEAT1\n"
        + "T-4,ORDER-0001,SEAT1,completed,,,1,\n"
    )
    path = write(world, text)
    assert [t.ticket_id for t in load_tickets(path, event)] == ["T-1", "T-2", "T-3", "T-4"]
    # The same file with legacy codes on: the duplicate text and the code that equals a text.
    problems = problems_of(world, path)
    assert [(p.line, p.where) for p in problems] == [(3, "column 'seat'"), (4, "column 'code'")]
