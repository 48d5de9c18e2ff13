"""``gatectl bench fleet``: what watching a venue's gates costs the central.

A real ``gate-central`` process with ``--gates`` gates in its roster (200 by default, the
drill's plan). Each gate sends signed heartbeats carrying the short status the fleet
reads (``core.fleet.heartbeat_status``'s shape, with four peers), all gates at once, for
a few rounds. Figures:

1. **Heartbeat**: its body's bytes, and the central's rate of heartbeats taken (signed,
   parsed and committed) with every gate beating at once.
2. **/v1/fleet**: ``--rounds`` reads of the whole fleet as the page polls it (every gate
   judged, the SOP cards, the JSON), one at a time: p50 and p99.
3. **Judging**: ``core.fleet.assemble`` on what ``/v1/fleet`` answered, as
   ``gatectl fleet --central`` does: p50 over 200 runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from gate_daemon.bench import fixtures
from gate_daemon.bench.stats import percentile
from gate_daemon.core.fleet import Thresholds, assemble
from gate_daemon.core.keys import SecretKey
from gate_daemon.errors import GateError
from gate_daemon.net.upstream import UpstreamClient
from gate_daemon.provision.keyfiles import write_keypair

GATES = 200
ROUNDS = 200
#: Heartbeats each gate sends (all gates at once, each round).
BEATS = 5


def run(args: argparse.Namespace) -> int:
    """Run the suite and print the table (or JSON)."""
    gates, rounds = args.gates or GATES, args.rounds or ROUNDS
    with tempfile.TemporaryDirectory(prefix="gate-bench-", dir=Path.cwd()) as tmp:
        try:
            result = asyncio.run(_measure(Path(args.workdir or tmp), gates, rounds))
        except OSError as exc:
            raise GateError(f"benchmark cannot use its work directory: {exc.strerror or exc}") from None
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        hb, page = result["heartbeat"], result["fleet_read"]
        print(f"fleet bench: {gates} gates, {rounds} reads ({result['machine']}, Python {result['python']})")
        print(f"heartbeat   {hb['bytes']} bytes a beat; {hb['per_s']:.0f} beats/s taken, all gates at once")
        print(f"/v1/fleet   {page['bytes']} bytes; p50 {page['p50_ms']:.1f} ms, p99 {page['p99_ms']:.1f} ms")
        print(f"judging     p50 {result['judge_p50_ms']:.2f} ms for {gates} gates (gatectl fleet --central)")
    return 0


def brief(n: int) -> dict[str, Any]:
    """A heartbeat's short status, as ``heartbeat_status`` makes it, with four peers."""
    return {
        "mode": "entry",
        "zone": None,
        "manifest": {"active": True, "version": 3, "event": "bench", "tickets": 1000,
                     "issued_at": "2026-12-07T20:00:00Z", "age_seconds": 3600,
                     "expires_at": "2026-12-08T20:00:00Z", "expired": False},
        "decision": "local",
        "clock": {"now": time.time(), "floor": None, "floor_source": None, "offset_s": 0.01, "rtt_s": 0.002,
                  "synchronised": True, "warning": None, "source": "system", "authenticated": True,
                  "central_age_s": 3.0, "known": True, "unsigned_answers": 0},
        "uptime_seconds": 3600,
        "in_service": True,
        "problem": None,
        "lane": {"state": "open", "since_ms": None, "by": None, "message": None, "mode_forced": None,
                 "pending": None},
        "upstream": {"up": True, "pending": n % 7},
        "online": None,
        "replication": {"conflicts": 0, "peers": [
            {"gate": f"g{(n + k) % 1000:03d}", "up": True, "lag_seconds": 0.8} for k in range(1, 5)
        ]},
    }  # fmt: skip


async def _measure(work: Path, gates: int, rounds: int) -> dict[str, Any]:
    keys = {f"g{n:03d}": SecretKey.generate() for n in range(gates)}
    central, url = await _start(work, keys)
    try:
        clients = {
            gate: UpstreamClient(
                url, gate, key, client=httpx.AsyncClient(timeout=60, trust_env=False), timeout=60
            )
            for gate, key in keys.items()
        }
        counters = {"scans": 1200, "offline_scans": 1200, "outcome:allow": 1100, "outcome:deny": 100}
        started = time.perf_counter()
        for _ in range(BEATS):
            await asyncio.gather(*(c.heartbeat(counters, brief(n)) for n, c in enumerate(clients.values())))
        beats_s = time.perf_counter() - started
        for client in clients.values():
            await client.aclose()
        reads, size, answer = await _reads(url, rounds)
        judged = []
        for _ in range(200):
            t = time.perf_counter_ns()
            assemble(answer["roster"], answer["heartbeats"], answer["now"], Thresholds())
            judged.append(time.perf_counter_ns() - t)
    finally:
        central.terminate()
        await asyncio.to_thread(central.wait, 30)
        if central.stdout is not None:
            central.stdout.close()
    body = {"sent_at": time.time(), "counters": counters, "status": brief(0)}
    return {
        "gates": gates,
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "heartbeat": {"bytes": len(json.dumps(body).encode()), "per_s": gates * BEATS / beats_s},
        "fleet_read": {
            "bytes": size,
            "p50_ms": percentile(reads, 0.5) / 1e6,
            "p99_ms": percentile(reads, 0.99) / 1e6,
        },
        "judge_p50_ms": percentile(judged, 0.5) / 1e6,
    }


async def _reads(url: str, rounds: int) -> tuple[list[int], int, dict[str, Any]]:
    samples = []
    async with httpx.AsyncClient(timeout=60, trust_env=False) as http:
        for _ in range(rounds):
            t = time.perf_counter_ns()
            got = await http.get(f"{url}/v1/fleet")
            samples.append(time.perf_counter_ns() - t)
            if got.status_code != 200:
                raise GateError(f"/v1/fleet answered {got.status_code}: {got.text[:200]}")
    answer: dict[str, Any] = got.json()
    if len(answer["heartbeats"]) != len(answer["roster"]):
        raise GateError("the central did not keep every gate's heartbeat")
    return samples, len(got.content), answer


async def _start(work: Path, keys: dict[str, SecretKey]) -> tuple[subprocess.Popen[str], str]:
    """A central with ``keys`` in its roster and the shipped SOP cards; its URL once it serves."""
    signer_path, _, _ = write_keypair(work / "signer", overwrite=True)
    _, _, issuer = write_keypair(work / "issuer", overwrite=True)
    fixtures.write_event(work / "event.toml", issuer, int(time.time()))
    with (work / "event.toml").open("a") as roster:
        for gate_id, key in keys.items():
            roster.write(f'\n[[gates]]\nid = "{gate_id}"\npub = "{key.public.text()}"\n')
    fixtures.write_tickets(work / "tickets.csv", 1000)
    sop = Path(__file__).resolve().parents[2] / "config" / "sop"
    (work / "central.toml").write_text(
        f'[central]\nlisten = "127.0.0.1:0"\nstate_dir = "{work / "central"}"\nevent = "event.toml"\n'
        f'tickets = "tickets.csv"\nkey = "{signer_path}"\nrate = 10000\n'
        + (f'sop = "{sop}"\n' if sop.is_dir() else "")
    )
    central = subprocess.Popen(
        [sys.executable, "-c", "from gate_daemon.central.cli import main; raise SystemExit(main())",
         "--config", str(work / "central.toml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    assert central.stdout is not None
    line = await asyncio.to_thread(central.stdout.readline)
    if "serving " not in line:
        with contextlib.suppress(ProcessLookupError):
            central.kill()
        central.wait()
        central.stdout.close()
        raise GateError(f"gate-central did not start: {line.strip() or 'no output'}")
    return central, line.split("serving ", 1)[1].split()[0]
