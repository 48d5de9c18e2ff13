"""tickets.csv: what loads, and every bad row named by line and column (with nothing built)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gate_daemon.cli.gatectl import main as gatectl
from gate_daemon.core.manifest import Status, TicketEntry
from gate_daemon.core.tokens import code_hash
from gate_daemon.errors import Problem, SourceError
from gate_daemon.provision.tickets import load_tickets
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
    ("T-11,O-1,A1,completed,,,1,", "seat", "duplicates line 2"),
    ("T-12,O-3,C1,completed,,,\u00b2,", "entries", "must be 1..255 or 'reentry'"),
    (",O-3,C2,completed,,,1,", "ticket_id", "empty"),
    ("T-14,O-3,C3,completed,,,1,caf\u00e9-code-\u00e9\u00e9\u00e9", "code", "printable ASCII"),
    ("T-15,O-3,C4,completed,,,1,,extra", "", "expected 8 fields, found 9"),
]


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
    assert captured.err.startswith("SourceError: 15 problems in")
    assert f"{path}:3: column 'status'" in captured.err
    assert not out.exists()
    assert not list(world.dir.glob(".never.gdm*"))
    assert captured.out == ""
