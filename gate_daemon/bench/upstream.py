"""``gatectl bench upstream``: a gate and the reference central on loopback.

The central runs as its own process (``gate-central``, as at a venue), with its SQLite
file in the work directory. Three figures:

1. **Drain**: a gate's ledger holding ``--records`` redemptions the central has never
   seen (an hour offline at a busy gate: 50,000 by default) is drained through the real
   upstream client and sync loop: signing, HTTP, the central's verification and its
   commits. Then the central's count must be exactly the records, a second drain must
   send nothing, and one batch sent again must come back all ``duplicate``.
   (The backlog is written into the ledger file directly before the gate opens it: the
   scans that made it are what ``bench gate`` measures.)
2. **Online-first beside local**: ``--rounds`` scans through a gate deciding alone and
   through a gate asking the central first, interleaved in batches so that both see the
   same machine. Each scan is payload to committed decision (fsync included).
3. **Central hanging**: the central's process is stopped (SIGSTOP) and the online-first
   gate keeps scanning: the first scans wait out the hard timeout, then the breaker opens
   and scans are local again. Then the central continues (SIGCONT) and the breaker's
   probe closes it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

import httpx

from gate_daemon.bench import fixtures
from gate_daemon.bench.gate import benched_gate, fresh_database, signed_tickets, time_scans
from gate_daemon.bench.stats import percentile, workdir
from gate_daemon.core.decision import Checkpoint
from gate_daemon.core.hlc import Stamp
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.manifest import Manifest
from gate_daemon.core.reasons import Outcome
from gate_daemon.errors import GateError
from gate_daemon.gate.clock import GateClock
from gate_daemon.gate.manifest_watch import ManifestWatch
from gate_daemon.gate.scan import Gate
from gate_daemon.net.online import BreakerSettings, OnlineDecider
from gate_daemon.net.replication import Replication
from gate_daemon.net.sync import SyncSettings, UpstreamSync
from gate_daemon.net.upstream import UpstreamClient
from gate_daemon.provision.keyfiles import write_keypair
from gate_daemon.store.central.checkin_book import read_report
from gate_daemon.store.ledger import Ledger
from gate_daemon.store.manifest_file import read_manifest
from gate_daemon.store.upstream_marks import UpstreamMarks

RECORDS = 50_000
ROUNDS = 500
BUDGET_DRAIN_S = 10.0
TICKETS = 1000
#: Scans per batch; batches alternate the local and the online-first gate.
BATCH = 25
#: Online-first settings for the bench (the defaults of [upstream]).
BREAKER = BreakerSettings(timeout=0.5, max_latency=0.3, failures=3, probe_interval=0.2, probes=2)
GATES = ("bench-local", "bench-online", "bench-drain")


def run(args: argparse.Namespace) -> int:
    """Run the suite and print the table (or JSON)."""
    records, rounds = args.records or RECORDS, args.rounds or ROUNDS
    with workdir(args.workdir) as work:
        result = _guarded(work, records, rounds)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_table(result)
    return 0 if result["drain"]["exactly_once"] else 1


def _guarded(work: Path, records: int, rounds: int) -> dict[str, Any]:
    try:
        return asyncio.run(_measure(work, records, rounds))
    except (OSError, sqlite3.Error) as exc:
        raise GateError(f"benchmark cannot use {work}: {exc}") from None


async def _measure(work: Path, records: int, rounds: int) -> dict[str, Any]:
    now = int(time.time())
    signer_path, _, signer = write_keypair(work / "signer", overwrite=True)
    _, _, issuer = write_keypair(work / "issuer", overwrite=True)
    keys = {gate: SecretKey.generate() for gate in GATES}
    fixtures.write_event(work / "event.toml", issuer, now)
    with (work / "event.toml").open("a") as roster:
        for gate_id, key in keys.items():
            roster.write(f'\n[[gates]]\nid = "{gate_id}"\npub = "{key.public.text()}"\n')
    fixtures.write_tickets(work / "tickets.csv", TICKETS)
    state = work / "central"
    fresh_database(state / "central.sqlite")
    (work / "central.toml").write_text(
        "[central]\n"
        'id = "bench-central"\n'
        'listen = "127.0.0.1:0"\n'
        f'state_dir = "{state}"\n'
        'event = "event.toml"\n'
        'tickets = "tickets.csv"\n'
        f'key = "{signer_path}"\n'
        "rate = 1000\n"
    )
    central, url = await _start_central(work / "central.toml")
    try:
        out: dict[str, Any] = {
            "records": records,
            "rounds": rounds,
            "machine": platform.machine(),
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
        }
        out["drain"] = await _drain(work, url, keys["bench-drain"], signer, records, state)
        out["decision"], out["hang"] = await _decisions(work, url, keys, signer, issuer, rounds, central)
    finally:
        with contextlib.suppress(ProcessLookupError):
            central.send_signal(signal.SIGCONT)
        central.terminate()
        await asyncio.to_thread(central.wait, 30)
        if central.stdout is not None:
            central.stdout.close()
    return out


async def _start_central(config: Path) -> tuple[subprocess.Popen[str], str]:
    """``gate-central --config`` as a child process; its URL once it serves."""
    central = subprocess.Popen(
        [sys.executable, "-c", "from gate_daemon.central.cli import main; raise SystemExit(main())",
         "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    assert central.stdout is not None
    line = await asyncio.to_thread(central.stdout.readline)
    marker = "serving "
    if marker not in line:
        central.kill()
        central.wait()
        central.stdout.close()
        raise GateError(f"gate-central did not start: {line.strip() or 'no output'}")
    return central, line.split(marker, 1)[1].split()[0]


def _client(url: str, gate_id: str, key: SecretKey, timeout: float = 30.0) -> UpstreamClient:
    return UpstreamClient(
        url, gate_id, key, client=httpx.AsyncClient(timeout=timeout, trust_env=False), timeout=timeout
    )


async def _drain(
    work: Path, url: str, key: SecretKey, signer: SecretKey, records: int, central_state: Path
) -> dict[str, Any]:
    """A backlog of ``records`` drained to the central; timed and counted."""
    path = fresh_database(work / "drain.sqlite")
    ledger = await Ledger.open(path, "bench-drain")
    epoch = ledger.epoch
    await ledger.close()
    write_backlog(path, "bench-drain", epoch, records)
    ledger = await Ledger.open(path, "bench-drain")
    client = _client(url, "bench-drain", key)
    try:
        manifest_file = work / "drain-manifest.gdm"
        manifest = await _fetch_manifest(client, manifest_file, signer)
        replication = Replication(ledger, key, lambda: manifest)
        marks = await UpstreamMarks.load(ledger)
        watch = ManifestWatch(
            drop_path=work / "unused.gdm",
            private_path=manifest_file,
            trusted=[signer.public],
            ledger=ledger,
            event_id=fixtures.EVENT_ID,
            checkpoint=Checkpoint(),
        )
        sync = UpstreamSync(client, replication, marks, watch, GateClock(), SyncSettings(), download_dir=work)
        pending = marks.pending()
        t0 = time.perf_counter()
        sent = await sync.drain()
        seconds = time.perf_counter() - t0
        again = await sync.drain()
        first, _ = await ledger.records_after({}, 500)
        replay = await client.push(await replication.wire_many(first))
        report = read_report(central_state / "central.sqlite")
    finally:
        await client.aclose()
        await ledger.close()
    duplicates = sum(r.status == "duplicate" for r in replay.results)
    exactly_once = (
        sent == records and again == 0 and report["checkins"] == records and duplicates == len(first)
    )
    return {
        "pending_before": pending,
        "sent": sent,
        "seconds": round(seconds, 2),
        "records_per_second": round(sent / seconds) if seconds else None,
        "batches": -(-sent // 500),
        "second_drain_sent": again,
        "central_checkins": report["checkins"],
        "replayed_batch": len(first),
        "replayed_duplicates": duplicates,
        "exactly_once": exactly_once,
        "budget_s": BUDGET_DRAIN_S,
    }


def write_backlog(path: Path, gate_id: str, epoch: str, records: int, *, prefix: str = "B") -> None:
    """``records`` entries of this gate's own log, as its scans left them (tickets ``PREFIX-n``)."""
    start = int(time.time() * 1000) - records
    rows = [
        (str(uuidlib.uuid4()), f"{prefix}-{i:07d}", "entry", 1, gate_id, epoch, i + 1,
         Stamp(start + i, 0).packed, (start + i) / 1000, None, "offline", 0, None, None)
        for i in range(records)
    ]  # fmt: skip
    db = sqlite3.connect(path)
    try:
        with db:
            db.executemany(
                "INSERT INTO redemptions (uuid, ticket_id, kind, slot, origin, epoch, seq, hlc, wall,"
                " operator, mode, forced, voids, sig) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
    finally:
        db.close()


async def _decisions(
    work: Path,
    url: str,
    keys: dict[str, SecretKey],
    signer: SecretKey,
    issuer: SecretKey,
    rounds: int,
    central: subprocess.Popen[str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Local and online-first scans interleaved; then the online-first gate with the central hung."""
    async with contextlib.AsyncExitStack() as stack:
        client = _client(url, "bench-online", keys["bench-online"])
        stack.push_async_callback(client.aclose)
        manifest = await _fetch_manifest(client, work / "decide-manifest.gdm", signer)
        online = OnlineDecider(client, Checkpoint(), BREAKER)
        ledgers: dict[str, Ledger] = {}
        for gate_id in ("bench-local", "bench-online"):
            ledgers[gate_id] = await Ledger.open(fresh_database(work / f"{gate_id}.sqlite"), gate_id)
            stack.push_async_callback(ledgers[gate_id].close)
        local = benched_gate("bench-local", ledgers["bench-local"], manifest)
        remote = benched_gate("bench-online", ledgers["bench-online"], manifest, online)
        probe = asyncio.create_task(online.run())
        stack.push_async_callback(_stopped, probe)
        decision = await _side_by_side(local, remote, issuer, rounds)
        decision["online_calls"] = dict(online.calls)
        return decision, await _hung(remote, online, issuer, central)


async def _fetch_manifest(client: UpstreamClient, path: Path, signer: SecretKey) -> Manifest:
    """The central's manifest, downloaded to ``path`` and read."""
    fetched = await client.manifest(None, path, max_bytes=1 << 30, timeout=60)
    assert fetched is not None
    return read_manifest(path, [signer.public])


async def _stopped(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait until it has ended."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _side_by_side(local: Gate, remote: Gate, issuer: SecretKey, rounds: int) -> dict[str, Any]:
    """``rounds`` scans at a gate deciding alone and at one asking the central, batches in turn."""
    for gate, prefix in ((local, "L"), (remote, "O")):
        await gate.scan(signed_tickets(issuer, f"{prefix}W", 1)[0], device="bench")  # warm the path
    sides = {
        "local": (local, signed_tickets(issuer, "L", rounds)),
        "online": (remote, signed_tickets(issuer, "O", rounds)),
    }
    samples: dict[str, list[int]] = {"local": [], "online": []}
    outcomes: dict[str, dict[str, int]] = {"local": {}, "online": {}}
    for start in range(0, rounds, BATCH):
        for side, (gate, payloads) in sides.items():
            await time_scans(gate, payloads[start : start + BATCH], samples[side], outcomes[side])
    allow = Outcome.ALLOW.value
    if outcomes["local"].get(allow) != rounds or outcomes["online"].get(allow) != rounds:
        raise GateError(f"benchmark expected {rounds} admissions on each side, got {outcomes}")
    local_ms, online_ms = _ms(samples["local"]), _ms(samples["online"])
    return {
        "local": local_ms,
        "online_first": online_ms,
        "ratio_p50": round(online_ms["p50_ms"] / local_ms["p50_ms"], 2) if local_ms["p50_ms"] else None,
        "ratio_p99": round(online_ms["p99_ms"] / local_ms["p99_ms"], 2) if local_ms["p99_ms"] else None,
        "timeout_ms": BREAKER.timeout * 1000,
    }


async def _hung(
    remote: Gate, online: OnlineDecider, issuer: SecretKey, central: subprocess.Popen[str]
) -> dict[str, Any]:
    """Scans at the online-first gate while the central hangs, then the wait until it is asked again."""
    # The central hangs: its process stops answering, its socket still accepts.
    central.send_signal(signal.SIGSTOP)
    hung: list[int] = []
    hung_outcomes: dict[str, int] = {}
    await time_scans(remote, signed_tickets(issuer, "H", 50), hung, hung_outcomes)
    opened = online.last_switch
    central.send_signal(signal.SIGCONT)
    waited = time.perf_counter()
    while online.route != "online" and time.perf_counter() - waited < 30:
        await asyncio.sleep(0.05)
    closed = online.last_switch
    return {
        "scans": len(hung),
        "outcomes": hung_outcomes,
        "first_scans_ms": [round(ns / 1e6, 1) for ns in hung[: BREAKER.failures + 1]],
        "after_switch": _ms(hung[BREAKER.failures :]),
        "max_ms": round(max(hung) / 1e6, 1),
        "switched_offline_after_ms": None if opened is None else round(opened.took * 1000),
        "back_online": online.route == "online",
        "back_online_after_ms": None
        if closed is None or closed.to != "online"
        else round(closed.took * 1000),
        "switches": dict(online.switches),
    }


def _ms(samples_ns: list[int]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(samples_ns, 0.50) / 1e6, 2),
        "p99_ms": round(percentile(samples_ns, 0.99) / 1e6, 2),
        "max_ms": round(max(samples_ns) / 1e6, 2),
    }


def _print_table(r: dict[str, Any]) -> None:
    d, dec, h = r["drain"], r["decision"], r["hang"]
    print(f"# gatectl bench upstream --records {r['records']} --rounds {r['rounds']}")
    print(
        f"# {r['machine']}, Python {r['python']}, {r['cpus']} CPUs; "
        "gate-central in its own process on 127.0.0.1"
    )
    verdict = "within" if d["seconds"] <= d["budget_s"] else "OVER"
    print(
        f"drain      {d['sent']} records in {d['seconds']} s ({d['records_per_second']}/s, "
        f"{d['batches']} batches): "
        f"{verdict} the {d['budget_s']:g} s budget"
    )
    once = "yes" if d["exactly_once"] else "NO"
    print(
        f"           exactly once: {once} (central holds {d['central_checkins']}, a second drain sent "
        f"{d['second_drain_sent']}, a batch sent again: "
        f"{d['replayed_duplicates']}/{d['replayed_batch']} duplicate)"
    )
    loc, onl = dec["local"], dec["online_first"]
    print(f"decision   local         p50 {loc['p50_ms']} ms  p99 {loc['p99_ms']} ms  max {loc['max_ms']} ms")
    print(
        f"           online-first  p50 {onl['p50_ms']} ms  p99 {onl['p99_ms']} ms  max {onl['max_ms']} ms  "
        f"(x{dec['ratio_p50']} / x{dec['ratio_p99']} of local; timeout {dec['timeout_ms']:g} ms)"
    )
    after = h["after_switch"]
    print(
        f"hung       first scans {h['first_scans_ms']} ms, "
        f"switched offline after {h['switched_offline_after_ms']} ms; "
        f"then p50 {after['p50_ms']} ms p99 {after['p99_ms']} ms; max {h['max_ms']} ms"
    )
    back = (
        f"after {h['back_online_after_ms']} ms offline" if h["back_online"] else "NOT back online within 30 s"
    )
    print(f"           the central continued: back online {back}; switches {h['switches']}")
