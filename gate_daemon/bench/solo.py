"""``gatectl bench peers --process``: a gate's scans while it catches up, in a process of its own.

The one-loop mode of ``bench peers`` runs every gate on one event loop, so a gate's scans
there wait for the other gates' work too. Here the measured gate (``gate-1``) is a real
``gate-daemon`` process, scanned through its control socket and timed from the bench
(one connection kept open: the time is the request line sent to the answer read); the
gates feeding it (``--gates`` minus one, default 4) are ``gate-daemon`` processes too, and
the central is ``gate-central``. Five phases, in one run:

1. **Idle**: ``--rounds`` scans (default 200), each after a 5 ms pause, while every feeder
   and the central are stopped (SIGSTOP: a partition; the measured gate's links time out
   and back off).
2. **Catching up**: the feeders continue (SIGCONT: the partition heals); they hold
   ``--records`` records between them (default 20,000), written into their files before
   they started. Scans are timed until the measured gate holds every one of them; those
   from its first learned record to its last count.
3. **Idle** again, the same number of scans.
4. **Draining upstream**: the central continues; the measured gate sends it everything
   it holds (the learned backlog and its own scans). Scans are timed until the central
   has answered for every record held when it continued; those from the first answer on
   count.
5. **Idle** a third time.

Idle is every scan of phases 1, 3 and 5; the budget is a p99 while catching up and while
draining within ``BUDGET_RATIO`` times the idle p99 of the same run.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gate_daemon.bench import fixtures
from gate_daemon.bench.solo_venue import MEASURED, SoloVenue, prepare, start
from gate_daemon.bench.stats import summary_ms, workdir
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.tokens import TicketClaims, encode_signed, event_tag
from gate_daemon.errors import GateError
from gate_daemon.store.offline_reads import read_progress

FEEDERS = 4
RECORDS = 20_000
IDLE_SCANS = 200
#: The pause between two timed scans.
PROBE_GAP = 0.005
#: How often the files are read for progress while scans are timed.
SAMPLE_EVERY = 0.05
#: How long a phase may take before the bench gives up.
PHASE_LIMIT = 600.0
#: A scan's p99 while catching up or draining, at most this times its idle p99.
BUDGET_RATIO = 3.0


class Scanner:
    """Scans at the measured gate through its control socket, one connection, timed here."""

    def __init__(self, path: Path, issuer: SecretKey) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(60)
        self._sock.connect(str(path))
        self._answers = self._sock.makefile("rb")
        self._issuer = issuer
        self._tag = event_tag(fixtures.EVENT_ID)
        self._count = 0

    def close(self) -> None:
        """Close the connection."""
        self._answers.close()
        self._sock.close()

    def scan(self) -> tuple[int, int]:
        """One admission of a fresh signed ticket; (start, end) in ``perf_counter_ns``."""
        self._count += 1
        claims = TicketClaims(ticket_id=f"S-{self._count:07d}", event_tag=self._tag)
        line = json.dumps({"op": "scan", "payload": encode_signed(claims, self._issuer)}).encode() + b"\n"
        t0 = time.perf_counter_ns()
        self._sock.sendall(line)
        answer = self._answers.readline(1 << 20)
        t1 = time.perf_counter_ns()
        try:
            decision = json.loads(answer)["decision"]
        except (ValueError, KeyError, TypeError):
            raise GateError(f"the measured gate answered a scan with {answer[:200]!r}") from None
        if decision.get("outcome") != "allow":
            raise GateError(f"a bench scan was not admitted: {decision.get('reason')}")
        return t0, t1

    def idle(self, count: int) -> list[int]:
        """``count`` scans, each after the pause; their times in ns."""
        out = []
        for _ in range(count):
            time.sleep(PROBE_GAP)
            t0, t1 = self.scan()
            out.append(t1 - t0)
        return out

    def during(
        self, progress: Callable[[], int], base: int, target: int, check: Callable[[], None]
    ) -> dict[str, Any]:
        """Scans until ``progress()`` reaches ``target``; those from its first move past ``base`` on.

        ``check`` raises when a process the phase needs has ended.
        """
        began = time.perf_counter_ns()
        scans: list[tuple[int, int]] = []
        moved_at: int | None = None
        done_at: int | None = None
        sampled = 0
        while done_at is None:
            if time.perf_counter_ns() - began > PHASE_LIMIT * 1e9:
                raise GateError(f"the phase did not end within {PHASE_LIMIT:g} s ({progress()} of {target})")
            time.sleep(PROBE_GAP)
            scans.append(self.scan())
            now = time.perf_counter_ns()
            if now - sampled >= SAMPLE_EVERY * 1e9:
                sampled = now
                check()
                seen = progress()
                if moved_at is None and seen > base:
                    moved_at = scans[-1][0]
                if seen >= target:
                    done_at = now
        first = moved_at if moved_at is not None else done_at
        timed = [t1 - t0 for t0, t1 in scans if t0 >= first and t1 <= done_at]
        return {
            **summary_ms(timed),
            "seconds": round((done_at - first) / 1e9, 2),
            "from_continue_s": round((done_at - began) / 1e9, 2),
        }


def run(args: Any) -> int:
    """``bench peers --process``: run the phases and print the table (or JSON)."""
    feeders = (args.gates - 1) if args.gates else FEEDERS
    if not 1 <= feeders <= 16:
        raise GateError(f"--gates must be 2 to 17 with --process, got {feeders + 1}")
    records, idle = args.records or RECORDS, args.rounds or IDLE_SCANS
    if records < feeders:
        raise GateError(f"--records must be at least the feeders' number ({feeders}), got {records}")
    with workdir(args.workdir) as work:
        result = _guarded(work, feeders, records, idle)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


def _guarded(work: Path, feeders: int, records: int, idle: int) -> dict[str, Any]:
    try:
        venue = prepare(work, feeders, records)
    except (OSError, sqlite3.Error) as exc:
        raise GateError(f"benchmark cannot use {work}: {exc}") from None
    cpus = os.sched_getaffinity(0)
    try:
        start(venue)
        return measure(venue, idle)
    except (OSError, sqlite3.Error) as exc:
        raise GateError(f"benchmark cannot run in {work}: {exc}") from None
    finally:
        os.sched_setaffinity(0, cpus)
        venue.stop()


def measure(venue: SoloVenue, idle_count: int) -> dict[str, Any]:
    """The five phases (see the module's text) on a started venue."""
    scanner = Scanner(venue.socket, venue.issuer)
    try:
        scanner.idle(20)  # warm the path
        idle = scanner.idle(idle_count)
        learned = _learned(venue)
        for feeder in venue.feeder_daemons:
            feeder.signal(signal.SIGCONT)

        def alive() -> None:
            for daemon in venue.daemons():
                daemon.alive()

        catching = scanner.during(lambda: _learned(venue), learned, venue.records, alive)
        idle += scanner.idle(idle_count)
        held = read_progress(venue.ledger, MEASURED)
        target = held.learned + held.own
        acked = _acked(venue)
        venue.central.signal(signal.SIGCONT)
        draining = scanner.during(lambda: _acked(venue), acked, target, alive)
        idle += scanner.idle(idle_count)
    finally:
        scanner.close()
    quiet = summary_ms(idle)
    out: dict[str, Any] = {
        "mode": "process",
        "feeders": len(venue.feeders),
        "records": venue.records,
        "drained": target,
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "cpus_measured": sorted(venue.cpus[0]),
        "cpus_others": sorted(venue.cpus[1]),
        "idle": quiet,
        "catching_up": catching,
        "draining": draining,
        "budget_ratio": BUDGET_RATIO,
    }
    for phase in ("catching_up", "draining"):
        for q in ("p50", "p99"):
            busy = out[phase][f"{q}_ms"]
            out[phase][f"ratio_{q}"] = round(busy / quiet[f"{q}_ms"], 2) if quiet[f"{q}_ms"] else None
        out[phase]["met"] = out[phase]["p99_ms"] <= BUDGET_RATIO * quiet["p99_ms"]
    return out


def _learned(venue: SoloVenue) -> int:
    """Records of other gates the measured gate holds without a gap (its logs' runs)."""
    return read_progress(venue.ledger, MEASURED).learned


def _acked(venue: SoloVenue) -> int:
    """Records the central has answered for, as the measured gate's file says."""
    return read_progress(venue.ledger, MEASURED).answered


def print_table(r: dict[str, Any]) -> None:
    """The figures as a Markdown table (as docs/PERFORMANCE.md shows them), then the verdict."""
    print(f"# gatectl bench peers --process --gates {r['feeders'] + 1} --records {r['records']}")
    print(
        f"# {r['machine']}, Python {r['python']}, {r['cpus']} CPUs; {MEASURED} a gate-daemon process of "
        f"its own on CPU {r['cpus_measured']}, scanned through its control socket; {r['feeders']} feeder "
        f"gate-daemons and gate-central on CPU {r['cpus_others']}"
    )
    print()
    print("| measure | result | budget |")
    print("|---|---|---|")
    i = r["idle"]
    print(f"| scan, idle ({i['count']} scans) | p50 {i['p50_ms']:.2f} ms, p99 {i['p99_ms']:.2f} ms |  |")
    peers = "peer" if r["feeders"] == 1 else "peers"
    limit = f"p99 <= {r['budget_ratio']:g}x idle ({r['budget_ratio'] * i['p99_ms']:.2f} ms)"
    for phase, what in (
        ("catching_up", f"while it learns {r['records']} records from {r['feeders']} {peers}"),
        ("draining", f"while it drains {r['drained']} records to the central"),
    ):
        b = r[phase]
        print(
            f"| scan, {what} ({b['count']} scans, {b['seconds']:.1f} s) | p50 {b['p50_ms']:.2f} ms, "
            f"p99 {b['p99_ms']:.2f} ms, max {b['max_ms']:.2f} ms | {limit} |"
        )
        print(
            f"| ratio to idle, {phase.replace('_', ' ')} | p50 {b['ratio_p50']}x, p99 {b['ratio_p99']}x |  |"
        )
    print()
    met = r["catching_up"]["met"] and r["draining"]["met"]
    print("budget met" if met else "BUDGET MISSED")
