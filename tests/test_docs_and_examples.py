"""What the docs and the shipped examples promise is what the code does."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from gate_daemon.cli.command_line import EXIT_CODES
from gate_daemon.cli.gatectl import main as gatectl
from gate_daemon.core.decision import Checkpoint, evaluate
from gate_daemon.core.manifest import open_manifest
from gate_daemon.core.reasons import Outcome, Reason
from gate_daemon.core.times import parse_instant
from gate_daemon.provision.build import build_manifest
from gate_daemon.provision.event import load_event
from gate_daemon.provision.keyfiles import read_secret, write_keypair
from gate_daemon.provision.tickets import load_tickets
from tests.support import CLI_EXPIRES

ROOT = Path(__file__).resolve().parents[1]
DECISIONS = ROOT / "docs" / "DECISIONS.md"
CONFIG = ROOT / "config"


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """The shipped config examples, copied beside a fresh issuer key they refer to."""
    for name in ("event.example.toml", "tickets.example.csv"):
        shutil.copy(CONFIG / name, tmp_path / name)
    write_keypair(tmp_path / "issuer")
    write_keypair(tmp_path / "signer")
    return tmp_path


def test_every_reason_is_documented() -> None:
    text = DECISIONS.read_text()
    missing = [r.value for r in Reason if f"`{r.value}`" not in text]
    assert missing == []


def test_documented_exit_codes_match_gatectl() -> None:
    rows = re.findall(r"^\| `(\w+)` \|[^|]*\| (\d) \|$", DECISIONS.read_text(), flags=re.MULTILINE)
    assert {Outcome(name): int(code) for name, code in rows} == EXIT_CODES


def test_the_documented_json_answer_is_what_the_examples_give(examples: Path) -> None:
    text = DECISIONS.read_text()
    block = re.search(r"```json\n(.*?)```", text, flags=re.DOTALL)
    assert block is not None, "DECISIONS.md has no JSON example"
    documented = json.loads(block.group(1))
    event = load_event(examples / "event.example.toml")
    tickets = load_tickets(examples / "tickets.example.csv", event)
    signer = read_secret(examples / "signer.key")
    data = build_manifest(event, tickets, signer, version=1, issued_at=parse_instant("2026-12-01T00:00:00Z"))
    manifest = open_manifest(data, [signer.public])
    with (examples / "tickets.example.csv").open(newline="") as rows:
        code = next(
            row["code"] for row in csv.DictReader(rows) if row["ticket_id"] == documented["ticket_id"]
        )
    at = parse_instant(documented["opens_at"]) - documented["opens_in"]
    decision = evaluate(code, manifest, Checkpoint(), at)
    assert decision.as_dict() == documented


def test_the_examples_build_and_verify_with_gatectl(
    examples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = examples / "example.gdm"
    code = gatectl(
        [
            "manifest", "build", "--event", str(examples / "event.example.toml"),
            "--tickets", str(examples / "tickets.example.csv"), "--key", str(examples / "signer.key"),
            "--version", "1", "--expires", CLI_EXPIRES, "-o", str(out),
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert gatectl(["manifest", "verify", str(out), "--pub", str(examples / "signer.pub")]) == 0
    assert "ok: demo-2026 version 1, 9 tickets" in capsys.readouterr().out
