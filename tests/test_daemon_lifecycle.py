"""gate-daemon as systemd runs it: readiness, watchdog, stop signals, logs, CLI surfaces.

Every test starts the real ``gate-daemon`` console script as a child process with its
own notify socket (``tests.gate_process``) and talks to it over its real control socket
or through the real ``gatectl``.
"""

from __future__ import annotations

import itertools
import json
import os
import pwd
import re
import signal
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from gate_daemon.core.times import parse_instant
from gate_daemon.errors import GateError
from tests.gate_process import (
    GateProcess,
    Launcher,
    drop_file,
    gate_daemon,
    gatectl,
    integrity,
    query,
    wait_until,
)
from tests.live import LiveWorld, make_live_world, write_gate_config

EXIT_CODES = {"allow": 0, "deny": 3, "already_used": 4, "too_early": 5}


def config(tmp_path: Path, world: LiveWorld, name: str = "gate.toml", **options: Any) -> Path:
    return write_gate_config(tmp_path / name, world, **options)


# ------------------------------------------------------------------ readiness and watchdog


def test_ready_comes_after_the_socket_answers_and_the_manifest_is_active(
    tmp_path: Path, live: LiveWorld, launch: Launcher
) -> None:
    gate = launch(config(tmp_path, live), ready=False)
    ready = gate.wait_ready()
    # No retry: READY=1 promises that the socket accepts and the manifest is active now.
    status = gate.status()
    assert status["manifest"]["active"] is True
    assert status["manifest"]["version"] == 1
    fields = ready.split("\n")
    assert f"MAINPID={gate.pid}" in fields
    (line,) = [f for f in fields if f.startswith("STATUS=")]
    assert "manifest v1" in line
    assert gate.ledger_path.exists()
    assert gate.scan("A100-2")["outcome"] == "allow"
    assert gate.alive


def test_watchdog_pings_keep_arriving_within_the_interval(
    tmp_path: Path, live: LiveWorld, launch: Launcher
) -> None:
    usec = 600_000
    gate = launch(config(tmp_path, live), watchdog_usec=usec)
    start = time.monotonic()
    scanned = 0
    while time.monotonic() - start < 2.0:  # pings go on while scans are being committed
        gate.scan(f"A{100 + scanned % 9}-1")
        scanned += 1
        time.sleep(0.01)
    fields = gate.timed_fields()
    names = [f for _, f in fields]
    assert names.index("READY=1") < names.index("WATCHDOG=1"), "a ping before READY=1"
    pings = [at for at, f in fields if f == "WATCHDOG=1"]
    assert len(pings) >= 5, pings
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    gaps.append(time.monotonic() - pings[-1])
    assert max(gaps) < usec / 1e6, f"a gap of {max(gaps):.3f} s between pings"


def test_no_watchdog_pings_without_a_watchdog_or_for_another_pid(
    tmp_path: Path, live: LiveWorld, launch: Launcher
) -> None:
    cfg = config(tmp_path, live)
    plain = launch(cfg)
    other = launch(
        config(tmp_path, live, "other.toml", gate_id="south-1", state_dir=tmp_path / "other"),
        watchdog_usec=200_000,
        env={"WATCHDOG_PID": "1"},  # systemd meant another process: not ours to ping for
    )
    time.sleep(0.8)
    assert "WATCHDOG=1" not in plain.fields()
    assert "WATCHDOG=1" not in other.fields()
    assert plain.alive and other.alive


# ------------------------------------------------------------------ stopping


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_stops_cleanly(tmp_path: Path, live: LiveWorld, launch: Launcher, signum: int) -> None:
    gate = launch(config(tmp_path, live, input_kind="stdin"))
    sock = gate.socket_path
    ledger = gate.ledger_path
    allowed = gate.scan("A100-2")
    assert allowed["outcome"] == "allow"
    gate.write(b"A102-1\n")
    gate.wait_output(r"DENY\s+canceled")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:  # a gatectl left open
        idle.settimeout(10)
        idle.connect(str(sock))
        gate.send_signal(signum)
        assert gate.wait() == 0, gate.stderr()
        assert idle.recv(100) == b"", "the idle connection was not closed"
    fields = gate.fields()
    assert "STOPPING=1" in fields
    assert fields.index("READY=1") < fields.index("STOPPING=1")
    assert not sock.exists(), "the control socket file was left behind"
    assert integrity(ledger) == "ok"
    rows = query(ledger, "SELECT uuid, outcome, reason, device FROM scans ORDER BY hlc")
    assert rows[0] == (allowed["scan_id"], "allow", "ok", f"control:{pwd.getpwuid(os.getuid()).pw_name}")
    assert [r[1:] for r in rows[1:]] == [("deny", "canceled", "stdin")]
    wal = ledger.with_name(ledger.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "the WAL was not checkpointed at close"
    err = gate.stderr()
    assert "stopped" in err
    assert "Traceback" not in err
    assert "Fatal Python error" not in err


def test_stop_while_scans_arrive_exits_zero_and_loses_nothing_answered(
    tmp_path: Path, live: LiveWorld, launch: Launcher
) -> None:
    gate = launch(config(tmp_path, live, signals="none"))
    answered: list[dict[str, object]] = []
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        answered.append(gate.scan(f"A10{len(answered) % 9}-1"))
    gate.terminate()
    # Scans keep knocking while it stops: each either gets an answer or no connection.
    for n in range(50):
        try:
            answered.append(gate.scan(f"A10{n % 9}-1", timeout=5))
        except GateError:  # refused, reset or unreachable: nothing was shown
            break
    assert gate.wait() == 0, gate.stderr()
    assert "Traceback" not in gate.stderr()
    recorded = dict(query(gate.ledger_path, "SELECT uuid, outcome FROM scans"))
    for decision in answered:
        if decision["recorded"]:
            assert recorded[decision["scan_id"]] == decision["outcome"]
    assert integrity(gate.ledger_path) == "ok"


# ------------------------------------------------------------------ logs


def test_logs_under_the_journal_carry_priorities(tmp_path: Path, live: LiveWorld, launch: Launcher) -> None:
    gate = launch(config(tmp_path, live, poll_ms=100), journal=True)
    drop_file(tmp_path / "drop.gdm", b"not a manifest at all")
    refused = gate.wait_output("refused", stream="stderr")
    assert refused[0].startswith("<3>"), refused
    gate.scan("A100-2")
    assert gate.stop() == 0
    lines = gate.stderr().splitlines()
    assert lines
    for line in lines:
        assert re.match(r"<[0-7]>\S", line), f"no priority prefix: {line!r}"
    assert any(line.startswith("<6>") and "activated" in line for line in lines)
    assert any(line.startswith("<6>") and "ready" in line for line in lines)


@pytest.mark.parametrize("journal", ["unset", "another stream"])
def test_logs_on_a_terminal_have_no_priority_prefix(
    tmp_path: Path, live: LiveWorld, launch: Launcher, journal: str
) -> None:
    env = {"JOURNAL_STREAM": "1:2"} if journal == "another stream" else {}
    gate = launch(config(tmp_path, live, poll_ms=100), env=env)
    drop_file(tmp_path / "drop.gdm", b"not a manifest at all")
    refused = gate.wait_output("refused", stream="stderr")
    assert re.match(r"\d\d:\d\d:\d\d ERROR\s", refused[0]), refused
    assert gate.stop() == 0
    lines = gate.stderr().splitlines()
    assert lines
    assert not [line for line in lines if line.startswith("<")]
    for line in lines:
        assert re.match(r"\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL)\s", line), line


# ------------------------------------------------------------------ command line


def test_check_config_accepts_a_good_config(tmp_path: Path, live: LiveWorld) -> None:
    cfg = config(tmp_path, live)
    result = gate_daemon("check-config", cfg)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{cfg}: OK: gate north-1 for event live-2026")
    assert not (tmp_path / "state").exists(), "check-config must not create the state directory"


def test_a_config_with_a_typo_names_file_line_and_key(tmp_path: Path, live: LiveWorld) -> None:
    cfg = config(tmp_path, live)
    text = cfg.read_text().replace("repeat_window_ms", "repeat_windw_ms")
    cfg.write_text(text)
    line = text.splitlines().index(next(t for t in text.splitlines() if "repeat_windw_ms" in t)) + 1
    for args in (("check-config", cfg), ("--config", cfg)):
        result = gate_daemon(*args)
        assert result.returncode == 1, result
        assert f"{cfg}:{line}: gate.repeat_windw_ms: unknown key" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "state").exists()


def test_gate_daemon_without_config_is_a_usage_error() -> None:
    result = gate_daemon()
    assert result.returncode == 2
    assert "--config" in result.stderr
    assert "usage:" in result.stderr


# ------------------------------------------------------------------ out of service


def test_a_gate_without_manifest_is_out_of_service_but_serves(tmp_path: Path, launch: Launcher) -> None:
    world = make_live_world(tmp_path / "world")
    cfg = config(tmp_path, world, poll_ms=100)
    gate = launch(cfg, ready=False)
    ready = gate.wait_ready()
    assert "OUT OF SERVICE" in ready
    assert "OUT OF SERVICE" in gate.stderr()
    sock = gate.socket_path
    # Anything that parses as a ticket code is denied for want of a manifest (parsing comes first).
    for payload in ("A100-2", "REF-LIVE-FLOOR-000001", world.sign("W-1", session="now"), "junk"):
        result = gatectl("scan", payload, "--socket", sock)
        assert result.returncode == 3, result
        decision = json.loads(result.stdout)
        assert decision["reason"] == "manifest_missing"
        assert decision["recorded"] is True
    status = json.loads(gatectl("status", "--json", "--socket", sock).stdout)
    assert status["manifest"]["active"] is False
    text = gatectl("status", "--socket", sock)
    assert "NONE: out of service" in text.stdout
    assert gate.alive
    assert len(query(gate.ledger_path, "SELECT * FROM scans WHERE reason = 'manifest_missing'")) == 4
    # A manifest dropped later brings it into service without a restart.
    drop_file(tmp_path / "drop.gdm", world.manifest(1))
    wait_until(lambda: gate.status()["manifest"]["active"], what="the manifest to activate")
    assert gate.scan("A100-2")["outcome"] == "allow"


# ------------------------------------------------------------------ the control socket path


def test_a_second_daemon_on_the_same_socket_exits_and_leaves_the_first_alone(
    tmp_path: Path, live: LiveWorld, launch: Launcher
) -> None:
    first = launch(config(tmp_path, live))
    sock = first.socket_path
    second = launch(
        config(tmp_path, live, "second.toml", state_dir=tmp_path / "state-2", socket=sock), ready=False
    )
    assert second.wait() == 1
    err = second.stderr()
    assert f"another gate-daemon is already listening on {sock}" in err
    assert "Traceback" not in err
    assert "READY=1" not in second.fields()
    assert sock.exists()
    assert first.alive
    assert first.scan("A100-2")["outcome"] == "allow"


def test_a_stale_socket_is_replaced_but_another_file_is_not(
    tmp_path: Path, live: LiveWorld, launch: Launcher
) -> None:
    sock = tmp_path / "gate.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock))  # bound, never listening: what a killed daemon leaves
    stale.close()
    gate = launch(config(tmp_path, live, socket=sock))
    assert gate.scan("A100-2")["outcome"] == "allow"
    assert gate.stop() == 0

    other = tmp_path / "not-a-socket"
    other.write_text("precious")
    blocked = launch(config(tmp_path, live, "blocked.toml", socket=other), ready=False)
    assert blocked.wait() == 1
    assert "is not a socket; refusing to replace it" in blocked.stderr()
    assert other.read_text() == "precious"


# ------------------------------------------------------------------ inputs and gatectl


def test_stdin_lines_are_scanned_shown_and_recorded(
    tmp_path: Path, live: LiveWorld, launch: Launcher
) -> None:
    gate = launch(config(tmp_path, live, input_kind="stdin"), watchdog_usec=400_000)
    gate.write(b"A100-2\nA100-2\nA102-1\n\n   \nA103-1\r\n")
    gate.wait_output(r"DENY\s+wrong_zone\s+L-0005")
    out = gate.stdout().splitlines()
    assert len(out) == 3, out  # the second A100-2 is the same sighting (repeat window)
    assert re.search(r"ALLOW\s+ok\s+L-0002\s+Entry allowed", out[0])
    assert re.search(r"DENY\s+canceled\s+L-0004", out[1])
    assert re.search(r"DENY\s+wrong_zone\s+L-0005", out[2])
    rows = query(
        gate.ledger_path, "SELECT device, operator, ticket_id, outcome, reason FROM scans ORDER BY hlc"
    )
    assert rows == [
        ("stdin", None, "L-0002", "allow", "ok"),
        ("stdin", None, "L-0004", "deny", "canceled"),
        ("stdin", None, "L-0005", "deny", "wrong_zone"),
    ]
    assert query(gate.ledger_path, "SELECT ticket_id, kind FROM redemptions") == [("L-0002", "entry")]
    # End of input: the gate keeps serving its control socket, and the watchdog keeps pinging.
    gate.close_stdin()
    gate.wait_output("input stdin ended", stream="stderr")
    pings = gate.fields().count("WATCHDOG=1")
    wait_until(lambda: gate.fields().count("WATCHDOG=1") > pings + 2, what="watchdog pings after EOF")
    assert gate.scan("A100-2")["outcome"] == "already_used"
    assert gate.alive


def test_gatectl_scan_status_and_counters_end_to_end(
    tmp_path: Path, live: LiveWorld, launch: Launcher
) -> None:
    gate = launch(config(tmp_path, live, signals="none"))
    sock = str(gate.socket_path)

    def scan(payload: str, *extra: str) -> dict[str, object]:
        result = gatectl("scan", payload, "--socket", sock, *extra)
        assert result.stderr == ""
        decision: dict[str, object] = json.loads(result.stdout)
        assert result.returncode == EXIT_CODES[str(decision["outcome"])], result
        return decision

    first = scan("A100-2", "--operator", "anna")
    assert (first["outcome"], first["ticket_id"]) == ("allow", "L-0002")
    again = scan("A100-2")
    assert (again["outcome"], again["reason"]) == ("already_used", "already_used")
    assert again["last_entry_gate"] == "north-1"
    assert abs(parse_instant(str(again["last_entry_at"])) - time.time()) < 120
    assert scan("A102-1")["reason"] == "canceled"
    assert scan("A101-1")["reason"] == "unpaid"
    assert scan("A103-1")["reason"] == "wrong_zone"
    assert scan("A104-1")["reason"] == "wrong_session"
    assert scan("ORDER-NOBODY")["reason"] == "unknown_ticket"
    assert scan("caf\u00e9")["reason"] == "invalid_payload"
    opens = int(time.time()) + 3600
    early = scan(live.sign("W-EARLY", session="now", zone="floor", valid_from=opens))
    assert (early["outcome"], early["reason"]) == ("too_early", "too_early")
    assert parse_instant(str(early["opens_at"])) == opens
    signed = live.sign("W-1", session="now", zone="floor")
    assert scan(signed)["outcome"] == "allow"
    # Re-entry: in, not twice, out (--exit), in again.
    assert scan("A106-1")["outcome"] == "allow"
    assert scan("A106-1")["outcome"] == "already_used"
    out = scan("A106-1", "--exit")
    assert out["outcome"] == "allow"
    assert scan("A106-1")["outcome"] == "allow"
    # A retried scan id is the same scan: recorded once, answered the same, marked duplicate.
    scan_id = str(uuid.uuid4())
    once = scan("A107-1", "--scan-id", scan_id)
    twice = scan("A107-1", "--scan-id", scan_id)
    assert once["outcome"] == twice["outcome"] == "allow"
    assert twice["duplicate"] is True and "duplicate" not in once
    assert twice["scan_id"] == once["scan_id"] == scan_id
    assert twice["record_id"] == once["record_id"] != scan_id  # recorded under the gate's own id
    # The payload from stdin ('-').
    piped = gatectl("scan", "-", "--socket", sock, stdin=b"A108-1\n")
    assert piped.returncode == 0 and json.loads(piped.stdout)["ticket_id"] == "L-0010"

    ledger = gate.ledger_path
    rows = query(ledger, "SELECT uuid, operator, kind FROM scans")
    assert len(rows) == 16  # 17 scans, one of them a retry
    by_id = {r[0]: r for r in rows}
    assert by_id[str(first["record_id"])][1] == "anna"
    assert by_id[str(out["record_id"])][2] == "exit"
    assert len([r for r in rows if r[0] == once["record_id"]]) == 1
    assert query(ledger, "SELECT COUNT(*) FROM redemptions WHERE ticket_id = 'L-0008'") == [(3,)]

    counters = json.loads(gatectl("counters", "--json", "--socket", sock).stdout)
    assert counters["scans"] == 16
    assert counters["outcome:allow"] == 7
    assert counters["outcome:already_used"] == 2
    assert counters["outcome:too_early"] == 1
    assert counters["outcome:deny"] == 6
    assert counters["kind:exit"] == 1
    plain = gatectl("counters", "--socket", sock)
    assert plain.returncode == 0 and re.search(r"^scans\s+16$", plain.stdout, re.M)

    status = json.loads(gatectl("status", "--json", "--socket", sock).stdout)
    assert status["gate"] == "north-1" and status["zone"] == "floor"
    assert status["manifest"]["version"] == 1 and status["manifest"]["tickets"] == 10
    assert status["counters"]["scans"] == 16
    assert status["ledger"]["path"] == str(ledger)
    text = gatectl("status", "--socket", sock)
    assert text.returncode == 0
    assert "manifest  version 1, 10 tickets" in text.stdout
    assert "scans     16 (allow 7, already_used 2, deny 6, too_early 1)" in text.stdout

    gone = tmp_path / "nobody.sock"
    for args in (("scan", "A100-1"), ("status",), ("counters",)):
        result = gatectl(*args, "--socket", gone)
        assert result.returncode == 1
        assert result.stderr.startswith(f"GateError: no gate-daemon is listening on {gone}")


def test_gateprocess_helper_reports_a_daemon_that_dies_early(tmp_path: Path, live: LiveWorld) -> None:
    cfg = config(tmp_path, live, socket=tmp_path / "missing-dir" / "gate.sock")
    with GateProcess(cfg, tmp_path).start() as gate:
        with pytest.raises(AssertionError, match="exited with 1"):
            gate.wait_ready(timeout=10)
        assert "cannot listen on control socket" in gate.stderr()
