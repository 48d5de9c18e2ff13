"""``gatectl bench commands``: a supervisor's command, verified and applied at a gate.

Three figures, each over ``--rounds`` commands (default 500), on a real ledger file in the
work directory (``synchronous=FULL``):

- **verify**: parse the envelope and verify its Ed25519 signature against a roster of 20
  supervisors (pure, in process): what the central and the gate both pay;
- **apply**: ``Lane.command`` end to end: parse, verify, the replay and ordering rules, the
  lane row, the evidence row and the counter, committed (one fsync);
- **lan**: ``POST /v1/command`` over loopback HTTP to the gate's LAN application, answer read.

Every command is new (its own nonce, a later ``issued_ms``), so each one is applied.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import platform
import secrets
import time
from pathlib import Path
from typing import Any

from gate_daemon.bench import fixtures
from gate_daemon.bench.stats import summary_us, workdir
from gate_daemon.core.commands import SignedCommand, parse_command, parse_envelope, sign, verify
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.manifest import Manifest, open_manifest
from gate_daemon.core.manifest_header import RosterSupervisor
from gate_daemon.errors import GateError
from gate_daemon.gate.lane import Lane
from gate_daemon.provision.build import build_manifest
from gate_daemon.provision.event import load_event
from gate_daemon.provision.tickets import load_tickets
from gate_daemon.store.ledger import Ledger

GATE = "bench-1"
SUPERVISORS = 20


@dataclasses.dataclass
class _Held:
    current: Manifest | None


def run(args: argparse.Namespace) -> int:
    """Run the suite and print its figures."""
    rounds = args.rounds or 500
    logging.getLogger("gate_daemon.gate.lane").setLevel(logging.ERROR)  # one line per command applied
    with workdir(args.workdir) as work:
        figures = asyncio.run(_measure(work, rounds))
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"supervisor commands on {figures['machine']}, {rounds} each")
    for name in ("verify", "apply", "lan"):
        f = figures[name]
        print(
            f"  {name:<7} p50 {f['p50_us']:>9.1f} us  p99 {f['p99_us']:>9.1f} us  max {f['max_us']:>9.1f} us"
        )
    return 0


def _manifest(workdir: Path, keys: list[SecretKey]) -> Manifest:
    signer, issuer = SecretKey.generate(), SecretKey.generate()
    now = int(time.time())
    fixtures.write_event(workdir / "event.toml", issuer, now)
    fixtures.write_tickets(workdir / "tickets.csv", 100)
    event = load_event(workdir / "event.toml")
    roster = tuple(RosterSupervisor(f"sup-{n}", key.public) for n, key in enumerate(keys))
    event = dataclasses.replace(event, supervisors=roster)
    tickets = load_tickets(workdir / "tickets.csv", event)
    data = build_manifest(event, tickets, signer, version=1, issued_at=now - 60, expires_at=now + 86400)
    return open_manifest(data, [signer.public])


def _commands(manifest: Manifest, keys: list[SecretKey], count: int, start_ms: int) -> list[SignedCommand]:
    made = []
    for i in range(count):
        n = i % len(keys)
        body = {"v": 1, "event": manifest.event_id, "gate": GATE, "kind": "message", "value": f"note {i}"}
        body |= {"supervisor": f"sup-{n}", "issued_ms": start_ms + i, "nonce": secrets.token_hex(16)}
        made.append(sign(parse_command(body), keys[n]))
    return made


async def _measure(workdir: Path, rounds: int) -> dict[str, Any]:
    keys = [SecretKey.generate() for _ in range(SUPERVISORS)]
    manifest = _manifest(workdir, keys)
    now_ms = int(time.time() * 1000)
    verify_ns = []
    for signed in _commands(manifest, keys, rounds, now_ms):
        envelope = signed.envelope()
        started = time.perf_counter_ns()
        parsed = parse_envelope(envelope)
        verify(parsed, manifest.supervisors, event=manifest.event_id, gate=GATE, now_ms=now_ms)
        verify_ns.append(time.perf_counter_ns() - started)
    ledger = await Ledger.open(workdir / "ledger.sqlite", GATE)
    try:
        lane = Lane(ledger, _Held(manifest), gate_id=GATE, event_id=manifest.event_id)
        apply_ns = []
        for signed in _commands(manifest, keys, rounds, now_ms + rounds):
            envelope = signed.envelope()
            started = time.perf_counter_ns()
            await lane.command(envelope, via="lan")
            apply_ns.append(time.perf_counter_ns() - started)
        lan_ns = await _over_http(lane, _commands(manifest, keys, rounds, now_ms + 2 * rounds))
    finally:
        await ledger.close()
    return {
        "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
        "rounds": rounds,
        "verify": summary_us(verify_ns),
        "apply": summary_us(apply_ns),
        "lan": summary_us(lan_ns),
    }


async def _over_http(lane: Lane, commands: list[SignedCommand]) -> list[int]:
    import aiohttp
    from aiohttp import web

    from gate_daemon.net.lan import create_app

    runner = web.AppRunner(create_app(None, rate=1_000_000, lane=lane), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    taken = []
    try:
        async with aiohttp.ClientSession() as http:
            for signed in commands:
                body = json.dumps(signed.envelope())
                started = time.perf_counter_ns()
                async with http.post(f"http://127.0.0.1:{port}/v1/command", data=body) as answer:
                    await answer.read()
                    if answer.status != 200:
                        raise GateError(f"the gate refused a benchmark command: {await answer.text()}")
                taken.append(time.perf_counter_ns() - started)
    finally:
        await runner.cleanup()
    return taken
