"""A running gate fed garbage: stdin junk, broken images, corrupt manifests, hostile requests.

Every bad input gets a named answer or a named log line, and the daemon keeps serving:
the test always ends by scanning a good ticket through the same daemon.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import time
from pathlib import Path

import pytest

from gate_daemon.provision.keyfiles import write_keypair
from gate_daemon.provision.qrimage import write_qr
from tests.gate_process import (
    GateProcess,
    Launcher,
    drop_file,
    gate_daemon,
    gatectl,
    query,
    wait_until,
)
from tests.live import LiveWorld, write_gate_config


def no_traceback(text: str) -> None:
    assert "Traceback" not in text, text
    assert "Fatal Python error" not in text, text


# ------------------------------------------------------------------ stdin


def test_garbage_lines_on_stdin_are_invalid_payloads(
    tmp_path: Path, live: LiveWorld, launch: Launcher
) -> None:
    cfg = write_gate_config(tmp_path / "gate.toml", live, input_kind="stdin", repeat_window_ms=0)
    gate = launch(cfg)
    binary_10k = bytes(b for b in range(256) if b != 0x0A) * 41  # 10,455 bytes, no newline
    garbage = [
        b"\x00\x01\x02\x03\xff\xfe\xfd\x80",  # binary junk
        b"A" * 10240,  # 10 KB of printable text: cut, and too long to be a ticket
        binary_10k,  # 10 KB of every byte value
        b"\xed\xa0\x80",  # a lone surrogate, as UTF-8 would write one: invalid UTF-8
        b"\xff\xfeA100-2",  # invalid UTF-8 in front of a real code
        b"caf\xc3\xa9",  # valid UTF-8, not printable ASCII
        b"A100-2\x00",  # a real code with a NUL
        b"\x1b[31mA100-2",  # a terminal escape sequence
    ]
    blank = [b"", b"   \t ", b"\r", b"\x0b\x0c"]
    lines = [garbage[0], blank[0], *garbage[1:4], blank[1], *garbage[4:], blank[2], blank[3]]
    gate.write(b"\n".join(lines) + b"\nA100-2\n")
    gate.wait_output(r"ALLOW\s+ok\s+L-0002")
    rows = query(gate.ledger_path, "SELECT device, outcome, reason FROM scans ORDER BY hlc")
    assert rows == [("stdin", "deny", "invalid_payload")] * len(garbage) + [("stdin", "allow", "ok")]
    out = gate.stdout().splitlines()
    assert len([line for line in out if re.search(r"DENY\s+invalid_payload", line)]) == len(garbage)
    assert gate.alive
    assert gate.scan("A100-2")["outcome"] == "already_used"
    assert gate.stop() == 0
    no_traceback(gate.stderr())


# ------------------------------------------------------------------ images


def test_unreadable_images_are_logged_and_the_next_frame_still_scans(
    tmp_path: Path, live: LiveWorld, launch: Launcher
) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    write_qr("A100-2", frames / "old.png")  # present at start: an old frame, never scanned
    cfg = write_gate_config(tmp_path / "gate.toml", live, input_kind="images", images=frames)
    gate = launch(cfg)

    good = tmp_path / "good.png"
    write_qr("REF-LIVE-FLOOR-000001", good)
    png = good.read_bytes()
    bad = {
        "random.png": os.urandom(4096),
        "notes.jpg": b"these are my notes, not a photo\n" * 20,
        "truncated.png": png[: len(png) // 2],
        "empty.gif": b"",
    }
    for name, data in bad.items():
        drop_file(frames / name, data)
    for name in bad:
        gate.wait_output(
            rf"unreadable_image.*{re.escape(name)}|{re.escape(name)}.*unreadable_image", stream="stderr"
        )
    write_qr("A107-1", tmp_path / "second.png")
    drop_file(frames / "ticket.png", png)
    gate.wait_output(r"ALLOW\s+ok\s+L-0001")
    rows = query(gate.ledger_path, "SELECT device, ticket_id, outcome FROM scans")
    assert rows == [("images", "L-0001", "allow")]
    assert "L-0002" not in gate.stdout()
    # The same file again with new content is a new frame.
    drop_file(frames / "ticket.png", (tmp_path / "second.png").read_bytes())
    gate.wait_output(r"ALLOW\s+ok\s+L-0009")
    assert gate.alive
    assert gate.stop() == 0
    no_traceback(gate.stderr())
    # The unreadable files are counted in the ledger, for fleet ops.
    assert query(gate.ledger_path, "SELECT value FROM counters WHERE name = 'unreadable_images'") == [
        (len(bad),)
    ]


# ------------------------------------------------------------------ manifests


def test_corrupt_manifests_are_refused_and_the_old_one_stays(
    tmp_path: Path, live: LiveWorld, launch: Launcher
) -> None:
    drop = tmp_path / "drop.gdm"
    cfg = write_gate_config(tmp_path / "gate.toml", live, poll_ms=100, signals="none")
    gate = launch(cfg)
    v2 = live.manifest(2)
    tampered = bytearray(v2)
    tampered[-40] ^= 0x01
    header_flip = bytearray(v2)
    header_flip[60] ^= 0x01
    _, _, rogue = write_keypair(tmp_path / "rogue")
    other_event = dataclasses.replace(live, event=dataclasses.replace(live.event, event_id="other-2026"))
    cases: list[tuple[str, bytes, set[str]]] = [
        ("random bytes", os.urandom(2000), {"malformed"}),
        ("truncated", v2[: len(v2) // 2], {"malformed", "tampered"}),
        ("tampered body", bytes(tampered), {"tampered"}),
        ("tampered header", bytes(header_flip), {"bad_signature", "malformed"}),
        ("empty", b"", {"malformed"}),
        ("signed by an untrusted key", live.manifest(3, key=rogue), {"unknown_key"}),
        ("expired", live.manifest(4, expires_in=-30), {"expired"}),
        ("another event", other_event.manifest(5), {"wrong_event"}),
    ]
    seen = 0
    for number, (what, data, reasons) in enumerate(cases):
        drop_file(drop, data)
        seen = wait_refusal(gate, seen, what)
        status = json.loads(gatectl("status", "--json", "--socket", gate.socket_path).stdout)
        manifest = status["manifest"]
        assert manifest["active"] is True and manifest["version"] == 1, what
        assert manifest["last_refusal"]["reason"] in reasons, (what, manifest["last_refusal"])
        assert manifest["last_refusal"]["detail"]
        reason = manifest["last_refusal"]["reason"]
        assert re.search(rf"ERROR .*manifest {re.escape(str(drop))} refused \({reason}\)", gate.stderr()), (
            what
        )
        assert gate.scan(f"A10{number % 9}-1")["recorded"] is True, what
    # A FIFO dropped in place never blocks the gate.
    fifo = tmp_path / ".fifo"
    os.mkfifo(fifo)
    os.replace(fifo, drop)
    wait_refusal(gate, seen, "a FIFO")
    assert gate.status()["manifest"]["last_refusal"]["reason"] == "unreadable"
    text = gatectl("status", "--socket", gate.socket_path).stdout
    assert "manifest  version 1" in text and "refused " in text
    assert gate.counters()["manifest_activations"] == 1
    assert gate.stop() == 0
    no_traceback(gate.stderr())

    # None of them replaced the gate's own copy: after a restart, with the last one still there...
    drop.unlink()
    drop_file(drop, other_event.manifest(6))
    again = launch(cfg)
    assert again.status()["manifest"]["version"] == 1
    assert "refused (wrong_event)" in again.stderr()
    assert again.scan("A100-2")["outcome"] == "allow"
    # ... and with none at all.
    assert again.stop() == 0
    drop.unlink()
    third = launch(cfg)
    assert third.status()["manifest"]["version"] == 1
    assert third.scan("A100-2")["outcome"] == "already_used"


def wait_refusal(gate: GateProcess, seen: int, what: str) -> int:
    """Wait until the gate has refused one more manifest than ``seen``; the new total."""

    def refusals() -> int:
        return sum(v for k, v in gate.counters().items() if k.startswith("manifest_refused:"))

    wait_until(lambda: refusals() > seen, what=f"the {what} manifest to be refused")
    return refusals()


# ------------------------------------------------------------------ control requests


def test_bad_control_requests_get_named_errors(tmp_path: Path, live: LiveWorld, launch: Launcher) -> None:
    gate = launch(write_gate_config(tmp_path / "gate.toml", live, signals="none"))

    def error_of(line: bytes) -> str:
        (answer,) = gate.raw(line)
        assert answer["ok"] is False, answer
        assert answer["message"]
        return str(answer["error"])

    assert error_of(b"this is not json\n") == "not_json"
    assert error_of(b"[1, 2]\n") == "not_json"
    assert error_of(b"\xff\xfe{}\n") == "not_json"
    assert error_of(b"[" * 30000 + b"]" * 30000 + b"\n") == "not_json"  # nested past the recursion limit
    assert error_of(b'{"op": "launch"}\n') == "unknown_op"
    assert error_of(b'{"op": "scan", "payload": ""}\n') == "bad_request"
    assert error_of(b'{"op": "scan", "payload": 7}\n') == "bad_request"
    assert error_of(b'{"op": "scan", "payload": "' + b"x" * 5000 + b'"}\n') == "bad_request"
    assert error_of(b'{"op": "scan", "payload": "A100-2", "scan_id": "nope"}\n') == "bad_request"
    assert error_of(b'{"op": "scan", "payload": "A100-2", "kind": "sideways"}\n') == "bad_request"
    assert error_of(b'{"op": "scan", "payload": "A100-2", "operator": ""}\n') == "bad_request"
    assert error_of(b'{"op": "scan", "payload": "A100-2", "admit": true}\n') == "bad_request"
    assert error_of(b"x" * (100 * 1024) + b"\n") == "too_large"
    assert error_of(b"{" * (70 * 1024)) == "too_large"  # no newline at all

    # A lone surrogate (JSON can carry one) is a payload like any other: invalid, recorded.
    (answer,) = gate.raw(b'{"op": "scan", "payload": "\\ud800A100-2"}\n')
    assert answer["ok"] is True
    assert answer["decision"]["reason"] == "invalid_payload"
    assert answer["decision"]["recorded"] is True

    # One bad line does not end the connection; answers come in order.
    answers = gate.raw(
        b'{"op": "status"}\nnot json\n\n{"op": "scan", "payload": "A100-2"}\n{"op": "counters"}\n'
    )
    assert [a["ok"] for a in answers] == [True, False, True, True]
    assert answers[1]["error"] == "not_json"
    assert answers[2]["decision"]["outcome"] == "allow"

    # Clients that hang up early: before sending, mid-line, and before reading the answer.
    for data in (b"", b'{"op": "sta', b'{"op": "scan", "payload": "A107-1"}\n'):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(gate.socket_path))
            sock.sendall(data)
    time.sleep(0.2)
    assert gate.alive
    assert gate.scan("A100-2")["outcome"] == "already_used"
    scans = query(gate.ledger_path, "SELECT reason FROM scans ORDER BY hlc")
    # The surrogate, the first A100-2, maybe the hung-up A107-1 (recorded, never read), the last A100-2.
    assert scans[:2] == [("invalid_payload",), ("ok",)] and scans[-1] == ("already_used",)
    assert gate.counters()["scans"] == len(scans)
    assert gate.stop() == 0
    no_traceback(gate.stderr())


# ------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("what", "edit", "expected"),
    [
        (
            "typo",
            lambda t: t.replace('color = "never"', 'colour = "never"'),
            r":(\d+): signals\.colour: unknown key",
        ),
        (
            "bad value",
            lambda t: t.replace("repeat_window_ms = 3000", "repeat_window_ms = -5"),
            r":(\d+): gate\.repeat_window_ms",
        ),
        ("bad type", lambda t: t.replace("poll_ms = 200", 'poll_ms = "fast"'), r":(\d+): manifest\.poll_ms"),
        ("bad kind", lambda t: t.replace('kind = "none"', 'kind = "webcam"'), r":(\d+): input\.kind"),
        ("not toml", lambda t: t.replace("[signals]", "[signals"), r":(\d+): not valid TOML"),
    ],
)
def test_a_bad_config_exits_1_naming_where_and_creates_nothing(
    tmp_path: Path, live: LiveWorld, what: str, edit: object, expected: str
) -> None:
    state = tmp_path / "fresh-state"
    cfg = write_gate_config(tmp_path / "gate.toml", live, state_dir=state)
    original = cfg.read_text()
    assert callable(edit)
    text = edit(original)
    assert text != original, what
    cfg.write_text(text)
    result = gate_daemon("--config", cfg)
    assert result.returncode == 1, result
    assert result.stdout == ""
    match = re.search(re.escape(str(cfg)) + expected, result.stderr)
    assert match, result.stderr
    changed = [
        n for n, (a, b) in enumerate(zip(original.splitlines(), text.splitlines(), strict=True), 1) if a != b
    ]
    assert int(match.group(1)) in changed, (result.stderr, changed)
    no_traceback(result.stderr)
    assert not state.exists(), "a refused config created the state directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drop.gdm", "gate.toml", "world"]


def test_a_config_that_is_not_there_or_not_a_file(tmp_path: Path) -> None:
    for target in (tmp_path / "missing.toml", tmp_path):
        result = gate_daemon("--config", target)
        assert result.returncode == 1
        assert result.stderr.startswith(f"SourceError: 1 problem in {target}\n{target}: cannot read")
