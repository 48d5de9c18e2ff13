"""The processes of ``gatectl bench peers --process``: files written, daemons started and stopped.

One measured gate (``gate-1``), feeder gates holding a backlog each, and the reference
central, every one a real process started from its config file in the work directory:
``gate-daemon`` for the gates, ``gate-central`` for the central. The bench talks to the
measured gate only through its control socket and reads the files read-only, as an
auditor would; it never imports a running part.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from gate_daemon.bench import fixtures
from gate_daemon.bench.upstream import write_backlog
from gate_daemon.core.keys import SecretKey
from gate_daemon.errors import GateError
from gate_daemon.provision.build import build_manifest
from gate_daemon.provision.event import load_event
from gate_daemon.provision.keyfiles import write_keypair
from gate_daemon.provision.tickets import load_tickets
from gate_daemon.store.ledger import Ledger

#: The measured gate's id.
MEASURED = "gate-1"
#: How long a process may take to start answering (a loaded 2-core machine is slow).
START_LIMIT = 60.0
#: Tickets in the manifest; every timed scan is of a signed ticket sold after it.
TICKETS = 1000


@dataclass
class Daemon:
    """One child process (a gate or the central) and its output files."""

    name: str
    argv: list[str]
    work: Path
    proc: subprocess.Popen[bytes] | None = None
    files: list[IO[bytes]] = field(default_factory=list)

    def start(self) -> None:
        """Start it, stdout and stderr into ``NAME.stdout`` / ``NAME.stderr``."""
        out, err = (
            (self.work / f"{self.name}.stdout").open("wb"),
            (self.work / f"{self.name}.stderr").open("wb"),
        )
        self.files += [out, err]
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        self.proc = subprocess.Popen(
            self.argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=self.work,
            start_new_session=True,
        )  # fmt: skip

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` (SIGSTOP: a partition; SIGCONT: it heals) unless it has ended."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def alive(self) -> None:
        """``GateError`` with the end of its stderr if it has ended."""
        if self.proc is not None and self.proc.poll() is not None:
            tail = (self.work / f"{self.name}.stderr").read_text(errors="replace")[-600:]
            raise GateError(f"bench process {self.name} ended ({self.proc.returncode}): {tail.strip()}")

    def wait_line(self, marker: str, limit: float = START_LIMIT) -> str:
        """The rest of the first stdout line holding ``marker``; ``GateError`` if none in ``limit`` s."""
        deadline = time.monotonic() + limit
        path = self.work / f"{self.name}.stdout"
        while time.monotonic() < deadline:
            self.alive()
            for line in path.read_text(errors="replace").splitlines():
                if marker in line:
                    return line.split(marker, 1)[1]
            time.sleep(0.05)
        raise GateError(f"bench process {self.name} did not start within {limit:g} s")

    def stop(self) -> None:
        """Continue, terminate, wait (kill after 20 s), close its files."""
        if self.proc is not None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in self.files:
            f.close()
        self.files = []


@dataclass
class SoloVenue:
    """What the bench wrote and started: the measured gate, its feeders, the central."""

    work: Path
    issuer: SecretKey
    feeders: list[str]
    records: int
    gate: Daemon
    central: Daemon
    feeder_daemons: list[Daemon]
    central_url: str = ""
    #: The CPUs of the measured gate and the bench, and those of the other processes.
    cpus: tuple[set[int], set[int]] = (set(), set())

    @property
    def socket(self) -> Path:
        """The measured gate's control socket."""
        return self.work / MEASURED / "control.sock"

    @property
    def ledger(self) -> Path:
        """The measured gate's ledger file."""
        return self.work / MEASURED / "state" / "ledger.sqlite"

    def daemons(self) -> list[Daemon]:
        """Every process, the measured gate first."""
        return [self.gate, *self.feeder_daemons, self.central]

    def stop(self) -> None:
        """End every process the bench started."""
        for daemon in self.daemons():
            daemon.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _gate_argv(config: Path) -> list[str]:
    return [sys.executable, "-c", "from gate_daemon.cli.daemon import main; raise SystemExit(main())",
            "--config", str(config)]  # fmt: skip


def prepare(work: Path, feeders: int, records: int) -> SoloVenue:
    """Write the event, keys, manifest, configs and the feeders' backlogs (``records`` in all)."""
    now = int(time.time())
    signer_path, signer_pub, signer = write_keypair(work / "signer", overwrite=True)
    issuer = SecretKey.generate()
    names = [MEASURED, *(f"gate-{n + 2}" for n in range(feeders))]
    keys = {name: write_keypair(work / name, overwrite=True) for name in names}
    fixtures.write_event(work / "event.toml", issuer, now)
    with (work / "event.toml").open("a") as roster:
        for name, (_, _, key) in keys.items():
            roster.write(f'\n[[gates]]\nid = "{name}"\npub = "{key.public.text()}"\n')
    fixtures.write_tickets(work / "tickets.csv", TICKETS)
    event = load_event(work / "event.toml")
    manifest = build_manifest(
        event, load_tickets(work / "tickets.csv", event), signer, version=1, issued_at=now
    )
    ports = {name: _free_port() for name in names}
    central_dir = work / "central"
    shutil.rmtree(central_dir, ignore_errors=True)  # nothing of an earlier run in --workdir
    central_dir.mkdir()
    (work / "central.toml").write_text(
        f'[central]\nid = "bench-central"\nlisten = "127.0.0.1:0"\nstate_dir = "{central_dir}"\n'
        f'event = "event.toml"\ntickets = "tickets.csv"\nkey = "{signer_path}"\nrate = 1000\n'
    )
    central = Daemon("central", [sys.executable, "-c",
                     "from gate_daemon.central.cli import main; raise SystemExit(main())",
                     "--config", str(work / "central.toml")], work)  # fmt: skip
    daemons: dict[str, Daemon] = {}
    for n, name in enumerate(names):
        home = work / name
        shutil.rmtree(home, ignore_errors=True)
        (home / "state").mkdir(parents=True)
        (home / "drop.gdm").write_bytes(manifest)
        peers = [f"127.0.0.1:{ports[f]}" for f in names[1:]] if name == MEASURED else []
        _write_gate_config(home, name, ports[name], keys[name][0], signer_pub, peers)
        if n:
            _write_feeder_backlog(
                home / "state" / "ledger.sqlite", name, records // feeders + (n <= records % feeders)
            )
        daemons[name] = Daemon(name, _gate_argv(home / "gate.toml"), work)
    return SoloVenue(work, issuer, names[1:], records, daemons[MEASURED], central,
                     [daemons[f] for f in names[1:]])  # fmt: skip


def _write_gate_config(
    home: Path, name: str, port: int, key: Path, signer_pub: Path, peers: list[str]
) -> None:
    """A gate's config: control socket, LAN and key; the measured gate's lists peers too."""
    (home / "gate.toml").write_text(
        f'[gate]\nid = "{name}"\nevent = "{fixtures.EVENT_ID}"\nstate_dir = "{home / "state"}"\n'
        'mode = "entry"\n'
        f'[manifest]\npath = "{home / "drop.gdm"}"\ntrusted_keys = ["{signer_pub}"]\n'
        '[input]\nkind = "none"\n[signals]\nkind = "none"\n'
        f'[control]\nsocket = "{home / "control.sock"}"\n'
        f'[lan]\nlisten = "127.0.0.1:{port}"\nkey = "{key}"\nrate = 1000\npeers = {json.dumps(peers)}\n'
    )


def _write_feeder_backlog(path: Path, name: str, count: int) -> None:
    """``count`` of the feeder's own records in its file, as its scans would have left them."""

    async def claim() -> str:
        ledger = await Ledger.open(path, name)
        try:
            return ledger.epoch
        finally:
            await ledger.close()

    write_backlog(path, name, asyncio.run(claim()), count, prefix=f"F{name}")


def cpu_split() -> tuple[set[int], set[int]]:
    """The CPUs of the measured gate (and the bench, which waits while the gate works), and the others'.

    With one CPU, all share it.
    """
    cpus = sorted(os.sched_getaffinity(0))
    return ({cpus[0]}, set(cpus[1:])) if len(cpus) > 1 else (set(cpus), set(cpus))


def start(venue: SoloVenue) -> None:
    """Start the central and the feeders, stop them (SIGSTOP: the partition), start the measured gate.

    The measured gate's ``[upstream] url`` names the central, whose port is known only once
    it serves, so its config is completed here. A child inherits the bench's CPUs at its
    start: the others' first, then the measured gate's, which the bench keeps.
    """
    mine, others = venue.cpus = cpu_split()
    os.sched_setaffinity(0, others)
    venue.central.start()
    venue.central_url = venue.central.wait_line("serving ").split()[0]
    with (venue.work / MEASURED / "gate.toml").open("a") as config:
        config.write(
            f'[upstream]\nurl = "{venue.central_url}"\ntimeout_ms = 2000\nmanifest_interval_s = 3600\n'
            "manifest_timeout_s = 5\n"
        )
    for feeder in venue.feeder_daemons:
        feeder.start()
    for feeder in venue.feeder_daemons:
        _wait_answering(feeder, venue.work / feeder.name / "control.sock")
    for daemon in (*venue.feeder_daemons, venue.central):
        daemon.signal(signal.SIGSTOP)
    os.sched_setaffinity(0, mine)
    venue.gate.start()
    _wait_answering(venue.gate, venue.socket)


def _wait_answering(daemon: Daemon, path: Path) -> None:
    """Wait until the gate's control socket answers a status request."""
    deadline = time.monotonic() + START_LIMIT
    while time.monotonic() < deadline:
        daemon.alive()
        with contextlib.suppress(OSError, ValueError), socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(path))
            sock.sendall(b'{"op":"status"}\n')
            if json.loads(sock.makefile("rb").readline()).get("ok"):
                return
        time.sleep(0.05)
    raise GateError(f"bench gate {daemon.name} did not answer on {path} within {START_LIMIT:g} s")
