"""A venue on one machine: files for a central and N gates, and their real processes.

The files are what a venue provisions (keys, event.toml with the gate roster, tickets.csv,
central.toml, one gate.toml per gate), written with the package's own key writer and
signer. Each process runs in its machine's network namespace
(``gate_daemon.drill.network``) as a child in a session of its own, its output in files
beside its config. ``Venue`` is a context manager: leaving it, however (an exception, a
signal turned into one), stops every process and removes every namespace, veth and the
bridge; a drill killed outright leaves names that the next drill's ``network.sweep``
removes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

from gate_daemon.core.times import format_instant
from gate_daemon.core.tokens import TicketClaims, encode_signed, event_tag
from gate_daemon.drill import network
from gate_daemon.drill.crowd import OTHER_ZONE, ZONE, Plan, Ticket
from gate_daemon.drill.network import CENTRAL_PORT, LAN_PORT, Machine
from gate_daemon.errors import GateError
from gate_daemon.files import write_atomic
from gate_daemon.provision.keyfiles import write_keypair

EVENT_ID = "drill"
LOCK = Path("/run/gate-drill.lock")
#: The gates' control sockets: a unix socket's path must be short, wherever --out is.
SOCKETS = Path("/run/gate-drill")
BIN = Path(sys.executable).parent
#: How long a process may take to come up (a 30-gate venue starts on 2 busy cores).
START_TIMEOUT = 120.0
#: Where Debian installs libfaketime (under /usr/lib), for any architecture.
_FAKETIME = "*/faketime/libfaketime.so.1"
#: Only the wall clock lies (a Pi's wrong RTC). ``FAKETIME_FORCE_MONOTONIC_FIX=0`` stops
#: libfaketime 0.9.10 from "fixing" waits on monotonic condition variables: with the fix on,
#: the GIL's timed wait expires at once, every thread waiting for the GIL spins and forces a
#: switch, and a gate with its SQLite thread runs ~30 times slower (docs/DRILL.md).
FAKETIME_FLAGS = {"FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_FORCE_MONOTONIC_FIX": "0"}


class DrillError(GateError):
    """The venue could not be built or run; the message says which part and why."""


class Process:
    """One program running on a machine of the venue."""

    def __init__(
        self, machine: Machine, argv: list[str], folder: Path, env: dict[str, str] | None = None
    ) -> None:
        self.machine = machine
        self.argv = argv
        self.folder = folder
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        #: CPU seconds of the processes that ended (``cpu_s`` adds the running one's).
        self._cpu_ended = 0.0
        self._files: list[IO[bytes]] = []

    def start(self) -> None:
        """Start it (again)."""
        self.starts += 1
        out = (self.folder / f"{self.machine.name}.out").open("ab")
        err = (self.folder / f"{self.machine.name}.err").open("ab")
        self._files += [out, err]
        env = {
            k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "LISTEN_FDS")
        }
        env.update(self.env)
        self.proc = subprocess.Popen(
            [*self.machine.exec_prefix(), *self.argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            cwd=self.folder,
            start_new_session=True,
        )

    @property
    def alive(self) -> bool:
        """Whether it runs (a stopped process runs)."""
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        """Send it a signal, if it runs."""
        if self.alive:
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)

    @property
    def cpu_s(self) -> float:
        """CPU seconds (user and system) of every run so far."""
        return self._cpu_ended + self._cpu_running()

    def _cpu_running(self) -> float:
        if not self.alive:
            return 0.0
        assert self.proc is not None
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        """SIGKILL (a power cut) and reap it."""
        self._cpu_ended += self._cpu_running()
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM (resumed first if stopped), SIGKILL if it does not end in time."""
        self._cpu_ended += self._cpu_running()
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=30)
        for handle in self._files:
            handle.close()
        self._files.clear()

    def errors(self) -> str:
        """The end of what it wrote on stderr."""
        path = self.folder / f"{self.machine.name}.err"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


class Venue:
    """One central and ``size`` gates in namespaces on a bridge; files under ``root``."""

    def __init__(self, root: Path, size: int, plan: Plan, *, skewed: dict[int, str] | None = None) -> None:
        if not 1 <= size <= network.MAX_GATES:
            raise DrillError(f"--gates must be 1..{network.MAX_GATES}, not {size}")
        self.root = root
        self.size = size
        self.plan = plan
        self.skewed = skewed or {}
        self.central_machine = Machine("central", network.CENTRAL_ADDRESS)
        self.machines = {n: Machine(f"g{n}", network.gate_address(n)) for n in range(1, size + 1)}
        self.gates: dict[int, Process] = {}
        self.central: Process | None = None
        self.payloads: dict[str, str] = {}
        self._canceled: set[str] = set()
        self._lock: IO[bytes] | None = None

    # ------------------------------------------------------------- names and places

    @staticmethod
    def gate_id(number: int) -> str:
        """Gate ``number``'s id in the roster."""
        return f"gate-{number:02d}"

    def gate_dir(self, number: int) -> Path:
        """Gate ``number``'s folder (config, state, manifest drop, output)."""
        return self.root / "gates" / self.gate_id(number)

    def ledger(self, number: int) -> Path:
        """Gate ``number``'s ledger file."""
        return self.gate_dir(number) / "state" / "ledger.sqlite"

    def socket(self, number: int) -> Path:
        """Gate ``number``'s control socket."""
        return SOCKETS / f"{self.gate_id(number)}.sock"

    @property
    def central_db(self) -> Path:
        """The central's database."""
        return self.root / "central" / "state" / "central.sqlite"

    @property
    def central_url(self) -> str:
        """Where gates find the central."""
        return f"http://{network.CENTRAL_ADDRESS}:{CENTRAL_PORT}"

    # ------------------------------------------------------------- lifecycle

    def __enter__(self) -> Venue:
        network.check_host()
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        self._lock = LOCK.open("wb")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise DrillError(f"another drill runs on this machine (it holds {LOCK})") from None
        try:
            network.sweep()
            shutil.rmtree(SOCKETS, ignore_errors=True)
            SOCKETS.mkdir(mode=0o700)
            self._write_files()
            network.build_lan()
            network.plug(self.central_machine)
            for machine in self.machines.values():
                network.plug(machine)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop every process, remove every namespace, veth and the bridge, release the lock."""
        for proc in [*self.gates.values(), *([self.central] if self.central else [])]:
            with contextlib.suppress(Exception):
                proc.stop()
        network.sweep()
        shutil.rmtree(SOCKETS, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def start(self) -> None:
        """Start the central, then every gate; wait until each serves with the manifest."""
        folder = self.root / "central"
        self.central = Process(
            self.central_machine,
            [str(BIN / "gate-central"), "--config", str(folder / "central.toml")],
            folder,
        )
        self.central.start()
        self._wait(lambda: self.central_db.exists() and _serving(folder), "the central", self.central)
        for number in self.machines:
            self.gates[number] = Process(
                self.machines[number],
                [str(BIN / "gate-daemon"), "--config", str(self.gate_dir(number) / "gate.toml")],
                self.gate_dir(number),
                self._clock_env(number),
            )
            self.gates[number].start()
        for number, proc in self.gates.items():
            self._wait(self.socket(number).exists, f"gate {number}", proc)

    def restart_gate(self, number: int) -> None:
        """Start a gate that was killed."""
        self.gates[number].start()

    def _wait(self, ready: Callable[[], bool], what: str, proc: Process) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            if not proc.alive:
                raise DrillError(f"{what} exited while starting:\n{proc.errors()}")
            if time.monotonic() > deadline:
                raise DrillError(f"{what} did not start in {START_TIMEOUT:.0f} s:\n{proc.errors()}")
            time.sleep(0.1)

    def _clock_env(self, number: int) -> dict[str, str]:
        offset = self.skewed.get(number)
        if offset is None:
            return {}
        found = sorted(Path("/usr/lib").glob(_FAKETIME))
        if not found:
            raise DrillError(f"clock-skew needs libfaketime ({_FAKETIME}): apt install libfaketime")
        return {"LD_PRELOAD": str(found[0]), "FAKETIME": offset, **FAKETIME_FLAGS}

    # ------------------------------------------------------------- files

    def cancel(self, ticket_ids: tuple[str, ...]) -> None:
        """Publish a new manifest: the central rebuilds it from tickets.csv with these canceled."""
        canceled = set(ticket_ids) | self._canceled
        self._canceled = canceled
        self._write_tickets(canceled)

    def _write_tickets(self, canceled: set[str]) -> None:
        lines = ["ticket_id,order_id,seat,status,session,zone,entries,code"]
        lines += [t.row("canceled" if t.ticket_id in canceled else None) for t in self.plan.tickets]
        write_atomic(self.root / "central" / "tickets.csv", ("\n".join(lines) + "\n").encode())

    def _write_files(self) -> None:
        central = self.root / "central"
        keys = self.root / "keys"
        for folder in (central, keys):
            folder.mkdir(parents=True, exist_ok=True)
        write_keypair(central / "signer", overwrite=True)
        _, _, issuer = write_keypair(central / "issuer", overwrite=True)
        for number in self.machines:
            write_keypair(keys / self.gate_id(number), overwrite=True)
        now = time.time()
        (central / "event.toml").write_text(self._event(now))
        self._write_tickets(set())
        (central / "central.toml").write_text(
            "[central]\n"
            'id = "drill-central"\n'
            f'listen = "{network.CENTRAL_ADDRESS}:{CENTRAL_PORT}"\n'
            'state_dir = "state"\n'
            'event = "event.toml"\n'
            'tickets = "tickets.csv"\n'
            'key = "signer.key"\n'
            "poll_ms = 500\n"
            "rate = 10000\n"
        )
        tag = event_tag(EVENT_ID)
        for ticket in self.plan.tickets:
            self.payloads[ticket.ticket_id] = _payload(ticket, tag, issuer)
        for number in self.machines:
            self._write_gate(number)

    def _event(self, now: float) -> str:
        roster = "".join(
            f'\n[[gates]]\nid = "{self.gate_id(n)}"\npub = "../keys/{self.gate_id(n)}.pub"\n'
            for n in self.machines
        )
        return (
            'ticket_keys = ["issuer.pub"]\n\n'
            f'[event]\nid = "{EVENT_ID}"\nname = "Venue drill"\n\n'
            f'[[sessions]]\nid = "now"\nname = "Tonight"\nstarts_at = {format_instant(now - 1800)}\n'
            f"ends_at = {format_instant(now + 12 * 3600)}\nentry_opens_minutes = 60\n\n"
            f'[[zones]]\nid = "{ZONE}"\nname = "Floor"\n\n[[zones]]\nid = "{OTHER_ZONE}"\nname = "Balcony"\n'
            + roster
        )

    def _write_gate(self, number: int) -> None:
        folder = self.gate_dir(number)
        (folder / "state").mkdir(parents=True, exist_ok=True)
        me = self.machines[number]
        peers = ", ".join(f'"{m.address}:{LAN_PORT}"' for n, m in self.machines.items() if n != number)
        # Loops a little slower than a gate's defaults where a venue of 30 on two cores would
        # spend its time polling; the breaker and the scans keep the defaults.
        (folder / "gate.toml").write_text(
            f'[gate]\nid = "{self.gate_id(number)}"\nevent = "{EVENT_ID}"\nzone = "{ZONE}"\n'
            f'state_dir = "{folder / "state"}"\nmode = "entry"\ndecision = "online-first"\n'
            f'[manifest]\npath = "{folder / "drop.gdm"}"\n'
            f'trusted_keys = ["{self.root / "central" / "signer.pub"}"]\npoll_ms = 1000\n'
            '[input]\nkind = "none"\n[signals]\nkind = "none"\n'
            f'[control]\nsocket = "{self.socket(number)}"\n'
            f'[lan]\nlisten = "{me.address}:{LAN_PORT}"\nrate = 10000\n'
            f'key = "{self.root / "keys" / self.gate_id(number)}.key"\n'
            f"peers = [{peers}]\npull_interval_ms = 2000\ntimeout_ms = 1000\n"
            f'[upstream]\nurl = "{self.central_url}"\ntimeout_ms = 2000\npush_interval_ms = 500\n'
            "pull_interval_ms = 3000\nmanifest_interval_s = 5\nheartbeat_interval_s = 5\n"
            "probe_interval_ms = 2000\n"
        )


def _payload(ticket: Ticket, tag: bytes, issuer: object) -> str:
    if ticket.format == "reference":
        return ticket.code
    if ticket.format == "legacy":
        return f"{ticket.order_id}-1"
    entries = 0 if ticket.entries == "reentry" else int(ticket.entries)
    claims = TicketClaims(
        ticket_id=ticket.ticket_id, event_tag=tag, entries=entries, session="now", zone=ticket.zone
    )
    return encode_signed(claims, issuer)  # type: ignore[arg-type]


def _serving(folder: Path) -> bool:
    out = folder / "central.out"
    return out.exists() and "serving http://" in out.read_text(errors="replace")
