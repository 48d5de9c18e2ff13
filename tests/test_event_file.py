"""event.toml: what loads, and every mistake reported with its key path and line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import gate_daemon.provision.event as event_module
from gate_daemon.core.times import parse_instant
from gate_daemon.errors import Problem, SourceError
from gate_daemon.provision.event import EventSpec, load_event
from gate_daemon.provision.keyfiles import write_keypair
from tests.support import EVENT_TOML, SAT_START, SUN_START, World


def line_no(text: str, snippet: str, nth: int = 0) -> int:
    """The 1-based line of the ``nth`` line containing ``snippet``."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if snippet in line]
    return hits[nth]


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(SourceError) as caught:
        load_event(path)
    assert caught.value.file == str(path)
    return caught.value.problems


def by_where(problems: list[Problem]) -> dict[str, Problem]:
    return {p.where: p for p in problems}


def write(world: World, text: str, name: str = "bad.toml") -> Path:
    path = world.dir / name
    path.write_text(text)
    return path


def test_the_demo_event_loads(world: World) -> None:
    event = world.event
    assert (event.event_id, event.name) == ("demo-2026", "Demo Night")
    assert [s.starts_at for s in event.sessions] == [SAT_START, SUN_START]
    assert [s.entry_opens_minutes for s in event.sessions] == [60, 30]
    assert [z.id for z in event.zones] == ["floor", "balcony"]
    assert event.revoked == ("T-REV",)
    assert event.ticket_keys == (world.issuer.public,)
    assert [(g.id, g.key) for g in event.gates] == [("north-1", world.gate.public)]


def test_inline_keys_default_opening_and_no_sessions(world: World) -> None:
    path = write(
        world,
        f'ticket_keys = ["{world.issuer.public.text()}"]\n[event]\nid = "e.1_x-2"\nname = "E"\n'
        '[[sessions]]\nid = "only"\nstarts_at = "2026-01-01T10:00:00+02:00"\n'
        'ends_at = "2026-01-01T12:00:00+02:00"\n',
    )
    event = load_event(path)
    assert event.ticket_keys == (world.issuer.public,)
    assert event.sessions[0].entry_opens_minutes == 60
    assert event.sessions[0].starts_at == parse_instant("2026-01-01T08:00:00Z")
    assert event.zones == () and event.gates == ()


def test_the_documented_example_is_a_valid_file(tmp_path: Path) -> None:
    """The example in event.py's docstring is what techs copy: it must load as written."""
    doc = event_module.__doc__
    assert doc is not None
    example = doc[doc.index("revoked = ") :]
    write_keypair(tmp_path / "issuer")
    write_keypair(tmp_path / "north-1")
    write_keypair(tmp_path / "sam")
    write_keypair(tmp_path / "staff")
    path = tmp_path / "event.toml"
    path.write_text(example)
    event = load_event(path)
    assert event.revoked == ("T-0042",)
    assert "legacy_codes = true" in example and event.legacy_codes is True
    assert len(event.ticket_keys) == 1 and [g.id for g in event.gates] == ["north-1"]
    assert [s.id for s in event.supervisors] == ["sam"]
    assert len(event.staff_keys) == 1 and event.revoked_staff == ("op-7",)


def test_typo_in_the_second_session(world: World) -> None:
    text = EVENT_TOML.replace(
        'starts_at = "2026-11-22T19:00:00+01:00"', 'strats_at = "2026-11-22T19:00:00+01:00"'
    )
    problems = by_where(problems_of(write(world, text)))
    typo = problems["sessions[1].strats_at"]
    assert typo.line == line_no(text, "strats_at")
    assert "unknown key" in typo.message and "starts_at" in typo.message
    missing = problems["sessions[1].starts_at"]
    assert "missing" in missing.message
    assert missing.line == line_no(text, "[[sessions]]", nth=1)
    assert set(problems) == {"sessions[1].strats_at", "sessions[1].starts_at"}


@pytest.mark.parametrize(
    "value", ["2026-11-21T19:00:00", '"2026-11-21T19:00:00"', '"2026-11-21 19:00"', "2026-11-21"]
)
def test_time_without_offset(world: World, value: str) -> None:
    text = EVENT_TOML.replace("starts_at = 2026-11-21T19:00:00Z", f"starts_at = {value}")
    [problem] = problems_of(write(world, text))
    assert problem.where == "sessions[0].starts_at"
    assert problem.line == line_no(text, f"starts_at = {value}")
    assert "offset" in problem.message or "RFC 3339" in problem.message


def test_not_a_time_at_all(world: World) -> None:
    text = EVENT_TOML.replace("ends_at = 2026-11-21T23:30:00Z", 'ends_at = "half past eleven"')
    [problem] = problems_of(write(world, text))
    assert problem.where == "sessions[0].ends_at"
    assert "not an RFC 3339 time" in problem.message


def test_session_that_ends_before_it_starts(world: World) -> None:
    text = EVENT_TOML.replace("ends_at = 2026-11-22T23:30:00Z", "ends_at = 2026-11-22T17:00:00Z")
    [problem] = problems_of(write(world, text))
    assert problem.where == "sessions[1].ends_at"
    assert problem.line == line_no(text, "ends_at = 2026-11-22T17:00:00Z")
    assert "later than starts_at" in problem.message


def test_every_problem_at_once(world: World) -> None:
    text = (
        EVENT_TOML.replace('id = "demo-2026"', 'id = "demo 2026"')
        .replace("entry_opens_minutes = 30", "entry_opens_minutes = 99999")
        .replace('id = "balcony"', 'id = "floor"')
        .replace('ticket_keys = ["issuer.pub"]', 'ticket_keys = ["missing.pub"]\ncolour = "red"')
        .replace('pub = "north-1.pub"', 'pub = "ed25519:AAAA"')
    )
    err_problems = problems_of(write(world, text))
    problems = by_where(err_problems)
    assert set(problems) == {
        "colour",
        "event.id",
        "sessions[1].entry_opens_minutes",
        "zones[1]",
        "ticket_keys[0]",
        "gates[0].pub",
    }
    assert problems["colour"].line == line_no(text, "colour")
    assert problems["event.id"].line == line_no(text, 'id = "demo 2026"')
    assert problems["sessions[1].entry_opens_minutes"].line == line_no(text, "99999")
    assert "outside 0..10080" in problems["sessions[1].entry_opens_minutes"].message
    assert "duplicate" in problems["zones[1]"].message
    assert problems["zones[1]"].line == line_no(text, "[[zones]]", nth=1)
    assert "missing.pub" in problems["ticket_keys[0]"].message
    assert "32 bytes" in problems["gates[0].pub"].message
    assert problems["gates[0].pub"].line == line_no(text, "ed25519:AAAA")


def test_rendered_error_names_file_line_and_key(world: World) -> None:
    text = EVENT_TOML.replace('name = "Floor"', 'name = "Floor"\nfloor_plan = 3')
    path = write(world, text)
    with pytest.raises(SourceError) as caught:
        load_event(path)
    assert f"{path}:{line_no(text, 'floor_plan')}: zones[0].floor_plan: unknown key" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[event]\nname = "x"\n', "event.id"),
        ('event = "demo"\n', "event"),
        ("[[event]]\nid = 'a'\nname = 'b'\n", "event"),
        ('sessions = "sat"\n[event]\nid = "a"\nname = "b"\n', "sessions"),
        ('revoked = [1, 2]\n[event]\nid = "a"\nname = "b"\n', "revoked"),
        ('revoked = [""]\n[event]\nid = "a"\nname = "b"\n', "revoked[0]"),
        ('[event]\nid = "a"\nname = 5\n', "event.name"),
        ('[event]\nid = "a"\nname = "b"\n[[gates]]\nid = "g"\n', "gates[0].pub"),
        (
            '[event]\nid = "a"\nname = "b"\n[[sessions]]\nid = "s"\nstarts_at = 5\nends_at = 6\n',
            "sessions[0].starts_at",
        ),
        ('[event]\nid = "a"\nname = "b"\n[[zones]]\nid = "way-too-long-zone-id"\n', "zones[0].id"),
    ],
)
def test_shapes_that_are_wrong(world: World, text: str, where: str) -> None:
    problems = problems_of(write(world, text))
    assert where in {p.where for p in problems}, problems


def test_not_toml(world: World) -> None:
    text = EVENT_TOML.replace('name = "Floor"', 'name = "Floor')
    [problem] = problems_of(write(world, text))
    assert "not valid TOML" in problem.message
    assert problem.line == line_no(text, 'name = "Floor')


def test_not_utf8_and_missing(world: World) -> None:
    path = world.dir / "latin1.toml"
    path.write_bytes('[event]\nid = "a"\nname = "Caf\u00e9"\n'.encode("latin-1"))
    [problem] = problems_of(path)
    assert "not UTF-8" in problem.message
    [problem] = problems_of(world.dir / "absent.toml")
    assert "cannot read" in problem.message


def test_deeply_nested_value_is_a_source_error(world: World) -> None:
    path = write(world, "revoked = " + "[" * 50_000 + "]" * 50_000 + "\n")
    [problem] = problems_of(path)
    assert "nested" in problem.message


@pytest.mark.parametrize("ref", ["a\\u0000b", "\\u0000"])
def test_key_path_with_a_nul_is_a_source_error(world: World, ref: str) -> None:
    text = EVENT_TOML.replace('ticket_keys = ["issuer.pub"]', f'ticket_keys = ["{ref}"]')
    [problem] = problems_of(write(world, text))
    assert problem.where == "ticket_keys[0]"


def test_key_path_that_is_a_folder(world: World) -> None:
    (world.dir / "keys").mkdir()
    text = EVENT_TOML.replace('ticket_keys = ["issuer.pub"]', 'ticket_keys = ["keys"]')
    [problem] = problems_of(write(world, text))
    assert problem.where == "ticket_keys[0]"
    assert "cannot read public key" in problem.message


# ------------------------------------------------------------------ legacy_codes


def test_legacy_codes_default_to_on(world: World) -> None:
    assert "legacy_codes" not in EVENT_TOML
    assert world.event.legacy_codes is True


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False)])
def test_legacy_codes_can_be_set(world: World, value: str, expected: bool) -> None:
    text = EVENT_TOML.replace('name = "Demo Night"', f'name = "Demo Night"\nlegacy_codes = {value}')
    assert load_event(write(world, text)).legacy_codes is expected


@pytest.mark.parametrize("value", ['"false"', '"no"', "0", "1", "[]"])
def test_legacy_codes_must_be_a_boolean(world: World, value: str) -> None:
    text = EVENT_TOML.replace('name = "Demo Night"', f'name = "Demo Night"\nlegacy_codes = {value}')
    [problem] = problems_of(write(world, text))
    assert problem.where == "event.legacy_codes"
    assert problem.line == line_no(text, "legacy_codes")
    assert "expected true or false" in problem.message


def test_legacy_codes_belongs_in_the_event_table(world: World) -> None:
    [problem] = problems_of(write(world, "legacy_codes = false\n" + EVENT_TOML))
    assert problem.where == "legacy_codes" and "unknown key" in problem.message


def test_event_spec_field_order() -> None:
    """EventSpec is built positionally: legacy_codes comes right after revoked."""
    names = [f.name for f in dataclasses.fields(EventSpec)]
    assert names == [
        "event_id",
        "name",
        "sessions",
        "zones",
        "revoked",
        "legacy_codes",
        "ticket_keys",
        "gates",
        "supervisors",
        "revoked_holders",
        "rotating_tolerance",
        "staff_keys",
        "revoked_staff",
        "capacity",
        "capacity_mode",
        "capacity_shares",
    ]
