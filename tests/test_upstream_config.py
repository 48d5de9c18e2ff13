"""The ``[upstream]`` section and ``[gate] decision``: bounds, URL shapes, what needs what; every
problem names the file, the key and its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gate_daemon.config.load import UPSTREAM_KEYS, load_config
from gate_daemon.config.sections import UpstreamSection
from gate_daemon.errors import SourceError
from tests.test_lan_config import BASE, line_of, problems

LAN = '[lan]\nlisten = "127.0.0.1:8443"\nkey = "gate.key"\n'
URL = "http://central.venue.lan:8700"


def write(folder: Path, upstream: str, *, lan: str = LAN, decision: str | None = None) -> Path:
    base = (
        BASE
        if decision is None
        else BASE.replace('state_dir = "/srv/gate"', f'state_dir = "/srv/gate"\ndecision = {decision}')
    )
    path = folder / "gate.toml"
    path.write_text(base + "\n" + lan + "\n[upstream]\n" + upstream)
    return path


def only_problem(path: Path, key: str, marker: str) -> str:
    """The one problem of ``path``, at ``key``, on the line holding ``marker``: its rendering."""
    error = problems(path)
    assert [p.where for p in error.problems] == [key], str(error)
    rendered = str(error)
    assert f"{path}:{line_of(path, marker)}: {key}: " in rendered, rendered
    return rendered


def test_without_a_url_the_central_is_off_and_defaults_hold(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""), {})
    assert config.upstream == UpstreamSection()
    assert config.upstream.url is None and config.gate.decision == "local"


def test_every_key_is_read(tmp_path: Path) -> None:
    values = {
        "timeout_ms": 2000,
        "batch": 100,
        "push_interval_ms": 250,
        "pull_interval_ms": 2000,
        "manifest_interval_s": 30,
        "manifest_timeout_s": 120,
        "heartbeat_interval_s": 5,
        "validate_timeout_ms": 800,
        "breaker_latency_ms": 400,
        "breaker_failures": 5,
        "probe_interval_ms": 1000,
        "probes": 4,
        "clock_warn_s": 9,
    }
    assert set(values) | {"url"} == UPSTREAM_KEYS
    text = f'url = "{URL}"\n' + "".join(f"{k} = {v}\n" for k, v in values.items())
    config = load_config(write(tmp_path, text, decision='"online-first"'), {})
    assert config.upstream == UpstreamSection(url=URL, **values)
    assert config.gate.decision == "online-first"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8700",
        "https://central.example.com",
        "http://central.lan:8700/",
        "http://central.lan/api/gate-v1",
        "http://[fd00::1]:8700",
        "http://[::1]",
    ],
)
def test_good_urls(tmp_path: Path, url: str) -> None:
    assert load_config(write(tmp_path, f'url = "{url}"\n'), {}).upstream.url == url


@pytest.mark.parametrize(
    "url",
    [
        "central.lan:8700",
        "ftp://central.lan",
        "http://",
        "http://central lan",
        "http://central.lan:8700?x=1",
        "http://user:pw@central.lan",
        "http://central.lan:8700#top",
        "http://central.lan:port",
        "http://[fd00::1",
        "http://central.lan:99999",
        "http://central.lan:0",
    ],
)
def test_bad_urls_are_named(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, f'url = "{url}"\n')
    rendered = only_problem(path, "upstream.url", "url =")
    assert "must be http(s)://HOST[:PORT][/PATH]" in rendered


def test_a_url_that_is_not_a_string_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "url = 8700\n")
    assert "expected a string" in only_problem(path, "upstream.url", "url =")


def test_a_url_too_long_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, f'url = "http://central.lan/{"a" * 600}"\n')
    only_problem(path, "upstream.url", "url =")


@pytest.mark.parametrize(
    ("key", "low", "high"),
    [
        ("timeout_ms", 100, 600_000),
        ("batch", 1, 500),
        ("push_interval_ms", 50, 3_600_000),
        ("pull_interval_ms", 100, 3_600_000),
        ("manifest_interval_s", 5, 86_400),
        ("manifest_timeout_s", 5, 3600),
        ("heartbeat_interval_s", 1, 86_400),
        ("validate_timeout_ms", 20, 10_000),
        ("breaker_failures", 1, 1000),
        ("probe_interval_ms", 100, 600_000),
        ("probes", 1, 100),
        ("clock_warn_s", 1, 86_400),
    ],
)
def test_each_number_is_bounded(tmp_path: Path, key: str, low: int, high: int) -> None:
    # The bounds themselves load (breaker_latency_ms kept within validate_timeout_ms).
    extra = "breaker_latency_ms = 10\n" if key == "validate_timeout_ms" else ""
    for value in (low, high):
        config = load_config(write(tmp_path, f"{key} = {value}\n{extra}"), {})
        assert getattr(config.upstream, key) == value
    for value in (low - 1, high + 1):
        rendered = only_problem(write(tmp_path, f"{key} = {value}\n{extra}"), f"upstream.{key}", f"{key} =")
        assert str(value) in rendered
    for value in ('"10"', "1.5", "true"):
        only_problem(write(tmp_path, f"{key} = {value}\n{extra}"), f"upstream.{key}", f"{key} =")


def test_an_unknown_key_is_named_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, f'url = "{URL}"\nretries = 3\n')
    rendered = only_problem(path, "upstream.retries", "retries =")
    assert "unknown" in rendered.lower() or "not a key" in rendered.lower(), rendered


def test_upstream_as_a_value_not_a_table_is_named(tmp_path: Path) -> None:
    path = tmp_path / "gate.toml"
    path.write_text(BASE.replace("[gate]", f'upstream = "{URL}"\n\n[gate]') + LAN)
    error = problems(path)
    assert [p.where for p in error.problems] == ["upstream"]


def test_a_breaker_latency_over_the_validate_timeout_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "validate_timeout_ms = 200\nbreaker_latency_ms = 201\n")
    rendered = only_problem(path, "upstream.breaker_latency_ms", "breaker_latency_ms =")
    assert "201 is longer than validate_timeout_ms (200)" in rendered
    # Equal is fine.
    config = load_config(write(tmp_path, "validate_timeout_ms = 200\nbreaker_latency_ms = 200\n"), {})
    assert config.upstream.breaker_latency_ms == 200


def test_the_default_breaker_latency_against_a_short_validate_timeout_is_named(tmp_path: Path) -> None:
    # breaker_latency_ms left at its default (300), validate_timeout_ms shortened under it.
    path = write(tmp_path, "validate_timeout_ms = 100\n")
    error = problems(path)
    assert [p.where for p in error.problems] == ["upstream.breaker_latency_ms"]
    assert "300 is longer than validate_timeout_ms (100)" in str(error)


def test_a_url_without_the_gates_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, f'url = "{URL}"\n', lan='[lan]\nlisten = "127.0.0.1:8443"\n')
    rendered = only_problem(path, "upstream.url", "url =")
    assert "[lan] key" in rendered
    # The key alone is enough: the gate need not listen on the LAN to talk to the central.
    config = load_config(write(tmp_path, f'url = "{URL}"\n', lan='[lan]\nkey = "gate.key"\n'), {})
    assert config.upstream.url == URL and not config.lan.enabled


@pytest.mark.parametrize("decision", ['"local"', '"online-first"'])
def test_decision_values(tmp_path: Path, decision: str) -> None:
    config = load_config(write(tmp_path, f'url = "{URL}"\n', decision=decision), {})
    assert config.gate.decision == decision.strip('"')


@pytest.mark.parametrize("decision", ['"online"', '"Online-First"', '""', "1", "true"])
def test_a_bad_decision_is_named(tmp_path: Path, decision: str) -> None:
    path = write(tmp_path, f'url = "{URL}"\n', decision=decision)
    only_problem(path, "gate.decision", "decision =")


def test_online_first_without_a_central_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "", decision='"online-first"')
    rendered = only_problem(path, "gate.decision", "decision =")
    assert "[upstream] url" in rendered


def test_several_upstream_problems_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, 'url = "ftp://x"\nbatch = 0\nprobes = 101\n', decision='"sometimes"')
    with pytest.raises(SourceError) as caught:
        load_config(path, {})
    wheres = {p.where for p in caught.value.problems}
    # online-first is not asked for (the decision is not a valid one), so only the four.
    assert wheres == {"upstream.url", "upstream.batch", "upstream.probes", "gate.decision"}
