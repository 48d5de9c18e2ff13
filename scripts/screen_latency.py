"""Measure the gate screen: a scan's decision to its event at a screen, and what screens cost a scan.

    .venv/bin/python scripts/screen_latency.py [SCANS] [SCREENS]     (defaults: 500 scans, 3 screens)

Starts a whole gate in this process (``app.start``, its ledger on a temporary disk, its
screen on a free loopback port), scans SCANS tickets with no screen open, then SCANS more
with SCREENS event streams open (aiohttp clients, as many browsers), and prints the p50
and p99 of a scan's time (payload to committed and shown, fsync included) in both phases,
and of the time from a scan's start to its ``scan`` event read by every screen. Each scan
starts once every screen has read the strip that follows the last one (in a lane, scans
are seconds apart): the clients share this process's CPU, and their reading is not the
gate's cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from gate_daemon.config.load import load_config
from gate_daemon.core.times import format_instant
from gate_daemon.daemon import app
from gate_daemon.daemon.systemd import Notifier
from gate_daemon.provision.build import build_manifest
from gate_daemon.provision.event import load_event
from gate_daemon.provision.keyfiles import write_keypair
from gate_daemon.provision.tickets import load_tickets


def setup(work: Path, scans: int) -> Path:
    now = time.time()
    _, signer_pub, signer = write_keypair(work / "signer")
    (work / "event.toml").write_text(
        f'[event]\nid = "bench"\nname = "Bench"\n[[sessions]]\nid = "now"\nname = "Now"\n'
        f"starts_at = {format_instant(now - 1800)}\nends_at = {format_instant(now + 6 * 3600)}\n"
        '[[zones]]\nid = "floor"\nname = "Floor"\n'
    )
    rows = [f"T{n},P{n},1,completed,now,floor,1,Holder {n}" for n in range(2 * scans)]
    (work / "tickets.csv").write_text(
        "ticket_id,order_id,seat,status,session,zone,entries,name\n" + "\n".join(rows)
    )
    event = load_event(work / "event.toml")
    tickets = load_tickets(work / "tickets.csv", event)
    (work / "drop.gdm").write_bytes(
        build_manifest(event, tickets, signer, version=1, issued_at=int(now) - 60)
    )
    config = work / "gate.toml"
    config.write_text(
        f'[gate]\nid = "north-1"\nevent = "bench"\nzone = "floor"\nstate_dir = "{work / "state"}"\n'
        f'[manifest]\npath = "{work / "drop.gdm"}"\ntrusted_keys = ["{signer_pub}"]\n'
        '[input]\nkind = "none"\n[signals]\nkind = "none"\n'
        f'[control]\nsocket = "{work / "control.sock"}"\n[screen]\nlisten = "127.0.0.1:0"\n'
    )
    return config


async def screen(url: str, seen: asyncio.Queue[tuple[str, float]], connected: asyncio.Event) -> None:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        name = ""
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
                if name == "status":
                    connected.set()
            elif line.startswith("data: ") and connected.is_set():
                json.loads(line.removeprefix("data: "))
                seen.put_nowait((name, time.perf_counter()))


async def scan_event(queue: asyncio.Queue[tuple[str, float]]) -> float:
    """When the next ``scan`` event arrived (a periodic ``status`` before it is skipped)."""
    while True:
        name, at = await queue.get()
        if name == "scan":
            return at


def ms(values: list[float]) -> str:
    cuts = statistics.quantiles(values, n=100)
    return f"p50 {cuts[49] * 1000:.2f} ms, p99 {cuts[98] * 1000:.2f} ms"


async def measure(config_path: Path, scans: int, screens: int) -> None:
    running = await app.start(load_config(config_path))
    stop = asyncio.Event()
    served = asyncio.create_task(app.serve(running, Notifier(None), stop))
    gate = running.gate
    alone = []
    for n in range(scans):
        start = time.perf_counter()
        await gate.scan(f"P{n}-1", device="bench")
        alone.append(time.perf_counter() - start)
    url = f"http://127.0.0.1:{running.status.screen_port}/screen/events"
    queues: list[asyncio.Queue[tuple[str, float]]] = [asyncio.Queue() for _ in range(screens)]
    ready = [asyncio.Event() for _ in range(screens)]
    clients = [asyncio.create_task(screen(url, q, e)) for q, e in zip(queues, ready, strict=True)]
    for event in ready:
        await event.wait()
    await asyncio.sleep(0.5)
    for queue in queues:  # the first status events, already read
        while not queue.empty():
            queue.get_nowait()
    watched, shown = [], []
    for n in range(scans, 2 * scans):
        start = time.perf_counter()
        await gate.scan(f"P{n}-1", device="bench")
        watched.append(time.perf_counter() - start)
        arrivals = [await scan_event(q) for q in queues]
        shown.append(max(arrivals) - start)
        for queue in queues:  # the strip that follows each scan: the screens are quiet again
            while (await queue.get())[0] != "status":
                pass
    for client in clients:
        client.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await client
    stop.set()
    await served
    print(f"scan, no screen open:        {ms(alone)}  ({scans} scans)")
    print(f"scan, {screens} screens open:       {ms(watched)}")
    print(f"scan start -> event at every screen: {ms(shown)}")


def main() -> None:
    scans = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    screens = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(measure(setup(Path(tmp), scans), scans, screens))


if __name__ == "__main__":
    main()
