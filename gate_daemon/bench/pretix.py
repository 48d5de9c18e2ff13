"""``gatectl bench pretix``: pretix's online ``redeem`` beside the gate's own decision, same tickets.

The bench starts a real pretix from the cache the tests use (``bench.pretix_install``;
built first when missing, a few minutes once per machine), seeded as the tests seed it,
sells ``--rounds`` tickets (default 200, pretix_sig1 signed secrets) and then, ticket by
ticket, interleaved so a noisy neighbour hurts both alike:

- **pretix redeem**: ``POST checkinrpc/redeem`` as an initialized scanning device over a
  kept-alive loopback connection, answer read (201 ``ok``): what an online-first scan
  waits for at best, with no network between the gate and pretix;
- **gate scan**: ``Gate.scan`` of the same secret on a real ledger (``synchronous=FULL``)
  against a manifest built from that pretix: Ed25519 verification of the secret, the
  claims, the ledger's unit of work, committed.

The ratio of the medians (and of the p99s) is the figure to compare across machines.
Then the bridge (``bench.pretix_sync``): a ``gate-central`` bridging that pretix and a
gate syncing with it, for the sync lag both ways and the upload of ``--records``
(default 2,000) entries made offline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from gate_daemon.bench import fixtures
from gate_daemon.bench.pretix_install import PRETIX_VERSION, build
from gate_daemon.bench.pretix_lab import PretixServer, running_pretix
from gate_daemon.bench.pretix_manifest import gate_manifest
from gate_daemon.bench.pretix_sync import backlog_upload, bridge_venue, cancel_lag, checkin_lag
from gate_daemon.bench.stats import summary_ms, workdir
from gate_daemon.core.decision import Checkpoint, ScanKind
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.manifest import Manifest
from gate_daemon.errors import GateError
from gate_daemon.gate.scan import Gate
from gate_daemon.hardware.factory import NullSignals
from gate_daemon.store.ledger import Ledger

GATE = "bench-pretix-1"


#: The bridge's sync interval in this bench (``[source] interval_s``; the lags follow it).
BRIDGE_INTERVAL_S = 1.0


def run(args: argparse.Namespace) -> int:
    """Run the suite and print its figures."""
    rounds = args.rounds or 200
    records = args.records or 2000
    with workdir(args.workdir) as work:
        figures = _measure(work, rounds, records)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"pretix {figures['pretix']} on {figures['machine']}, {rounds} tickets")
    print(f"  pretix started and seeded in {figures['start_s']} s")
    for name in ("pretix_redeem", "gate_scan"):
        f = figures[name]
        print(
            f"  {name:<14} p50 {f['p50_ms']:>8.2f} ms  p99 {f['p99_ms']:>8.2f} ms  max {f['max_ms']:>8.2f} ms"
        )
    print(f"  ratio pretix/gate: p50 {figures['ratio_p50']}x  p99 {figures['ratio_p99']}x")
    bridge = figures["bridge"]
    print(
        f"  bridge (interval {bridge['interval_s']} s): cancel in pretix -> refused at the gate "
        f"{bridge['cancel_lag_s']} s; entry at the gate -> in pretix {bridge['checkin_lag_s']} s"
    )
    up = bridge["backlog"]
    print(f"  backlog of {up['count']} offline entries into pretix: {up['seconds']} s ({up['per_s']}/s)")
    return 0


def _measure(work: Path, rounds: int, records: int) -> dict[str, Any]:
    build()
    started = time.monotonic()
    with running_pretix(work) as server:
        start_s = round(time.monotonic() - started, 1)
        figures = measure_against(server, work, rounds)
        return {"start_s": start_s, **figures, "bridge": measure_bridge(server, work / "venue", records)}


def measure_bridge(server: PretixServer, work: Path, records: int) -> dict[str, Any]:
    """The bridge's figures: both sync lags and the upload of ``records`` offline entries."""
    work.mkdir(parents=True, exist_ok=True)
    with bridge_venue(work, server, BRIDGE_INTERVAL_S) as venue:
        return {
            "interval_s": BRIDGE_INTERVAL_S,
            "cancel_lag_s": round(cancel_lag(server, venue), 2),
            "checkin_lag_s": round(checkin_lag(server, venue), 2),
            "backlog": backlog_upload(server, venue, records),
        }


def measure_against(server: PretixServer, work: Path, rounds: int) -> dict[str, Any]:
    """Sell ``rounds`` tickets in a running pretix and time both answers for each (the figures)."""
    secrets = [server.make_order(name=f"Bench {i}").secret for i in range(rounds)]
    manifest = gate_manifest(server, SecretKey.generate())
    try:
        redeem_ns, scan_ns = asyncio.run(
            _interleaved(server, manifest, secrets, work / "bench-ledger.sqlite")
        )
    finally:
        manifest.release()
    redeem, scan = summary_ms(redeem_ns), summary_ms(scan_ns)
    return {
        "pretix": PRETIX_VERSION,
        "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
        "tickets": rounds,
        "pretix_redeem": redeem,
        "gate_scan": scan,
        "ratio_p50": round(redeem["p50_ms"] / max(scan["p50_ms"], 0.001), 1),
        "ratio_p99": round(redeem["p99_ms"] / max(scan["p99_ms"], 0.001), 1),
    }


def _reason(answer: httpx.Response) -> str:
    """pretix's reason for a refusal, never the answer itself (it carries the ticket's secret)."""
    try:
        return str(answer.json().get("reason"))
    except ValueError:
        return "(not JSON)"


async def _interleaved(
    server: PretixServer, manifest: Manifest, secrets: list[str], ledger_path: Path
) -> tuple[list[int], list[int]]:
    device = server.initialize_device(server.new_device_token("bench-pretix"), "gate-daemon bench")
    url = f"{server.url}/api/v1/organizers/{server.organizer}/checkinrpc/redeem/"
    ledger = await Ledger.open(ledger_path, GATE)
    gate = Gate(
        gate_id=GATE,
        event_id=server.event,
        checkpoint=Checkpoint(zone="main"),
        kind=ScanKind.ENTRY,
        ledger=ledger,
        manifests=fixtures.HeldManifest(manifest),
        signals=NullSignals(),
    )
    redeem_ns: list[int] = []
    scan_ns: list[int] = []
    try:
        async with httpx.AsyncClient(headers={"Authorization": f"Device {device['api_token']}"}) as http:
            for secret in secrets:
                body: dict[str, Any] = {"secret": secret, "lists": [server.lists["main"]], "type": "entry"}
                body |= {"nonce": str(uuid.uuid4()), "questions_supported": False}
                began = time.perf_counter_ns()
                answer = await http.post(url, json=body, timeout=30.0)
                redeem_ns.append(time.perf_counter_ns() - began)
                if answer.status_code != 201:
                    raise GateError(f"pretix refused a bench ticket: {answer.status_code} {_reason(answer)}")
                began = time.perf_counter_ns()
                result = await gate.scan(secret, device="bench")
                scan_ns.append(time.perf_counter_ns() - began)
                if result.decision.reason.value != "ok":
                    raise GateError(f"the gate refused a bench ticket: {result.decision.message}")
    finally:
        await ledger.close()
    return redeem_ns, scan_ns
