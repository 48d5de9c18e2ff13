"""Nothing acknowledged is lost: a real daemon killed with SIGKILL under load, again and again.

Client threads fire scans over the control socket while the daemon is killed at a random
moment; after each restart every decision a client was *given* must be in the evidence
log as given, every allow must have its redemption, and no single-entry ticket may have
been admitted twice. A last round stops it with SIGTERM under the same load. The
concurrency test races one ticket's scans from several sockets and stdin at once: the
ledger's unique index, not luck, must let exactly the allowed number in.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from gate_daemon.daemon.control import ask
from gate_daemon.errors import GateError
from gate_daemon.gate.scan import gate_scan_id
from tests.gate_process import GateProcess, Launcher, integrity, query, wait_until
from tests.live import make_live_world, write_gate_config

#: Kill/restart rounds.
ROUNDS = 20
#: Single-entry tickets in the manifest (payload ``D<n>-1``, ticket ``D-<n>``).
TICKETS = 2000
#: Tickets every client keeps scanning: each may be admitted once, over all rounds.
HOT = [f"D{n}-1" for n in range(1, 6)]
CLIENTS = 3
GARBAGE = [
    "D999999-1",  # unknown_ticket
    "GD1:AAAAAAAAAAAAAAAAAAAAAAAA",  # invalid_payload (not a signed ticket)
    "\x00\x01\x02binary",
    "caf\u00e9-1",
    "x" * 600,
    "GD9:ZZZZ",
]


def tickets_csv(count: int) -> str:
    rows = ["ticket_id,order_id,seat,status,session,zone,entries,code"]
    rows += [f"D-{n:05d},D{n},1,completed,now,floor,1," for n in range(1, count + 1)]
    return "\n".join(rows) + "\n"


@dataclass(frozen=True)
class Answer:
    """A decision a client was given."""

    scan_id: str
    payload: str
    outcome: str
    reason: str
    ticket_id: str | None
    duplicate: bool


@dataclass(frozen=True)
class Unanswered:
    """A request that got no decision (the daemon died under it)."""

    scan_id: str
    payload: str
    failed_at: float


class Traffic:
    """Client threads firing scans at one daemon until told to stop."""

    def __init__(self, sock: Path, seed: int) -> None:
        self.sock = sock
        self.seed = seed
        self.stop = threading.Event()
        self.answers: list[Answer] = []
        self.unanswered: list[Unanswered] = []
        self.surprises: list[str] = []
        self._threads = [
            threading.Thread(target=self._client, args=(seed * 100 + n,), daemon=True) for n in range(CLIENTS)
        ]

    def _client(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set():
            pick = rng.random()
            if pick < 0.35:
                payload = rng.choice(HOT)
            elif pick < 0.85:
                payload = f"D{rng.randint(len(HOT) + 1, TICKETS)}-1"
            else:
                payload = rng.choice(GARBAGE)
            scan_id = str(uuid.uuid4())
            try:
                answer = ask(self.sock, {"op": "scan", "payload": payload, "scan_id": scan_id}, timeout=10)
            except GateError:
                self.unanswered.append(Unanswered(scan_id, payload, time.monotonic()))
                return  # the daemon is gone (or going): this client's round is over
            decision = answer["decision"]
            if decision["scan_id"] != scan_id or not decision["recorded"]:
                self.surprises.append(repr(decision))
            self.answers.append(
                Answer(
                    scan_id,
                    payload,
                    decision["outcome"],
                    decision["reason"],
                    decision.get("ticket_id"),
                    bool(decision.get("duplicate")),
                )
            )

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=20)
        assert not any(t.is_alive() for t in self._threads), "a client thread hung"


def record_id(scan_id: str) -> str:
    """The ledger's id of a scan the client sent with ``scan_id`` (to the default gate, north-1)."""
    return gate_scan_id("north-1", scan_id)


def check_ledger(db: Path, answers: list[Answer], counters: dict[str, int], where: str) -> None:
    """The invariants that must hold after any crash."""
    assert integrity(db) == "ok", where
    recorded = {str(u): (str(o), str(r)) for u, o, r in query(db, "SELECT uuid, outcome, reason FROM scans")}
    lost = [a for a in answers if recorded.get(record_id(a.scan_id)) != (a.outcome, a.reason)]
    assert not lost, f"{where}: {len(lost)} decisions given but not recorded as given, e.g. {lost[:3]}"
    redeemed = {str(u) for (u,) in query(db, "SELECT uuid FROM redemptions")}
    missing = [a for a in answers if a.outcome == "allow" and record_id(a.scan_id) not in redeemed]
    assert not missing, f"{where}: allowed without a redemption: {missing[:3]}"
    twice = query(
        db,
        "SELECT ticket_id, COUNT(*) FROM redemptions WHERE kind = 'entry'"
        " GROUP BY ticket_id HAVING COUNT(*) > 1",
    )
    assert not twice, f"{where}: single-entry tickets admitted more than once: {twice}"
    # The scan and its redemption are one commit: no allow without a row, no row without an allow.
    allow_rows = {str(u) for (u,) in query(db, "SELECT uuid FROM scans WHERE outcome = 'allow'")}
    assert allow_rows == redeemed, where
    assert counters.get("scans", 0) == len(recorded), f"{where}: counters {counters}"
    outcomes = sum(v for k, v in counters.items() if k.startswith("outcome:"))
    assert outcomes == len(recorded), f"{where}: counters {counters}"
    given = Counter(a.ticket_id for a in answers if a.outcome == "allow" and not a.duplicate)
    assert not [t for t, n in given.items() if n > 1], f"{where}: {given.most_common(3)}"


def retry(gate: GateProcess, lost: list[Unanswered], where: str) -> list[Answer]:
    """Send again, with the same scan ids, what got no answer before the kill.

    A request the dead daemon had recorded is a duplicate, answered as recorded; one it
    had not is decided now.
    """
    recorded = {
        str(u): (str(o), str(r))
        for u, o, r in query(gate.ledger_path, "SELECT uuid, outcome, reason FROM scans")
    }
    out = []
    for request in lost:
        decision = gate.scan(request.payload, scan_id=request.scan_id)
        assert decision["scan_id"] == request.scan_id, where
        if record_id(request.scan_id) in recorded:
            assert decision.get("duplicate") is True, where
            assert (decision["outcome"], decision["reason"]) == recorded[record_id(request.scan_id)], where
        else:
            assert "duplicate" not in decision, where
        out.append(
            Answer(
                request.scan_id,
                request.payload,
                decision["outcome"],
                decision["reason"],
                decision.get("ticket_id"),
                bool(decision.get("duplicate")),
            )
        )
    return out


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_no_answered_decision(tmp_path: Path, launch: Launcher) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    world = make_live_world(tmp_path / "world")
    (tmp_path / "drop.gdm").write_bytes(world.manifest(1, tickets_csv=tickets_csv(TICKETS)))
    cfg = write_gate_config(tmp_path / "gate.toml", world, signals="none")
    answers: list[Answer] = []
    killed_mid_traffic = 0

    pending: list[Unanswered] = []

    for round_no in range(ROUNDS + 1):
        where = f"round {round_no} (seed {seed})"
        if round_no in (0, ROUNDS // 2):
            # Killed while starting: the first time, while it creates the ledger and installs the manifest.
            starting = launch(cfg, ready=False, name=f"start-{round_no}")
            time.sleep(rng.uniform(0.0, 0.3))
            starting.kill()
        gate = launch(cfg, name=f"round-{round_no}")
        assert gate.status()["manifest"]["version"] == 1, where
        check_ledger(gate.ledger_path, answers, gate.counters(), where)
        answers += retry(gate, pending, where)
        if round_no == ROUNDS:
            break
        with Traffic(gate.socket_path, seed + round_no) as traffic:
            time.sleep(rng.uniform(0.05, 0.6))
            killed_at = time.monotonic()
            assert gate.kill() == -9, where
        assert not traffic.surprises, traffic.surprises
        early = [u for u in traffic.unanswered if u.failed_at < killed_at]
        assert not early, f"{where}: requests failed while the daemon was alive: {early}"
        answers += traffic.answers
        pending = traffic.unanswered
        killed_mid_traffic += bool(traffic.answers)

    # The last round: SIGTERM under the same load must exit 0 and lose nothing either.
    with Traffic(gate.socket_path, seed + ROUNDS) as traffic:
        time.sleep(0.3)
        gate.terminate()
        assert gate.wait() == 0, gate.stderr()
    assert not traffic.surprises, traffic.surprises
    answers += traffic.answers
    assert "Traceback" not in gate.stderr()
    counters = dict(query(gate.ledger_path, "SELECT name, value FROM counters"))
    check_ledger(gate.ledger_path, answers, counters, f"after SIGTERM (seed {seed})")

    # The run did what it claims: traffic in most rounds, hot tickets admitted once then refused.
    assert killed_mid_traffic >= ROUNDS // 2, killed_mid_traffic
    hot = [a for a in answers if a.payload in HOT]
    assert {a.outcome for a in hot} >= {"allow", "already_used"}
    assert {a.reason for a in answers if a.payload in GARBAGE} >= {"invalid_payload", "unknown_ticket"}


def test_concurrent_scans_of_one_ticket_from_sockets_and_stdin_admit_exactly_once(
    tmp_path: Path, launch: Launcher
) -> None:
    world = make_live_world(tmp_path / "world")
    (tmp_path / "drop.gdm").write_bytes(world.manifest(1))
    cfg = write_gate_config(tmp_path / "gate.toml", world, input_kind="stdin", repeat_window_ms=0)
    gate: GateProcess = launch(cfg)
    signed = world.sign("W-1", session="now", zone="floor")
    # payload -> (ticket id, entries allowed)
    tickets = {"REF-LIVE-FLOOR-000001": ("L-0001", 1), signed: ("W-1", 1), "A105-1": ("L-0007", 3)}
    threads_per_ticket, scans_per_thread, stdin_copies = 4, 8, 12
    start = threading.Barrier(threads_per_ticket * len(tickets) + 1)
    answers: list[dict[str, object]] = []
    errors: list[BaseException] = []

    def fire(payload: str) -> None:
        try:
            start.wait(timeout=20)
            for _ in range(scans_per_thread):
                answers.append(
                    ask(gate.socket_path, {"op": "scan", "payload": payload}, timeout=10)["decision"]
                )
        except BaseException as exc:  # reported below, with the thread's own error
            errors.append(exc)

    threads = [
        threading.Thread(target=fire, args=(payload,), daemon=True)
        for payload in tickets
        for _ in range(threads_per_ticket)
    ]
    for thread in threads:
        thread.start()
    lines = b"".join(p.encode() + b"\n" for _ in range(stdin_copies) for p in tickets)
    start.wait(timeout=20)
    gate.write(lines)  # at the same moment as the sockets
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    socket_total = threads_per_ticket * scans_per_thread * len(tickets)
    assert len(answers) == socket_total
    total = socket_total + stdin_copies * len(tickets)
    wait_until(
        lambda: query(gate.ledger_path, "SELECT COUNT(*) FROM scans")[0][0] == total,
        what="every stdin line to be scanned",
    )
    shown = gate.wait_output(r"(ALLOW|USED) ", count=total)
    for ticket_id, entries in tickets.values():
        allowed = [a for a in answers if a["ticket_id"] == ticket_id and a["outcome"] == "allow"]
        assert len(allowed) <= entries
        used = [a for a in answers if a["ticket_id"] == ticket_id and a["outcome"] != "allow"]
        assert {str(a["reason"]) for a in used} <= {"already_used"}
        assert len(allowed) + len(used) == threads_per_ticket * scans_per_thread
        redemptions = query(
            gate.ledger_path, "SELECT kind, slot FROM redemptions WHERE ticket_id = ?", ticket_id
        )
        assert sorted(redemptions) == [("entry", n) for n in range(1, entries + 1)], ticket_id
        rows = query(
            gate.ledger_path, "SELECT outcome, COUNT(*) FROM scans WHERE ticket_id = ? GROUP BY 1", ticket_id
        )
        per_ticket = threads_per_ticket * scans_per_thread + stdin_copies
        assert dict(rows) == {"allow": entries, "already_used": per_ticket - entries}, ticket_id
        # Exactly `entries` green lights for this ticket, whichever road the winning scan took.
        lit = [line for line in shown if re.search(rf"ALLOW\s+ok\s+{re.escape(ticket_id)}\s", line)]
        assert len(lit) == entries, lit
    stdin_rows = query(gate.ledger_path, "SELECT COUNT(*) FROM scans WHERE device = 'stdin'")
    assert stdin_rows == [(stdin_copies * len(tickets),)]
    assert gate.counters()["scans"] == total
    assert gate.stop() == 0
