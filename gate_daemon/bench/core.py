"""``gatectl bench core``: decision, manifest build, activation and lookup figures.

Prints a Markdown table with each figure beside its budget, ready for
docs/PERFORMANCE.md. Activation runs in a fresh process so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gate_daemon.bench import fixtures
from gate_daemon.bench.stats import summary_us
from gate_daemon.core.decision import Checkpoint, Outcome, evaluate
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.manifest import open_manifest
from gate_daemon.core.tokens import TicketClaims, encode_signed, event_tag
from gate_daemon.errors import GateError
from gate_daemon.provision.build import build_manifest
from gate_daemon.provision.event import load_event
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
        raise GateError(f"--sizes takes comma-separated ticket counts, got {args.sizes!r}") from None
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return _run(args.workdir, sizes, args.rounds)
    with tempfile.TemporaryDirectory(prefix="gate-bench-") as tmp:
        return _run(Path(tmp), sizes, args.rounds)


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
    rows.append(("signed decisions per second (one core)", f"{per_second:,.0f}", ""))

    for size in sizes:
        csv_path = work / f"tickets-{size}.csv"
        fixtures.write_tickets(csv_path, size)
        started = time.perf_counter()
        tickets = load_tickets(csv_path, event)
        data = build_manifest(event, tickets, signer, version=1, issued_at=now)
        out = work / f"manifest-{size}.gdm"
        out.write_bytes(data)
        build_s = time.perf_counter() - started
        del tickets, data
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "gate_daemon.bench.activate",
                str(out),
                str(work / "signer.pub"),
                str(size),
                str(rounds),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise GateError(f"activation run failed: {proc.stderr.strip()[-500:]}")
        got = json.loads(proc.stdout)
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
        for kind in ("ticket_id", "reference", "legacy", "miss"):
            rows.append(
                (
                    f"{label}: lookup by {kind.replace('_', ' ')}",
                    _us(got[f"lookup_{kind}"]),
                    f"p99 <= {BUDGETS['lookup_p99_us']:.0f} us",
                )
            )

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"gatectl bench core: {rounds} rounds per timing; {machine}")
    print()
    print("| measure | result | budget |")
    print("|---|---|---|")
    for measure, result, budget in rows:
        print(f"| {measure} | {result} | {budget} |")
    return 0


def _us(figures: dict[str, float]) -> str:
    return f"p50 {figures['p50_us']} us, p99 {figures['p99_us']} us"


def _bench_decide(
    work: Path, signer: SecretKey, issuer: SecretKey, now: int, rounds: int
) -> tuple[dict[str, dict[str, float]], float]:
    """Time ``evaluate`` for signed tickets and reference codes; also signed decisions/s."""
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
    # Tickets 1, 4, 7, ... are in the open session ("sat") and completed or a status
    # that denies; either way the full path runs. Keep the allowed ones to time.
    codes = [fixtures.code(i) for i in range(1, 10_000, 3) if i % 20 < 16][:2000]
    where = Checkpoint(zone="floor")
    results: dict[str, dict[str, float]] = {}
    per_second = 0.0
    for name, payloads in (("signed", pool), ("reference", codes)):
        samples = []
        started = time.perf_counter()
        for n in range(rounds):
            payload = payloads[n % len(payloads)]
            t0 = time.perf_counter_ns()
            decision = evaluate(payload, manifest, where, now)
            samples.append(time.perf_counter_ns() - t0)
            if decision.outcome is not Outcome.ALLOW and name == "signed":
                raise GateError(f"benchmark ticket was refused: {decision.as_dict()}")
        results[name] = summary_us(samples)
        if name == "signed":
            per_second = rounds / (time.perf_counter() - started)
    return results, per_second
