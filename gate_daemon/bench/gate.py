"""``gatectl bench gate``: payload to committed decision through the real gate service.

Each timed scan is ``Gate.scan`` on a real ledger in the work directory: signature
check, manifest lookup, the ledger's facts, the redemption, the evidence row and the
counters, committed with ``synchronous=FULL`` (fsync). Beside it, on the same disk and in
the same run, a bare SQLite insert + commit with the same settings: the floor that any
durable scan pays. The two are interleaved in rounds so that a noisy neighbour hurts
both alike; the ratio is the figure to compare across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from gate_daemon.bench import fixtures
from gate_daemon.bench.stats import summary_us
from gate_daemon.core.decision import Checkpoint, Outcome, ScanKind
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.tokens import TicketClaims, encode_signed, event_tag
from gate_daemon.errors import GateError
from gate_daemon.gate.scan import Gate
from gate_daemon.hardware.factory import NullSignals
from gate_daemon.provision.build import build_manifest
from gate_daemon.provision.event import load_event
from gate_daemon.provision.tickets import load_tickets
from gate_daemon.store.ledger import Ledger
from gate_daemon.store.manifest_file import read_manifest

BUDGET_P99_US = 3000.0
BUDGET_RATIO = 3.0
TICKETS = 100_000
#: Scans per round; rounds alternate the gate and the bare commit.
BATCH = 50


def run(args: argparse.Namespace) -> int:
    """Run the suite and print the table."""
    if args.workdir is not None:
        try:
            args.workdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GateError(f"--workdir {args.workdir}: {exc.strerror}") from None
        return _guarded(args.workdir, args.rounds or 2000)
    with tempfile.TemporaryDirectory(prefix="gate-bench-", dir=Path.cwd()) as tmp:
        return _guarded(Path(tmp), args.rounds or 2000)


def _guarded(work: Path, rounds: int) -> int:
    try:
        return asyncio.run(_run(work, rounds))
    except (OSError, sqlite3.Error) as exc:
        raise GateError(f"benchmark cannot use {work}: {exc}") from None


async def _run(work: Path, rounds: int) -> int:
    signer, issuer = SecretKey.generate(), SecretKey.generate()
    now = int(time.time())
    fixtures.write_event(work / "event.toml", issuer, now)
    fixtures.write_tickets(work / "tickets.csv", TICKETS)
    event = load_event(work / "event.toml")
    tickets = load_tickets(work / "tickets.csv", event)
    (work / "manifest.gdm").write_bytes(build_manifest(event, tickets, signer, version=1, issued_at=now))
    manifest = read_manifest(work / "manifest.gdm", [signer.public])
    ledger_path = work / "ledger.sqlite"
    for stale in (ledger_path, work / "bare.sqlite"):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{stale}{suffix}").unlink(missing_ok=True)
    ledger = await Ledger.open(ledger_path, "bench-1")
    gate = Gate(
        gate_id="bench-1",
        event_id=fixtures.EVENT_ID,
        checkpoint=Checkpoint(),
        kind=ScanKind.ENTRY,
        ledger=ledger,
        manifests=fixtures.HeldManifest(manifest),
        signals=NullSignals(),
    )
    tag = event_tag(fixtures.EVENT_ID)
    # Signed tickets sold after the manifest: the slowest path (Ed25519 verification) that
    # still ends in an admission, so every timed scan writes a redemption.
    payloads = [
        encode_signed(TicketClaims(ticket_id=f"W-{i:07d}", event_tag=tag), issuer) for i in range(rounds)
    ]
    bare = _BareCommit(work / "bare.sqlite")
    gate_ns: list[int] = []
    again_ns: list[int] = []
    bare_ns: list[int] = []
    outcomes: dict[Outcome, int] = {}
    try:
        for start in range(0, rounds, BATCH):
            batch = payloads[start : start + BATCH]
            for payload in batch:
                t0 = time.perf_counter_ns()
                result = await gate.scan(payload, device="bench")
                gate_ns.append(time.perf_counter_ns() - t0)
                outcomes[result.decision.outcome] = outcomes.get(result.decision.outcome, 0) + 1
            # The same tickets again: their facts are read from the file (already used).
            for payload in batch[: BATCH // 5]:
                t0 = time.perf_counter_ns()
                result = await gate.scan(payload, device="bench")
                again_ns.append(time.perf_counter_ns() - t0)
                outcomes[result.decision.outcome] = outcomes.get(result.decision.outcome, 0) + 1
            for _ in range(len(batch)):
                bare_ns.append(bare.commit_one())
    finally:
        bare.close()
        await ledger.close()
    if outcomes != {Outcome.ALLOW: rounds, Outcome.ALREADY_USED: len(again_ns)}:
        raise GateError(f"benchmark expected {rounds} admissions and {len(again_ns)} repeats, got {outcomes}")

    g, a, b = summary_us(gate_ns), summary_us(again_ns), summary_us(bare_ns)
    print(f"# gatectl bench gate --rounds {rounds}")
    print(f"# {platform.machine()}, Python {sys.version.split()[0]}, work dir {work} ({_fs(work)})")
    print()
    print("| measure | result | budget |")
    print("|---|---|---|")
    print(
        f"| scan to committed decision (signed ticket, fsync) | p50 {g['p50_us']:.0f} us, "
        f"p99 {g['p99_us']:.0f} us | p99 <= {BUDGET_P99_US:.0f} us |"
    )
    print(
        f"| scan of a used ticket (facts read from the file, already_used) | p50 {a['p50_us']:.0f} us, "
        f"p99 {a['p99_us']:.0f} us | p99 <= {BUDGET_P99_US:.0f} us |"
    )
    print(
        f"| bare SQLite insert + commit, same disk | p50 {b['p50_us']:.0f} us, p99 {b['p99_us']:.0f} us |  |"
    )
    for label, s in (("first scan", g), ("used ticket", a)):
        print(
            f"| ratio gate / bare, {label} | p50 {s['p50_us'] / b['p50_us']:.2f}x, "
            f"p99 {s['p99_us'] / b['p99_us']:.2f}x | <= {BUDGET_RATIO:.0f}x |"
        )
    met = (
        max(g["p99_us"], a["p99_us"]) <= BUDGET_P99_US
        and max(g["p99_us"], a["p99_us"]) / b["p99_us"] <= BUDGET_RATIO
    )
    print()
    print("budgets met" if met else "BUDGET MISSED")
    return 0


class _BareCommit:
    """The floor: one row inserted and committed, WAL and synchronous=FULL, as the ledger."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, uuid TEXT, wall REAL)")
        self.n = 0

    def commit_one(self) -> int:
        self.n += 1
        t0 = time.perf_counter_ns()
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("INSERT INTO t (uuid, wall) VALUES (?, ?)", (f"row-{self.n}", time.time()))
        self.db.execute("COMMIT")
        return time.perf_counter_ns() - t0

    def close(self) -> None:
        self.db.close()


def _fs(path: Path) -> str:
    """The filesystem type under ``path`` (from /proc/mounts), for the record."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown filesystem"
    best, kind = "", "unknown filesystem"
    target = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if len(fields) >= 3 and target.startswith(fields[1]) and len(fields[1]) > len(best):
            best, kind = fields[1], fields[2]
    return kind
