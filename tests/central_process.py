"""A real ``gate-central`` process for tests, what its database holds, and gates that sync with it.

``CentralProcess`` runs ``gate-central --config FILE`` as a child (its config says
``listen = "127.0.0.1:0"``: the port is read from the line it prints once it serves), with
stdout and stderr captured to files. A test can pause it (SIGSTOP: a central that accepts
connections and never answers, as a hung or swapping server does), resume it, or kill it.
What it holds is read from its SQLite file read-only, as an auditor would.

Gates here are real ``gate-daemon`` processes whose ``[upstream] url`` names the central
(or a ``tests.link_proxy.Link`` in front of it), with short loop intervals so a test
converges in seconds; every wait polls a condition with a generous deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import time
import urllib.parse
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from gate_daemon.central.config import load_central_config
from gate_daemon.store.central.checkin_book import read_report
from tests.central_fixtures import CentralWorld, make_central_world
from tests.gate_process import BIN, SYSTEMD_VARIABLES, TIMEOUT, GateProcess, redemptions, wait_until
from tests.live import tickets_csv, write_gate_config

GATE_CENTRAL = BIN / "gate-central"
_SERVING = re.compile(r"serving http://127\.0\.0\.1:(\d+) ")
#: Single-entry tickets in the central's tickets.csv (``tests.live.payload(n)`` scans ticket n).
TICKETS = 400
#: Long enough for a loaded machine; every wait ends as soon as its condition holds.
CONVERGE = 30.0
#: The gates' ``[upstream]`` loops, quick: a test converges in seconds.
SYNC = {
    "push_interval_ms": 100,
    "pull_interval_ms": 200,
    "manifest_interval_s": 5,
    "heartbeat_interval_s": 1,
    "timeout_ms": 1000,
}


class CentralProcess:
    """One ``gate-central --config`` child process."""

    def __init__(self, config: Path, workdir: Path, *, name: str = "central") -> None:
        self.config = config
        self.name = name
        self.stdout_path = workdir / f"{name}.stdout"
        self.stderr_path = workdir / f"{name}.stderr"
        self.database = load_central_config(config).database
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.paused = False
        self._files: list[IO[bytes]] = []

    @property
    def url(self) -> str:
        """Where it serves."""
        assert self.port, "start() first"
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = TIMEOUT) -> CentralProcess:
        """Start it and wait until it serves (its manifest built)."""
        assert self.proc is None, "already started"
        out, err = self.stdout_path.open("ab"), self.stderr_path.open("ab")
        self._files += [out, err]
        env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARIABLES}
        self.proc = subprocess.Popen(
            [str(GATE_CENTRAL), "--config", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not (found := _SERVING.search(_read(self.stdout_path))):
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"gate-central exited with {self.proc.returncode}:\n{self.stderr()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"gate-central did not serve in {timeout} s:\n{self.stderr()[-3000:]}")
            time.sleep(0.02)
        self.port = int(found.group(1))
        return self

    def pause(self) -> None:
        """SIGSTOP: connections are still accepted by the kernel; nothing is answered."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT: it goes on with whatever waited."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def stderr(self) -> str:
        """What it logged so far."""
        return _read(self.stderr_path)

    # ------------------------------------------------------------- what it holds

    def checkins(self) -> dict[str, tuple[Any, ...]]:
        """Every check-in, by uuid: (ticket, kind, origin, epoch, seq, signed, mode, cursor)."""
        uri = f"file:{urllib.parse.quote(str(self.database))}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as conn:
            rows = conn.execute(
                "SELECT uuid, ticket_id, kind, origin, epoch, seq, sig IS NOT NULL, mode, cursor"
                " FROM checkins"
            ).fetchall()
        return {str(row[0]): (*row[1:6], bool(row[6]), *row[7:]) for row in rows}

    def heartbeats(self) -> dict[str, tuple[int, dict[str, int], dict[str, Any]]]:
        """What each gate said last, by gate id: (beats, counters, status)."""
        uri = f"file:{urllib.parse.quote(str(self.database))}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as conn:
            rows = conn.execute("SELECT gate_id, beats, counters, status FROM gates").fetchall()
        return {str(g): (int(b), json.loads(c), json.loads(s)) for g, b, c, s in rows}

    def report(self) -> dict[str, Any]:
        """``gate-central report --json``, read the way it reads it."""
        return read_report(self.database)

    # ------------------------------------------------------------- teardown

    def close(self) -> None:
        """Stop it (resumed first if paused), killing it if it does not stop in time."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)
                self.proc.terminate()
            try:
                self.proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=TIMEOUT)
        for handle in self._files:
            handle.close()
        self._files.clear()

    def __enter__(self) -> CentralProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def numbered_central_world(root: Path) -> CentralWorld:
    """The central's files (roster north-1 and south-1) with ``TICKETS`` numbered tickets."""
    world = make_central_world(root)
    world.tickets_path.write_text(tickets_csv(TICKETS))
    return world


# ------------------------------------------------------------------ gates that sync with it


def upstream_config(
    world: CentralWorld,
    folder: Path,
    url: str,
    *,
    gate_id: str = "north-1",
    decision: str | None = None,
    manifest: bytes | None = None,
    **upstream: int | str,
) -> Path:
    """A gate config in ``folder`` syncing with ``url``; without ``manifest`` it has none of its own."""
    folder.mkdir(parents=True, exist_ok=True)
    if manifest is not None:
        (folder / "drop.gdm").write_bytes(manifest)
    settings = {"url": url, **SYNC, **upstream}
    lines = [
        "[lan]",
        f'key = "{world.live.gate_keys[gate_id]}"',
        "[upstream]",
        *(f"{key} = {json.dumps(value)}" for key, value in settings.items()),
    ]
    return write_gate_config(
        folder / "gate.toml", world.live, gate_id=gate_id, decision=decision, extra="\n".join(lines) + "\n"
    )


def upstream_status(gate: GateProcess) -> dict[str, Any]:
    """The ``upstream`` part of the gate's status."""
    status: dict[str, Any] = gate.status()["upstream"]
    return status


def loop_errors(gate: GateProcess) -> dict[str, str | None]:
    """Each upstream loop's last error (None once it succeeded since)."""
    return {name: state["error"] for name, state in upstream_status(gate)["loops"].items()}


def manifest_version(gate: GateProcess) -> int | None:
    """The version of the gate's active manifest."""
    version: int | None = gate.status()["manifest"].get("version")
    return version


def own_records(gate: GateProcess, gate_id: str) -> dict[str, tuple[Any, ...]]:
    """The redemptions the gate made itself, by uuid: (ticket, kind, origin, epoch, seq)."""
    return {uuid: row[:5] for uuid, row in redemptions(gate.ledger_path).items() if row[2] == gate_id}


def wait_drained(
    gate: GateProcess, central: CentralProcess, uuids: set[str], what: str = "the drain"
) -> None:
    """Wait until the gate has nothing left to send and the central holds ``uuids``, all signed."""

    def done() -> bool:
        held = central.checkins()
        return (
            upstream_status(gate)["pending"] == 0
            and uuids <= held.keys()
            and all(held[uuid][5] for uuid in uuids)
        )

    try:
        wait_until(done, CONVERGE, what)
    except AssertionError:
        missing = sorted(uuids - central.checkins().keys())
        raise AssertionError(
            f"{what}: pending {upstream_status(gate)['pending']}, loops {loop_errors(gate)}, "
            f"missing at the central {missing[:10]} ({len(missing)})"
        ) from None


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
