"""``gatectl bench core``: decision, manifest build, activation and lookup figures.

Prints a Markdown table with each figure beside its budget, ready for
docs/PERFORMANCE.md. Activation runs in a fresh process so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gate_daemon.bench import fixtures
from gate_daemon.bench.stats import summary_us
from gate_daemon.core.decision import Checkpoint, evaluate
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.manifest import open_manifest
from gate_daemon.core.reasons import Outcome
from gate_daemon.core.rotating import DEFAULT_PERIOD, encode_code, issue_certificate, step_of
from gate_daemon.core.ticket_record import Status
from gate_daemon.core.tokens import TicketClaims, encode_signed, event_tag
from gate_daemon.errors import GateError
from gate_daemon.provision.build import build_manifest
from gate_daemon.provision.event import EventSpec, load_event
from gate_daemon.provision.tickets import load_tickets

BUDGETS = {
    "decide_p99_us": 500.0,
    "activate_s": 10.0,
    "rss_peak_mb": 150.0,
    "lookup_p99_us": 100.0,
}


def run(args: argparse.Namespace) -> int:
    """Run the suite and print the table."""
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 100 or max(sizes) > 10_000_000:
        raise GateError(f"--sizes takes comma-separated ticket counts of 100 to 10000000, got {args.sizes!r}")
    if args.workdir is not None:
        try:
            args.workdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GateError(f"--workdir {args.workdir}: {exc.strerror}") from None
        return _guarded(args.workdir, sizes, args.rounds or 20000)
    with tempfile.TemporaryDirectory(prefix="gate-bench-") as tmp:
        return _guarded(Path(tmp), sizes, args.rounds or 20000)


def _guarded(work: Path, sizes: list[int], rounds: int) -> int:
    try:
        return _run(work, sizes, rounds)
    except OSError as exc:
        raise GateError(f"benchmark cannot use {work}: {exc.strerror or exc}") from None


def _run(work: Path, sizes: list[int], rounds: int) -> int:
    signer, issuer = SecretKey.generate(), SecretKey.generate()
    (work / "signer.pub").write_text(signer.public.text() + "\n")
    now = int(time.time())
    fixtures.write_event(work / "event.toml", issuer, now)
    event = load_event(work / "event.toml")
    rows: list[tuple[str, str, str]] = []

    decide, per_second = _bench_decide(work, signer, issuer, now, rounds)
    rows.append(
        ("signed ticket verify + decide", _us(decide["signed"]), f"p99 <= {BUDGETS['decide_p99_us']:.0f} us")
    )
    rows.append(("reference code lookup + decide", _us(decide["reference"]), ""))
    rows.append(("rotating code verify (two signatures) + decide", _us(decide["rotating"]), ""))
    rows.append(("signed decisions per second (one core)", f"{per_second:,.0f}", ""))

    for size in sizes:
        rows += _size_rows(work, event, signer, now, size, rounds)

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"gatectl bench core: {rounds} rounds per timing; {machine}")
    print()
    print("| measure | result | budget |")
    print("|---|---|---|")
    for measure, result, budget in rows:
        print(f"| {measure} | {result} | {budget} |")
    return 0


def _size_rows(
    work: Path, event: EventSpec, signer: SecretKey, now: int, size: int, rounds: int
) -> list[tuple[str, str, str]]:
    """The rows of one manifest size: build, activate, peak RSS, a delta applied, lookups."""
    rows: list[tuple[str, str, str]] = []
    csv_path = work / f"tickets-{size}.csv"
    fixtures.write_tickets(csv_path, size)
    started = time.perf_counter()
    tickets = load_tickets(csv_path, event)
    data = build_manifest(event, tickets, signer, version=1, issued_at=now)
    out = work / f"manifest-{size}.gdm"
    out.write_bytes(data)
    build_s = time.perf_counter() - started
    # Version 2 cancels 1% of the tickets: the delta a gate would download.
    changed = [
        dataclasses.replace(t, status=Status.CANCELED) if n % 100 == 0 else t for n, t in enumerate(tickets)
    ]
    base = open_manifest(data, [signer.public])
    delta_path = work / f"delta-{size}.gdm"
    delta_path.write_bytes(build_manifest(event, changed, signer, version=2, issued_at=now, base=base))
    base.release()
    del tickets, changed, data, base
    pub = str(work / "signer.pub")
    got = _child([str(out), pub, str(size), str(rounds)])
    applied = _child(["apply", str(out), str(delta_path), pub])
    label = f"{size:,} tickets"
    mb = out.stat().st_size / 2**20
    rows.append(
        (
            f"{label}: build from CSV (parse, check, encode, sign)",
            f"{build_s:.2f} s ({mb:.0f} MB file)",
            "",
        )
    )
    rows.append(
        (f"{label}: verify + activate", f"{got['activate_s']:.2f} s", f"<= {BUDGETS['activate_s']:.0f} s")
    )
    rows.append(
        (
            f"{label}: peak RSS (interpreter alone {got['rss_interpreter_mb']} MB)",
            f"{got['rss_peak_mb']} MB",
            f"<= {BUDGETS['rss_peak_mb']:.0f} MB",
        )
    )
    delta_mb = delta_path.stat().st_size / 2**20
    rows.append(
        (
            f"{label}: apply a 1% delta ({delta_mb:.1f} MB), verify the result",
            f"{applied['apply_s']:.2f} s, peak RSS {applied['rss_peak_mb']} MB",
            "",
        )
    )
    for kind in ("ticket_id", "reference", "legacy", "miss"):
        rows.append(
            (
                f"{label}: lookup by {kind.replace('_', ' ')}",
                _us(got[f"lookup_{kind}"]),
                f"p99 <= {BUDGETS['lookup_p99_us']:.0f} us",
            )
        )
    return rows


def _child(argv: list[str]) -> dict[str, Any]:
    """Run the measuring process, so that its peak RSS is its own."""
    proc = subprocess.run(
        [sys.executable, "-m", "gate_daemon.bench.activate", *argv],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise GateError(f"benchmark process failed: {last}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def _us(figures: dict[str, float]) -> str:
    return f"p50 {figures['p50_us']} us, p99 {figures['p99_us']} us"


def _bench_decide(
    work: Path, signer: SecretKey, issuer: SecretKey, now: int, rounds: int
) -> tuple[dict[str, dict[str, float]], float]:
    """Time ``evaluate`` for signed tickets, reference codes and rotating codes; also signed decisions/s."""
    csv_path = work / "tickets-decide.csv"
    fixtures.write_tickets(csv_path, 10_000)
    spec = load_event(work / "event.toml")
    manifest = open_manifest(
        build_manifest(spec, load_tickets(csv_path, spec), signer, version=1, issued_at=now), [signer.public]
    )
    tag = event_tag(fixtures.EVENT_ID)
    pool = [
        encode_signed(
            TicketClaims(ticket_id=f"S-{i:06d}", event_tag=tag, session="sat", zone="floor"), issuer
        )
        for i in range(min(rounds, 2000))
    ]
    holder = SecretKey.generate()
    rotating = [
        encode_code(
            issue_certificate(
                TicketClaims(f"R-{i:06d}", tag, session="sat", zone="floor"),
                holder.public,
                issuer,
                DEFAULT_PERIOD,
            ),
            step_of(now, DEFAULT_PERIOD),
            holder,
        )
        for i in range(min(rounds, 2000))
    ]
    # Tickets 4, 10, 16, ... have a code and are in the open session ("sat"); of those,
    # keep the completed ones so that every timed decision runs the full path to allow.
    codes = [fixtures.code(i) for i in range(4, 10_000, 6) if i % 20 < 16][:2000]
    where = Checkpoint(zone="floor")
    results: dict[str, dict[str, float]] = {}
    per_second = 0.0
    for name, payloads in (("signed", pool), ("reference", codes), ("rotating", rotating)):
        samples = []
        started = time.perf_counter()
        for n in range(rounds):
            payload = payloads[n % len(payloads)]
            t0 = time.perf_counter_ns()
            decision = evaluate(payload, manifest, where, now)
            samples.append(time.perf_counter_ns() - t0)
            if decision.outcome is not Outcome.ALLOW and name != "reference":
                raise GateError(f"benchmark ticket was refused: {decision.as_dict()}")
        results[name] = summary_us(samples)
        if name == "signed":
            per_second = rounds / (time.perf_counter() - started)
    return results, per_second
