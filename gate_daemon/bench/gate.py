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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gate_daemon.bench import fixtures
from gate_daemon.bench.stats import summary_us
from gate_daemon.core.decision import Checkpoint, ScanKind
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.manifest import Manifest
from gate_daemon.core.reasons import Outcome
from gate_daemon.core.tokens import TicketClaims, encode_signed, event_tag
from gate_daemon.errors import GateError
from gate_daemon.gate.scan import Gate
from gate_daemon.hardware.factory import NullSignals
from gate_daemon.provision.build import build_manifest
from gate_daemon.provision.event import load_event
from gate_daemon.provision.tickets import load_tickets
from gate_daemon.store.ledger import Ledger
from gate_daemon.store.manifest_file import read_manifest

if TYPE_CHECKING:
    # Only bench upstream's gates ask the central; this bench's process never loads the client.
    from gate_daemon.net.online import OnlineDecider

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
        return _guarded(args.workdir, args.rounds or 2000, args.capacity)
    with tempfile.TemporaryDirectory(prefix="gate-bench-", dir=Path.cwd()) as tmp:
        return _guarded(Path(tmp), args.rounds or 2000, args.capacity)


def _guarded(work: Path, rounds: int, capacity: bool = False) -> int:
    try:
        return asyncio.run(_run(work, rounds, capacity))
    except (OSError, sqlite3.Error) as exc:
        raise GateError(f"benchmark cannot use {work}: {exc}") from None


async def _run(work: Path, rounds: int, capacity: bool = False) -> int:
    """Time ``rounds`` admissions and their repeats beside bare commits; print the table.

    With ``capacity``, the venue holds exactly ``rounds`` (strict): every admission weighs it.
    """
    issuer, manifest = _event(work, rounds if capacity else None)
    ledger = await Ledger.open(fresh_database(work / "ledger.sqlite"), "bench-1")
    bare = _BareCommit(fresh_database(work / "bare.sqlite"))
    try:
        gate = benched_gate("bench-1", ledger, manifest)
        # Signed tickets sold after the manifest: the slowest path (Ed25519 verification) that
        # still ends in an admission, so every timed scan writes a redemption.
        timings = await _interleaved(gate, bare, signed_tickets(issuer, "W", rounds))
    finally:
        bare.close()
        await ledger.close()
    expected = {Outcome.ALLOW.value: rounds, Outcome.ALREADY_USED.value: len(timings.again)}
    if timings.outcomes != expected:
        raise GateError(
            f"benchmark expected {rounds} admissions and {len(timings.again)} repeats, got {timings.outcomes}"
        )
    _print_table(work, rounds, timings, capacity)
    return 0


def _event(work: Path, capacity: int | None = None) -> tuple[SecretKey, Manifest]:
    """The event, its tickets and its signed manifest, written to ``work``; the ticket issuer's key."""
    signer, issuer = SecretKey.generate(), SecretKey.generate()
    now = int(time.time())
    fixtures.write_event(work / "event.toml", issuer, now, capacity)
    fixtures.write_tickets(work / "tickets.csv", TICKETS)
    event = load_event(work / "event.toml")
    tickets = load_tickets(work / "tickets.csv", event)
    (work / "manifest.gdm").write_bytes(build_manifest(event, tickets, signer, version=1, issued_at=now))
    return issuer, read_manifest(work / "manifest.gdm", [signer.public])


def fresh_database(path: Path) -> Path:
    """``path`` with no SQLite file left there by an earlier run (its WAL and shared memory too)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def benched_gate(
    gate_id: str, ledger: Ledger, manifest: Manifest, online: OnlineDecider | None = None
) -> Gate:
    """The real scan service of an entry gate on ``ledger``, holding ``manifest``, with no lights."""
    return Gate(
        gate_id=gate_id,
        event_id=fixtures.EVENT_ID,
        checkpoint=Checkpoint(),
        kind=ScanKind.ENTRY,
        ledger=ledger,
        manifests=fixtures.HeldManifest(manifest),
        signals=NullSignals(),
        online=online,
    )


def signed_tickets(issuer: SecretKey, prefix: str, count: int) -> list[str]:
    """``count`` payloads of signed tickets of the bench's event, ids ``{prefix}-0000000`` on."""
    tag = event_tag(fixtures.EVENT_ID)
    return [
        encode_signed(TicketClaims(ticket_id=f"{prefix}-{i:07d}", event_tag=tag), issuer)
        for i in range(count)
    ]


async def time_scans(gate: Gate, payloads: list[str], samples: list[int], outcomes: dict[str, int]) -> None:
    """Scan each payload in turn: its time to a committed decision into ``samples``, its outcome counted."""
    for payload in payloads:
        t0 = time.perf_counter_ns()
        result = await gate.scan(payload, device="bench")
        samples.append(time.perf_counter_ns() - t0)
        name = result.decision.outcome.value
        outcomes[name] = outcomes.get(name, 0) + 1


@dataclass
class _Timings:
    """One run's samples (nanoseconds) and the outcomes of its scans."""

    first: list[int] = field(default_factory=list)
    again: list[int] = field(default_factory=list)
    bare: list[int] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)


async def _interleaved(gate: Gate, bare: _BareCommit, payloads: list[str]) -> _Timings:
    """Rounds of ``BATCH`` scans, a fifth of them again, then as many bare commits."""
    timings = _Timings()
    for start in range(0, len(payloads), BATCH):
        batch = payloads[start : start + BATCH]
        await time_scans(gate, batch, timings.first, timings.outcomes)
        # The same tickets again: their facts are read from the file (already used).
        await time_scans(gate, batch[: BATCH // 5], timings.again, timings.outcomes)
        timings.bare.extend(bare.commit_one() for _ in batch)
    return timings


def _print_table(work: Path, rounds: int, timings: _Timings, capacity: bool = False) -> None:
    """The figures against their budgets, as docs/PERFORMANCE.md quotes them."""
    g, a, b = summary_us(timings.first), summary_us(timings.again), summary_us(timings.bare)
    print(f"# gatectl bench gate --rounds {rounds}" + (" --capacity" if capacity else ""))
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
