"""gate-central as a person runs it: config errors, check-config, report, a real process, the OpenAPI doc."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gate_daemon.central.app import ROUTES
from gate_daemon.central.cli import main
from gate_daemon.central.config import load_central_config
from gate_daemon.errors import SourceError
from tests.central_fixtures import make_central_world, serving

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("line", "where", "message"),
    [
        ('colour = "red"', "central.colour", "unknown key"),
        ('listen = "everywhere"', "central.listen", "HOST:PORT"),
        ("poll_ms = 5", "central.poll_ms", "outside 100..3600000"),
        ('id = "no spaces"', "central.id", "must match"),
        ("rate = true", "central.rate", "expected an integer"),
    ],
)
def test_config_errors_name_file_key_and_line(tmp_path: Path, line: str, where: str, message: str) -> None:
    path = tmp_path / "central.toml"
    path.write_text(
        f'# a comment\n[central]\nstate_dir = "s"\nevent = "e"\ntickets = "t"\nkey = "k"\n{line}\n'
    )
    with pytest.raises(SourceError) as caught:
        load_central_config(path)
    (problem,) = caught.value.problems
    assert (problem.where, problem.line) == (where, 7)
    assert message in problem.message
    assert f"{path}:7: {where}:" in str(caught.value)


def test_config_needs_its_paths_and_resolves_them_beside_itself(tmp_path: Path) -> None:
    path = tmp_path / "central.toml"
    path.write_text("[central]\n")
    with pytest.raises(SourceError) as caught:
        load_central_config(path)
    assert {p.where for p in caught.value.problems} == {
        f"central.{k}" for k in ("event", "key", "state_dir", "tickets")
    }
    path.write_text('[central]\nstate_dir = "s"\nevent = "e.toml"\ntickets = "t.csv"\nkey = "k.key"\n')
    config = load_central_config(path)
    assert (config.event, config.state_dir, config.host, config.port) == (
        tmp_path / "e.toml",
        tmp_path / "s",
        "127.0.0.1",
        8700,
    )


def test_check_config_and_errors_as_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world = make_central_world(tmp_path)
    assert main(["check-config", str(world.config_path)]) == 0
    assert "event live-2026, 10 tickets, 2 gates" in capsys.readouterr().out
    world.tickets_path.write_text("ticket_id,status\nX,lost\n")
    assert main(["check-config", str(world.config_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("SourceError: 1 problem in") and "tickets.csv:2" in err
    assert main(["report", "--config", str(world.config_path)]) == 1
    assert capsys.readouterr().err.startswith("StoreError: ")


async def test_report_command_shows_checkins_conflicts_and_gates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = make_central_world(tmp_path)
    async with serving(world) as running:
        north, south = running.gates["north-1"], running.gates["south-1"]
        await north.push(north.record("L-0002", hlc=1 << 16))
        await south.push(south.record("L-0002", hlc=2 << 16))
        await north.request("POST", "/v1/heartbeat", {"sent_at": 1.0, "counters": {"scans": 3}, "status": {}})
    assert main(["report", "--config", str(world.config_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["checkins"] == 2 and len(report["conflicts"]) == 1
    assert report["gates"][0]["counters"] == {"scans": 3}
    assert main(["report", "--config", str(world.config_path)]) == 0
    text = capsys.readouterr().out
    assert "conflicts  1" in text and "north-1: last heartbeat" in text and "scans=3" in text


def test_gate_central_runs_as_a_process_and_stops_on_sigterm(tmp_path: Path) -> None:
    world = make_central_world(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "gate_daemon.central.cli", "--config", str(world.config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"serving (http://127\.0\.0\.1:\d+) \(manifest 1\)", line)
        assert match, line + (process.stderr.read() if process.stderr else "")
        answer = httpx.get(match.group(1) + "/v1/challenge", timeout=10)
        assert answer.status_code == 200 and answer.json()["central"] == "test-central"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_a_bad_config_stops_the_process_with_one_line(tmp_path: Path) -> None:
    world = make_central_world(tmp_path)
    world.config_path.write_text(world.config_path.read_text() + "colour = 1\n")
    done = subprocess.run(
        [sys.executable, "-m", "gate_daemon.central.cli", "--config", str(world.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("SourceError: 1 problem in") and "central.colour" in done.stderr
    assert "Traceback" not in done.stderr


def test_every_route_is_in_the_openapi_document() -> None:
    text = (ROOT / "docs" / "upstream.openapi.yaml").read_text()
    assert text.startswith("openapi: 3.1")
    paths: dict[str, set[str]] = {}
    current = None
    for line in text.splitlines():
        if re.fullmatch(r"  (/v1/[a-z/]+):", line):
            current = line.strip().rstrip(":")
            paths[current] = set()
        elif current and re.fullmatch(r"    (get|post):", line):
            paths[current].add(line.strip().rstrip(":").upper())
        elif not line.startswith("  ") and line.strip():
            current = None
    served = {}
    for method, path, _ in ROUTES:
        served.setdefault(path, set()).add(method)
    assert paths == served
    names = """unsigned bad_nonce stale_nonce replayed unknown_gate bad_signature busy no_manifest not_json
    bad_request too_large gate_ahead uuid_reused not_found rate_limited applied duplicate conflict rejected
    seq_taken already_voided unknown_origin bad_record double_entry"""
    for name in names.split():
        assert name in text, name


def test_the_shipped_example_config_checks_with_the_shipped_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from gate_daemon.provision.keyfiles import write_keypair

    for name in ("central.example.toml", "event.example.toml", "tickets.example.csv"):
        shutil.copy(ROOT / "config" / name, tmp_path / name)
    write_keypair(tmp_path / "issuer")
    write_keypair(tmp_path / "signer")
    assert main(["check-config", str(tmp_path / "central.example.toml")]) == 0
    assert "central central on 127.0.0.1:8700, event demo-2026, 9 tickets" in capsys.readouterr().out
