"""``gatectl bench peers``: gates sharing redemptions over HTTP on loopback.

``--gates`` gates (default 5) run in this one process, on one event loop and one
interpreter lock (their SQLite and verification threads take turns with it), each with
everything a gate shares through: its own ledger file in the
work directory, a manifest whose roster lists every gate's key, ``Replication``, the LAN
app on 127.0.0.1 (port 0) and a ``Replicator`` with every other gate as a peer. Records
are made by ``Gate.scan`` of fresh signed tickets, as at a real gate. Four phases:

1. **Propagation**: one scan at a time at a random gate A; the time from A's commit (a
   ledger listener) until the record is committed in each other gate B's ledger (B's
   ``Ledger.learn`` returning). Pulls run every ``PULL_INTERVAL`` only, so pushes are
   what carry the records; the pulls counted in the phase are printed. Also the HTTP
   requests and bytes each redemption cost.
2. **Every gate at once**: all gates scan back to back together, the same timings and
   counts, to show pushes batching records while one is under way. No budget: no venue
   scans that fast.
3. **Convergence**: the replicators are stopped (a partition), ``--records`` redemptions
   are committed across the gates (a few tickets at two gates, to make conflicts), then
   the replicators start (the partition heals): the time until every gate holds every
   record, and the conflicts each gate found.
4. **Scan latency**: ``Gate.scan`` at the first gate, paced, while phase 3 converges,
   against the same scans idle before and after it, in the same run.
5. **Parts**, each alone: one pull answer served (the gate's own records read and
   signed) and stored (transactions of ``LEARN_BATCH``), and one record's signature and
   its check.

Timing is ``perf_counter_ns`` in the one process: no clocks are compared. With
``--process``, ``gate_daemon.bench.solo`` runs instead: the measured gate in a process of
its own, its scans timed while it catches up and while it drains to the central.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from gate_daemon.bench import fixtures
from gate_daemon.bench.peer_phases import CONVERGE_LIMIT, PULL_INTERVAL, ROUND_LIMIT, PeerBench
from gate_daemon.bench.stats import workdir
from gate_daemon.core.keys import SecretKey
from gate_daemon.errors import GateError
from gate_daemon.net.replication import known_body
from gate_daemon.provision.build import build_manifest
from gate_daemon.provision.event import load_event
from gate_daemon.provision.tickets import load_tickets
from gate_daemon.store.learning import LEARN_BATCH
from gate_daemon.store.manifest_file import read_manifest

GATES = 5
ROUNDS = 1000
RECORDS = 10_000
#: Tickets in the manifest; every timed scan is of a signed ticket sold after it.
TICKETS = 1000


def run(args: argparse.Namespace) -> int:
    """Run the suite and print the table (or JSON)."""
    if getattr(args, "process", False):
        from gate_daemon.bench import solo

        return solo.run(args)
    gates = args.gates or GATES
    if not 2 <= gates <= 64:
        raise GateError(f"--gates must be 2 to 64, got {gates}")
    rounds, records = args.rounds or ROUNDS, args.records or RECORDS
    if records < 2 * gates:
        raise GateError(f"--records must be at least twice --gates ({2 * gates}), got {records}")
    with workdir(args.workdir) as work:
        result = _guarded(work, gates, rounds, records)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_table(result)
    convergence = result["convergence"]
    agreed = set(convergence["conflicts"].values()) == {convergence["conflicts_expected"]}
    return 0 if convergence["converged"] and agreed and not result["propagation"]["lost"] else 1


def _guarded(work: Path, gates: int, rounds: int, records: int) -> dict[str, Any]:
    try:
        return asyncio.run(_measure(work, gates, rounds, records))
    except (OSError, sqlite3.Error) as exc:
        raise GateError(f"benchmark cannot use {work}: {exc}") from None


async def _measure(work: Path, gates: int, rounds: int, records: int) -> dict[str, Any]:
    signer, issuer = SecretKey.generate(), SecretKey.generate()
    keys = {f"gate-{n + 1}": SecretKey.generate() for n in range(gates)}
    now = int(time.time())
    fixtures.write_event(work / "event.toml", issuer, now)
    with (work / "event.toml").open("a") as roster:
        for gate_id, key in keys.items():
            roster.write(f'\n[[gates]]\nid = "{gate_id}"\npub = "{key.public.text()}"\n')
    fixtures.write_tickets(work / "tickets.csv", TICKETS)
    event = load_event(work / "event.toml")
    tickets = load_tickets(work / "tickets.csv", event)
    (work / "manifest.gdm").write_bytes(build_manifest(event, tickets, signer, version=1, issued_at=now))
    manifest = read_manifest(work / "manifest.gdm", [signer.public])
    bench = PeerBench(issuer, random.Random(7))
    try:
        for gate_id, key in keys.items():
            await bench.add(work, gate_id, key, manifest)
        out: dict[str, Any] = {
            "gates": gates,
            "rounds": rounds,
            "records": records,
            "machine": platform.machine(),
            "python": sys.version.split()[0],
            "pull_interval_s": PULL_INTERVAL,
        }
        await bench.connect()
        out["propagation"] = await bench.one_at_a_time(rounds)
        out["busy"] = await bench.all_at_once(rounds)
        await bench.disconnect()
        out["convergence"], out["scan"] = await bench.partition_heals(records)
        idle_pull = known_body(bench.nodes[0].ledger.known())
        out["pull_request_bytes"] = len(json.dumps(idle_pull, separators=(",", ":")))  # as a peer sends it
        await bench.disconnect()
        out["parts"] = await bench.parts(work)
    finally:
        await bench.aclose()
    return out


def _route(messages: dict[str, Any], path: str) -> int:
    return int(messages["routes"].get(path, {}).get("requests", 0))


def _print_table(r: dict[str, Any]) -> None:
    """The figures as Markdown tables (as docs/PERFORMANCE.md shows them), then the verdict."""
    p, c = r["propagation"], r["convergence"]
    n = r["gates"]
    print(f"# gatectl bench peers --gates {n} --rounds {r['rounds']} --records {r['records']}")
    print(
        f"# {r['machine']}, Python {r['python']}; {n} gates in one process on 127.0.0.1 (one event "
        f"loop, one CPU); pull every {r['pull_interval_s']:g} s"
    )
    print()
    print("| measure | result | budget |")
    print("|---|---|---|")
    _print_propagation(p, r["busy"], n)
    _print_healing(c, n)
    print(f"| an idle pull's request body ({n} logs known) | {r['pull_request_bytes']} bytes |  |")
    _print_scan(r["scan"])
    _print_parts(r["parts"])
    print()
    _print_pairs(p, n)
    print()
    conflicts = sorted(set(c["conflicts"].values()))
    if p["lost"]:
        print(f"{p['lost']} records did not reach every gate within {ROUND_LIMIT:g} s")
    if not c["converged"]:
        print(f"NOT CONVERGED within {CONVERGE_LIMIT:g} s")
    elif len(conflicts) != 1 or conflicts[0] != c["conflicts_expected"]:
        print("CONFLICTS DIFFER between gates")
    print("budget met" if p["met"] else "BUDGET MISSED")


def _print_propagation(p: dict[str, Any], busy: dict[str, Any], n: int) -> None:
    """The rows of phases 1 and 2: one redemption at a time, then every gate at once."""
    a, e = p["any_peer"], p["every_peer"]
    print(
        f"| propagation, commit at A -> known at B ({a['count']} pairs timed) | p50 {a['p50_ms']:.2f} ms, "
        f"p99 {a['p99_ms']:.2f} ms, max {a['max_ms']:.2f} ms | p99 <= {p['budget_p99_ms']:.0f} ms |"
    )
    print(
        f"| propagation, commit at A -> known at all {n - 1} others | p50 {e['p50_ms']:.2f} ms, "
        f"p99 {e['p99_ms']:.2f} ms |  |"
    )
    worst = max(p["pairs"].items(), key=lambda kv: kv[1]["p99_ms"])
    print(f"| worst pair at p99 ({worst[0].replace('>', ' -> ')}) | p99 {worst[1]['p99_ms']:.2f} ms |  |")
    m = p["messages"]
    print(
        f"| requests per redemption, one at a time | {m['requests_per_redemption']:.2f} "
        f"({_route(m, '/v1/redemptions')} pushes, {_route(m, '/v1/redemptions/pull')} pulls, "
        f"{_route(m, '/v1/challenge')} challenges) |  |"
    )
    print(
        f"| bytes per redemption, one at a time (requests whole, answer bodies) | "
        f"{m['bytes_per_redemption']} ({m['bytes_per_record_carried']} per record carried) |  |"
    )
    a, mb = busy["any_peer"], busy["messages"]
    print(
        f"| every gate scanning back to back: commit -> known ({busy['redemptions']} redemptions, "
        f"{busy['seconds']:.1f} s) | p50 {a['p50_ms']:.2f} ms, p99 {a['p99_ms']:.2f} ms |  |"
    )
    print(
        f"| every gate scanning back to back: requests per redemption | "
        f"{mb['requests_per_redemption']:.2f} ({mb['bytes_per_redemption']} bytes) |  |"
    )


def _print_healing(c: dict[str, Any], n: int) -> None:
    """The rows of phase 3: the partition heals."""
    mc = c["messages"]
    print(
        f"| partition heals: {c['records']} redemptions everywhere (each gate learns "
        f"{c['records'] - c['records'] // n}+) | {c['seconds']:.2f} s |  |"
    )
    pulls = mc["routes"].get("/v1/redemptions/pull", {"requests": 0, "records": 0, "answer_bytes": 0})
    print(
        f"| partition heals: pulls, records per pull, bytes a record in their answers | {pulls['requests']}, "
        f"{pulls['records'] / max(1, pulls['requests']):.0f}, "
        f"{pulls['answer_bytes'] / max(1, pulls['records']):.0f} |  |"
    )
    print(
        f"| partition heals: requests in all, records received per record stored | {mc['requests']}, "
        f"{c['records_received'] / max(1, c['records_applied']):.2f} |  |"
    )
    print(
        f"| partition heals: conflicts found per gate (expected {c['conflicts_expected']}) | "
        f"{', '.join(str(v) for v in c['conflicts'].values())} |  |"
    )


def _print_scan(s: dict[str, Any]) -> None:
    """The rows of phase 4: a gate's scans while the partition heals, against idle."""
    i, b = s["idle"], s["converging"]
    print(
        f"| scan at {s['gate']}, idle before and after | p50 {i['p50_ms']:.2f} ms, "
        f"p99 {i['p99_ms']:.2f} ms |  |"
    )
    print(
        f"| scan at {s['gate']}, while the partition heals ({b['count']} scans) | p50 {b['p50_ms']:.2f} ms, "
        f"p99 {b['p99_ms']:.2f} ms |  |"
    )
    print(f"| ratio converging / idle | p50 {s['ratio_p50']:.2f}x, p99 {s['ratio_p99']:.2f}x |  |")


def _print_parts(q: dict[str, Any]) -> None:
    """The rows of phase 5: a pull answer's two ends and a record's signature, each alone."""
    print(
        f"| one pull answer of {q['batch']} own records served (read-only connection, signatures cached), "
        "alone "
        f"| p50 {q['serve']['p50_ms']:.1f} ms, max {q['serve']['max_ms']:.1f} ms |  |"
    )
    print(
        f"| the same {q['batch']} records stored (transactions of {LEARN_BATCH}, each holding the scan "
        "lock), alone "
        f"| p50 {q['store']['p50_ms']:.1f} ms, max {q['store']['max_ms']:.1f} ms |  |"
    )
    print(f"| sign one record / check its signature | {q['sign_us']:.0f} us / {q['check_us']:.0f} us |  |")


def _print_pairs(p: dict[str, Any], n: int) -> None:
    """Phase 1 by pair of gates: a matrix of p50 / p99."""
    names = [f"gate-{k + 1}" for k in range(n)]
    print("p50 / p99 ms, commit at the row's gate -> known at the column's:")
    print()
    print("| from \\ to | " + " | ".join(names) + " |")
    print("|---" * (n + 1) + "|")
    for src in names:
        cells = []
        for dst in names:
            pair = p["pairs"].get(f"{src}>{dst}")
            cells.append("-" if pair is None else f"{pair['p50_ms']:.1f} / {pair['p99_ms']:.1f}")
        print(f"| {src} | " + " | ".join(cells) + " |")
