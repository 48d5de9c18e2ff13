"""Manifest hot swap in a running gate: under load, refusals, and across restarts and kills."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from gate_daemon.daemon.control import ask
from gate_daemon.errors import GateError
from tests.gate_process import GateProcess, Launcher, drop_file, gatectl, query, wait_until
from tests.live import TICKETS_CSV, LiveWorld, write_gate_config

POLL_MS = 100
#: Version 2: L-0010 (A108-1) canceled, L-0011 (A109-1) sold.
TICKETS_V2 = (
    TICKETS_CSV.replace("L-0010,A108,1,completed,now,floor,1,", "L-0010,A108,1,canceled,now,floor,1,")
    + "L-0011,A109,1,completed,now,floor,1,\n"
)
#: What the client keeps scanning: a ticket new in v2, one used up at once, a 3-entry one, junk.
ROTATION = ["A109-1", "A107-1", "A105-1", "NOT-A-TICKET", "A100-2"]


@dataclass(frozen=True)
class Sent:
    """One request and what came back."""

    scan_id: str
    payload: str
    sent_at: float
    decision: dict[str, object] | None
    error: str | None


def wait_version(gate: GateProcess, version: int, timeout: float = 10.0) -> float:
    """Wait until ``version`` is active; the monotonic time it was first seen."""
    wait_until(lambda: gate.status()["manifest"].get("version") == version, timeout, f"version {version}")
    return time.monotonic()


def test_a_new_version_activates_under_load_and_no_scan_is_lost(
    tmp_path: Path, live: LiveWorld, launch: Launcher
) -> None:
    drop = tmp_path / "drop.gdm"
    cfg = write_gate_config(tmp_path / "gate.toml", live, poll_ms=POLL_MS, signals="none")
    gate = launch(cfg)
    v2 = live.manifest(2, tickets_csv=TICKETS_V2)
    sent: list[Sent] = []
    stop = threading.Event()

    def client() -> None:
        n = 0
        while not stop.is_set():
            payload = ROTATION[n % len(ROTATION)]
            n += 1
            scan_id = str(uuid.uuid4())
            at = time.monotonic()
            try:
                answer = ask(gate.socket_path, {"op": "scan", "payload": payload, "scan_id": scan_id}, 10)
            except GateError as exc:
                sent.append(Sent(scan_id, payload, at, None, str(exc)))
            else:
                sent.append(Sent(scan_id, payload, at, answer["decision"], None))

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        time.sleep(0.4)
        dropped_at = time.monotonic()
        drop_file(drop, v2)
        active_at = wait_version(gate, 2)
        time.sleep(0.4)
    finally:
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive()
    assert active_at - dropped_at < 20 * POLL_MS / 1000, f"took {active_at - dropped_at:.2f} s"

    errors = [s for s in sent if s.error is not None]
    assert not errors, errors[:3]
    before = [s for s in sent if s.sent_at < dropped_at]
    after = [s for s in sent if s.sent_at > active_at]
    assert len(before) >= 10 and len(after) >= 10, (len(before), len(after))

    rows = query(gate.ledger_path, "SELECT uuid, outcome, reason, manifest_version FROM scans ORDER BY hlc")
    recorded = {str(u): (o, r, v) for u, o, r, v in rows}
    for s in sent:
        assert s.decision is not None
        assert recorded[s.decision["record_id"]][:2] == (s.decision["outcome"], s.decision["reason"]), s
    assert len(recorded) == len(sent)
    # Scans are decided on v1 until the swap and on v2 after it, never back.
    versions = [v for *_, v in rows]
    assert versions == sorted(versions) and set(versions) == {1, 2}
    assert {recorded[s.decision["record_id"]][2] for s in before} == {1}
    assert {recorded[s.decision["record_id"]][2] for s in after} == {2}
    # A109-1 is unknown to v1 and sold in v2: admitted once, after the swap.
    new_ticket = [s for s in sent if s.payload == "A109-1"]
    assert {recorded[s.decision["record_id"]][1] for s in new_ticket if s in before} == {"unknown_ticket"}
    allowed = [s for s in new_ticket if recorded[s.decision["record_id"]][0] == "allow"]
    assert len(allowed) == 1 and allowed[0].sent_at > dropped_at
    # Canceled in v2.
    canceled = gatectl("scan", "A108-1", "--socket", gate.socket_path)
    assert canceled.returncode == 3
    assert json.loads(canceled.stdout)["reason"] == "canceled"
    assert gate.counters()["manifest_activations"] == 2
    assert "version 2 of live-2026 activated" in gate.stderr()


def test_older_or_tampered_drops_are_refused_and_v2_survives_restarts(
    tmp_path: Path, live: LiveWorld, launch: Launcher
) -> None:
    drop = tmp_path / "drop.gdm"
    cfg = write_gate_config(tmp_path / "gate.toml", live, poll_ms=POLL_MS, signals="none")
    gate = launch(cfg)
    v1 = drop.read_bytes()
    assert gate.scan("A108-1")["outcome"] == "allow"  # admitted under v1
    drop_file(drop, live.manifest(2, tickets_csv=TICKETS_V2))
    wait_version(gate, 2)
    assert gate.scan("A108-1")["reason"] == "canceled"

    def refused(reason_options: set[str]) -> dict[str, object]:
        def seen() -> bool:
            refusal = gate.status()["manifest"].get("last_refusal")
            return refusal is not None and refusal["reason"] in reason_options

        wait_until(seen, what=f"a refusal ({reason_options})")
        status = json.loads(gatectl("status", "--json", "--socket", gate.socket_path).stdout)
        assert status["manifest"]["version"] == 2
        return dict(status["manifest"]["last_refusal"])

    drop_file(drop, v1)  # a rollback: older than what the gate has activated
    rollback = refused({"rollback"})
    assert "1" in str(rollback["detail"])
    assert gate.scan("A109-1")["outcome"] == "allow"  # still deciding on v2
    v3 = bytearray(live.manifest(3, tickets_csv=TICKETS_V2))
    v3[-25] ^= 0x40
    drop_file(drop, bytes(v3))
    refused({"tampered", "bad_signature", "malformed"})
    assert gate.scan("A109-1")["outcome"] == "already_used"
    assert "refused (rollback)" in gate.stderr()

    # Killed outright, drop file gone: v2 comes back from the gate's own copy.
    assert gate.kill() == -9
    drop.unlink()
    again = launch(cfg)
    assert "manifest v2" in again.wait_ready()
    assert again.status()["manifest"]["version"] == 2
    assert "last_refusal" not in again.status()["manifest"]
    assert again.scan("A108-1")["reason"] == "canceled"
    assert again.scan("A109-1")["outcome"] == "already_used"

    # Restarted with the old v1 back in the drop place: refused at start, v2 stays.
    drop_file(drop, v1)
    assert again.stop() == 0
    third = launch(cfg)
    assert third.status()["manifest"]["version"] == 2
    assert third.status()["manifest"]["last_refusal"]["reason"] == "rollback"
    # Even the gate's own copy replaced by v1 (a restored backup) does not roll it back:
    # the ledger remembers v2, so the gate rather stays out of service.
    assert third.stop() == 0
    (tmp_path / "state" / "manifest.active").write_bytes(v1)
    drop.unlink()
    fourth = launch(cfg)
    assert fourth.status()["manifest"]["active"] is False
    assert "rollback" in fourth.stderr()
    assert fourth.scan("A108-1")["reason"] == "manifest_missing"


def test_the_same_version_dropped_again_changes_nothing(
    tmp_path: Path, live: LiveWorld, launch: Launcher
) -> None:
    drop = tmp_path / "drop.gdm"
    cfg = write_gate_config(tmp_path / "gate.toml", live, poll_ms=POLL_MS, signals="none")
    gate = launch(cfg)
    v1 = drop.read_bytes()
    drop_file(drop, v1)  # the very same bytes, a new file
    time.sleep(5 * POLL_MS / 1000)
    status = gate.status()["manifest"]
    assert status["version"] == 1 and "last_refusal" not in status
    assert gate.counters()["manifest_activations"] == 1
    # Version 1 again, but other bytes (re-signed): a second manifest claiming the same version.
    other_v1 = live.manifest(1, tickets_csv=TICKETS_V2)
    assert other_v1 != v1
    drop_file(drop, other_v1)
    wait_until(lambda: "last_refusal" in gate.status()["manifest"], what="the refusal")
    assert gate.status()["manifest"]["version"] == 1
    assert gate.scan("A109-1")["reason"] == "unknown_ticket"  # still the first v1


def test_a_version_dropped_while_stopped_judges_multi_entry_tickets_by_their_own_rule(
    tmp_path: Path, live: LiveWorld, launch: Launcher
) -> None:
    drop = tmp_path / "drop.gdm"
    cfg = write_gate_config(tmp_path / "gate.toml", live, poll_ms=POLL_MS, signals="none")
    gate = launch(cfg)
    # A105-1 (L-0007) may enter 3 times: two entries are no double entry.
    assert [gate.scan("A105-1")["outcome"] for _ in range(2)] == ["allow", "allow"]
    assert gate.stop() == 0
    drop_file(drop, live.manifest(2, tickets_csv=TICKETS_V2))
    again = launch(cfg)
    assert again.status()["manifest"]["version"] == 2
    # The start judges conflicts under v2's rules from its first look: none is found, so
    # none is counted (gate_conflicts_found_total) and none is recorded.
    assert again.counters().get("conflicts", 0) == 0
    assert query(again.ledger_path, "SELECT COUNT(*) FROM conflicts") == [(0,)]
    assert again.scan("A105-1")["outcome"] == "allow"
