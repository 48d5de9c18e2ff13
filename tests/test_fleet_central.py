"""The central's fleet routes and SOP cards, in process: who may read them, what hostile input does.

``/fleet`` and ``/v1/fleet`` answer only clients in ``[central] fleet_allow``; a heartbeat
whose status is garbage (from a gate whose signature verified) still leaves a fleet that
answers, with unknowns; SOP cards are Markdown with raw HTML off, and every problem with a
card file is named on the card. ``[fleet]`` and ``fleet_allow`` mistakes name file, key and line.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import time
from pathlib import Path

import pytest

from gate_daemon.central.config import load_central_config
from gate_daemon.central.sop import FILES, MAX_CARD, SopCards
from gate_daemon.config.toml import SourceError
from tests.central_fixtures import make_central_world, serving

ROOT = Path(__file__).resolve().parents[1]


async def test_only_allowed_networks_read_the_fleet(tmp_path: Path) -> None:
    world = make_central_world(tmp_path / "central")
    elsewhere = dataclasses.replace(world.config, fleet_allow=(ipaddress.ip_network("10.0.0.0/8"),))
    async with serving(world, elsewhere) as running:
        for path in ("/fleet", "/v1/fleet", "/fleet/fleet.js"):
            refused = await running.http.get(path)
            assert (refused.status_code, refused.json()["error"]) == (403, "forbidden"), path
        assert (
            await running.http.get("/v1/challenge")
        ).status_code == 200  # the gates' routes are not affected
    async with serving(world) as running:
        page = await running.http.get("/fleet")
        assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert '<script src="/fleet/fleet.js" defer></script>' in page.text
        style = await running.http.get("/fleet/fleet.css")
        assert style.headers["Content-Type"] == "text/css; charset=utf-8"
        for path in ("/fleet/fleet.html", "/fleet/..%2Fapp.py", "/fleet/nothing.js"):
            missing = await running.http.get(path)
            assert (missing.status_code, missing.json()["error"]) == (404, "not_found"), path
        wrong = await running.http.post("/v1/fleet")
        assert (wrong.status_code, wrong.json()["error"]) == (405, "method_not_allowed")


async def test_the_command_list_answers_only_where_the_fleet_does(tmp_path: Path) -> None:
    world = make_central_world(tmp_path / "central")
    elsewhere = dataclasses.replace(world.config, fleet_allow=(ipaddress.ip_network("10.0.0.0/8"),))
    async with serving(world, elsewhere) as running:
        refused = await running.http.get("/v1/commands", params={"gate": "north-1"})
        assert (refused.status_code, refused.json()["error"]) == (403, "forbidden")
    async with serving(world) as running:
        listed = await running.http.get("/v1/commands", params={"gate": "north-1"})
        assert listed.status_code == 200 and listed.json()["gate"] == "north-1", listed.text


async def test_a_host_that_does_not_name_the_central_is_refused(tmp_path: Path) -> None:
    # A page at a DNS-rebound name, in a browser on the central's machine: the client is
    # 127.0.0.1, but Host names the attacker's domain.
    world = make_central_world(tmp_path / "central")
    named = dataclasses.replace(world.config, fleet_hosts=("central.venue.example",))
    async with serving(world, named) as running:
        port = running.url.rsplit(":", 1)[1]
        for path in ("/fleet", "/v1/fleet", "/fleet/fleet.js", "/v1/commands?gate=north-1"):
            for host in (
                f"rebound.attacker.example:{port}",
                "rebound.attacker.example",
                f"localhost.evil:{port}",
            ):
                refused = await running.http.get(path, headers={"Host": host})
                assert (refused.status_code, refused.json()["error"]) == (403, "wrong_host"), (path, host)
            for host in (
                f"127.0.0.1:{port}",
                f"localhost:{port}",
                "LOCALHOST.",
                f"[::1]:{port}",
                f"central.venue.example:{port}",
                "10.0.5.7",
            ):
                answer = await running.http.get(path, headers={"Host": host})
                assert answer.status_code == 200, (path, host, answer.text)
        assert (
            await running.http.get("/v1/challenge", headers={"Host": "rebound.attacker.example"})
        ).status_code == 200


async def test_a_garbage_status_in_a_heartbeat_reads_as_unknowns(tmp_path: Path) -> None:
    world = make_central_world(tmp_path / "central")
    hostile = {
        "manifest": {"active": "yes", "version": "7", "age_seconds": "old"},
        "clock": [1, 2],
        "upstream": {"pending": True, "up": "no"},
        "replication": {"peers": [None, {"lag_seconds": "9"}, 7], "conflicts": -1},
        "lane": {"state": {"closed": True}},
        "in_service": "maybe",
        "problem": '<img src=x onerror="alert(1)">',
        "decision": 12,
    }
    async with serving(world) as running:
        beat = {"sent_at": time.time(), "counters": {"scans": 3, "offline_scans": 2}, "status": hostile}
        answer = await running.gates["north-1"].request("POST", "/v1/heartbeat", beat)
        assert answer.status_code == 200, answer.text
        state = (await running.http.get("/v1/fleet")).json()
    gates = {g["gate"]: g for g in state["gates"]}
    north = gates["north-1"]
    assert north["reachable"] is True and north["conditions"] == []
    assert (north["scans"], north["offline_scans"], north["conflicts"]) == (3, 2, -1)
    assert north["lane"] is None and north["mode"] is None and north["manifest_version"] is None
    assert north["in_service"] is None and north["problem"] == hostile["problem"]  # kept as text
    assert gates["south-1"]["conditions"] == ["unreachable"]
    assert state["sop"] == {"central_down": None, "unreachable": None}  # no [central] sop


def test_sop_cards_are_markdown_without_raw_html_and_problems_are_named(tmp_path: Path) -> None:
    folder = tmp_path / "sop"
    folder.mkdir()
    cards = SopCards(folder)
    assert cards.card("lag_high") is None  # no file: no card
    (folder / "lag_high.md").write_text(
        "**Late.** <script>alert(1)</script>\n\n[click](javascript:alert(1)) and [docs](https://example.org/)\n"
    )
    shown = cards.card("lag_high")
    assert shown is not None
    assert "<strong>Late.</strong>" in shown and "&lt;script&gt;" in shown and "<script>" not in shown
    assert 'href="javascript' not in shown
    assert 'href="https://example.org/"' in shown
    (folder / "lag_high.md").write_text("Second version\n")
    os.utime(folder / "lag_high.md", ns=(1, 10**18))
    assert cards.card("lag_high") == "<p>Second version</p>\n"  # read again when the file changes
    (folder / "gate_unreachable.md").write_bytes(b"caf\xe9\n")
    assert "is not UTF-8 text (byte 3)" in (cards.card("unreachable") or "")
    (folder / "clock_off.md").write_text("x" * (MAX_CARD + 1))
    assert f"is over {MAX_CARD // 1024} KiB" in (cards.card("clock_off") or "")
    (folder / "manifest_old.md").mkdir()
    assert "is not a regular file" in (cards.card("manifest_old") or "")
    assert cards.card("../../etc/passwd") is None and cards.card("gate_unreachable") is None
    assert SopCards(None).card("lag_high") is None


def test_every_shipped_card_renders() -> None:
    cards = SopCards(ROOT / "config" / "sop")
    for name in FILES:
        shown = cards.card(name)
        assert shown is not None and "<strong>" in shown and "sop-problem" not in shown, name
    shipped = {path.stem for path in (ROOT / "config" / "sop").glob("*.md")}
    assert shipped == set(FILES.values())


@pytest.mark.parametrize(
    ("extra", "where", "said"),
    [
        ('fleet_allow = ["10.0.0.0/8", "lobby"]\n', "central.fleet_allow", "'lobby' is not a network"),
        ("fleet_allow = 10\n", "central.fleet_allow", "expected an array of strings"),
        (
            'fleet_hosts = ["central.venue", "evil/../x"]\n',
            "central.fleet_hosts",
            "'evil/../x' is not a host name",
        ),
        ("sop = 5\n", "central.sop", "expected a string"),
        ('\n[fleet]\nclock_s = "five"\n', "fleet.clock_s", "expected a number"),
        ("\n[fleet]\nsilent_s = 0\n", "fleet.silent_s", "outside 1..86400"),
        ("\n[fleet]\nbacklog = 0\n", "fleet.backlog", "outside 1..10000000"),
        ("\n[fleet]\nlag = 5\n", "fleet.lag", "unknown key"),
    ],
)
def test_fleet_settings_mistakes_name_file_key_and_line(
    tmp_path: Path, extra: str, where: str, said: str
) -> None:
    world = make_central_world(tmp_path / "central", extra=extra)
    with pytest.raises(SourceError) as caught:
        load_central_config(world.config_path)
    text = str(caught.value)
    assert str(world.config_path) in text and where in text and said in text, text
    line = world.config_path.read_text().splitlines().index(extra.strip().splitlines()[-1]) + 1
    assert f"central.toml:{line}: {where}:" in text, text


def test_fleet_settings_read(tmp_path: Path) -> None:
    extra = (
        'sop = "sop"\nfleet_allow = ["10.0.0.0/8", "::1"]\nfleet_hosts = ["Central.Venue.example."]\n'
        "\n[fleet]\nsilent_s = 20\nclock_s = 2.5\n"
    )
    config = load_central_config(make_central_world(tmp_path / "central", extra=extra).config_path)
    assert config.sop == tmp_path / "central" / "sop"
    assert [str(n) for n in config.fleet_allow] == ["10.0.0.0/8", "::1/128"]
    assert config.fleet_hosts == ("central.venue.example",)
    assert (config.thresholds.silent_s, config.thresholds.clock_s, config.thresholds.lag_s) == (20, 2.5, 60)
