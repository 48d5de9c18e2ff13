"""A real ``gate-daemon`` process for tests, watched the way systemd watches it.

``GateProcess`` starts ``gate-daemon --config FILE`` as a child with its own
``$NOTIFY_SOCKET`` (a datagram socket the test binds in its own folder and drains on a
thread, so the daemon never blocks on a full queue), optionally ``$WATCHDOG_USEC`` and
``$JOURNAL_STREAM``, a stdin pipe the test can type into, and stdout/stderr captured to
files. Every wait has a timeout: a hung daemon fails its test instead of hanging the run.
``Launcher`` starts them and kills whatever is still running when the test ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from gate_daemon.config.load import load_config
from gate_daemon.daemon.control import ask
from gate_daemon.errors import GateError

BIN = Path(sys.executable).parent
GATE_DAEMON = BIN / "gate-daemon"
GATECTL = BIN / "gatectl"

#: What systemd (or a test runner started by it) may have set; a child never inherits these.
SYSTEMD_VARIABLES = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "JOURNAL_STREAM",
    "LISTEN_FDS",
    "LISTEN_PID",
    "INVOCATION_ID",
    "STATE_DIRECTORY",
    "RUNTIME_DIRECTORY",
    "CREDENTIALS_DIRECTORY",
)
#: Default seconds for any wait on the daemon. It bounds a failure only (every wait ends as soon as
#: its condition holds): a daemon starting on a loaded 2-CPU machine may take well over 15 s.
TIMEOUT = 30.0


class GateProcess:
    """One ``gate-daemon --config`` child process and what it says."""

    def __init__(
        self,
        config: Path,
        workdir: Path,
        *,
        name: str = "gate",
        watchdog_usec: int | None = None,
        journal: bool = False,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] | None = None,
    ) -> None:
        self.config = config
        self.name = name
        self.workdir = workdir
        self.stdout_path = workdir / f"{name}.stdout"
        self.stderr_path = workdir / f"{name}.stderr"
        self.notify_path = workdir / f"{name}.notify"
        self.watchdog_usec = watchdog_usec
        self.journal = journal
        self.extra_env = env or {}
        self.args = args if args is not None else ("--config", str(config))
        self.proc: subprocess.Popen[bytes] | None = None
        self._notify: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._messages: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._closing = False
        self._files: list[IO[bytes]] = []

    # ------------------------------------------------------------- starting

    @property
    def socket_path(self) -> Path:
        """The control socket the config names."""
        return load_config(self.config).control.socket

    @property
    def ledger_path(self) -> Path:
        """The ledger file in the config's state directory."""
        return load_config(self.config).ledger_path

    def start(self) -> GateProcess:
        """Bind the notify socket and start the daemon (without waiting for it)."""
        assert self.proc is None, "already started"
        self.notify_path.unlink(missing_ok=True)
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(self.notify_path))
        self._notify.settimeout(0.05)
        self._reader = threading.Thread(target=self._drain, name=f"{self.name}-notify", daemon=True)
        self._reader.start()
        env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARIABLES}
        env["NOTIFY_SOCKET"] = str(self.notify_path)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        if self.watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(self.watchdog_usec)
        out = self.stdout_path.open("ab")
        err = self.stderr_path.open("ab")
        self._files += [out, err]
        if self.journal:
            st = os.fstat(err.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        env.update(self.extra_env)
        self.proc = subprocess.Popen(
            [str(GATE_DAEMON), *self.args],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=err,
            env=env,
            cwd=self.workdir,
            start_new_session=True,  # a Ctrl-C on the test run is not the daemon's SIGINT
        )
        return self

    def _drain(self) -> None:
        sock = self._notify
        assert sock is not None
        while not self._closing:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._cond:
                self._messages.append((time.monotonic(), data.decode("utf-8", "replace")))
                self._cond.notify_all()

    # ------------------------------------------------------------- notify messages

    @property
    def messages(self) -> list[str]:
        """Every notify datagram received so far, in order."""
        with self._cond:
            return [text for _, text in self._messages]

    def fields(self) -> list[str]:
        """Every ``KEY=value`` field of every datagram, in order."""
        return [field for message in self.messages for field in message.split("\n")]

    def timed_fields(self) -> list[tuple[float, str]]:
        """Fields with the monotonic time their datagram arrived."""
        with self._cond:
            return [(at, field) for at, text in self._messages for field in text.split("\n")]

    def wait_message(self, predicate: Callable[[str], bool], timeout: float = TIMEOUT) -> str:
        """The first datagram matching ``predicate``; fails if none comes in time or the daemon dies."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for _, text in self._messages:
                    if predicate(text):
                        return text
                if self.proc is not None and self.proc.poll() is not None:
                    # One last look: the datagram may have been sent just before it exited.
                    self._cond.wait(0.2)
                    for _, text in self._messages:
                        if predicate(text):
                            return text
                    raise AssertionError(self._died("a notify message"))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching notify message in {timeout} s; got {self._messages}")
                self._cond.wait(min(left, 0.1))

    def wait_field(self, field: str, timeout: float = TIMEOUT) -> str:
        """The first datagram carrying ``field`` (``READY=1``, ``STOPPING=1``...)."""
        return self.wait_message(lambda text: field in text.split("\n"), timeout)

    def wait_ready(self, timeout: float = TIMEOUT) -> str:
        """Wait for ``READY=1``; returns its datagram."""
        return self.wait_field("READY=1", timeout)

    # ------------------------------------------------------------- process control

    @property
    def pid(self) -> int:
        """The daemon's process id."""
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        """Whether the daemon is still running."""
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, signum: int) -> None:
        """Send a POSIX signal to the daemon."""
        assert self.proc is not None
        self.proc.send_signal(signum)

    def terminate(self) -> None:
        """SIGTERM, as ``systemctl stop`` does."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> int:
        """SIGKILL, then reap it; the exit status (always -9 unless it had already exited)."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(timeout=TIMEOUT)

    def wait(self, timeout: float = TIMEOUT) -> int:
        """Wait for the daemon to exit; ``subprocess.TimeoutExpired`` (a failure) if it does not."""
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = TIMEOUT) -> int:
        """SIGTERM and wait for the exit status."""
        self.terminate()
        return self.wait(timeout)

    def _died(self, waiting_for: str) -> str:
        assert self.proc is not None
        return (
            f"gate-daemon exited with {self.proc.returncode} while waiting for {waiting_for}; "
            f"stderr:\n{self.stderr()[-3000:]}"
        )

    # ------------------------------------------------------------- stdin and output

    def write(self, data: bytes) -> None:
        """Type ``data`` into the daemon's standard input."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        """End the daemon's standard input."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.close()

    def stdout(self) -> str:
        """Everything the daemon wrote on stdout so far."""
        return _read(self.stdout_path)

    def stderr(self) -> str:
        """Everything the daemon wrote on stderr so far."""
        return _read(self.stderr_path)

    def wait_output(
        self, pattern: str, *, stream: str = "stdout", count: int = 1, timeout: float = TIMEOUT
    ) -> list[str]:
        """Wait until ``count`` lines of ``stream`` match the regular expression ``pattern``."""
        regex = re.compile(pattern)
        read = self.stdout if stream == "stdout" else self.stderr
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for line in read().splitlines() if regex.search(line)]
            if len(lines) >= count:
                return lines
            if not self.alive:
                raise AssertionError(self._died(f"{count} x {pattern!r} on {stream}"))
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(lines)} of {count} lines matching {pattern!r} on {stream} in {timeout} s:\n"
                    f"{read()[-3000:]}"
                )
            time.sleep(0.02)

    # ------------------------------------------------------------- control socket

    def request(self, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """One control request through ``gate_daemon.daemon.control.ask`` (``GateError`` if refused)."""
        return ask(self.socket_path, request, timeout=timeout)

    def scan(self, payload: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Scan ``payload`` through the control socket; the decision as returned."""
        answer = self.request({"op": "scan", "payload": payload, **fields}, timeout)
        decision: dict[str, Any] = answer["decision"]
        return decision

    def status(self) -> dict[str, Any]:
        """The gate's full status."""
        status: dict[str, Any] = self.request({"op": "status"})["status"]
        return status

    def counters(self) -> dict[str, int]:
        """The gate's persisted counters."""
        counters: dict[str, int] = self.request({"op": "counters"})["counters"]
        return counters

    def raw(self, line: bytes, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Send raw bytes on a fresh connection, half-close, and parse every answer line."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.socket_path))
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(line)
                sock.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return [json.loads(part) for part in b"".join(chunks).splitlines() if part.strip()]

    def wait_socket(self, timeout: float = TIMEOUT) -> None:
        """Wait until the control socket answers a status request."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.status()
                return
            except GateError:
                if not self.alive:
                    raise AssertionError(self._died("the control socket")) from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    # ------------------------------------------------------------- teardown

    def close(self) -> None:
        """Kill the daemon if it still runs, and release the sockets and files."""
        if self.proc is not None:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=TIMEOUT)
            if self.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    self.proc.stdin.close()
        self._closing = True
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._notify is not None:
            self._notify.close()
        for handle in self._files:
            handle.close()
        self._files.clear()

    def __enter__(self) -> GateProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Launcher:
    """Starts gate processes for one test and kills all that are left at its end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[GateProcess] = []

    def __call__(
        self, config: Path, *, ready: bool = True, name: str | None = None, **options: Any
    ) -> GateProcess:
        """Start a daemon for ``config`` (named ``gate``, ``gate-2``... for its files); wait for READY."""
        name = name or ("gate" if not self.started else f"gate-{len(self.started) + 1}")
        gate = GateProcess(config, self.workdir, name=name, **options).start()
        self.started.append(gate)
        if ready:
            gate.wait_ready()
        return gate

    def close(self) -> None:
        """Kill every daemon still running."""
        for gate in self.started:
            gate.close()

    def __enter__(self) -> Launcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def launcher(workdir: Path) -> Iterator[Launcher]:
    """The body of a ``launch`` fixture: yields a ``Launcher`` and cleans up after it."""
    with Launcher(workdir) as launch:
        yield launch


def gatectl(
    *args: str | Path, timeout: float = 30.0, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``gatectl`` console script."""
    env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARIABLES and k != "GATE_SOCKET"}
    return subprocess.run(
        [str(GATECTL), *(str(a) for a in args)],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def gate_daemon(*args: str | Path, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run the real ``gate-daemon`` console script to completion (check-config, usage errors)."""
    env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARIABLES}
    return subprocess.run(
        [str(GATE_DAEMON), *(str(a) for a in args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` read from the ledger file (a separate connection, as an auditor would)."""
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        return list(conn.execute(sql, params).fetchall())


def redemptions(db: Path) -> dict[str, tuple[Any, ...]]:
    """Every redemption in a ledger file, by uuid: (ticket, kind, origin, epoch, seq, hlc), read-only."""
    uri = f"file:{urllib.parse.quote(str(db))}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as conn:
        rows = conn.execute(
            "SELECT uuid, ticket_id, kind, origin, epoch, seq, hlc FROM redemptions"
        ).fetchall()
    return {str(row[0]): tuple(row[1:]) for row in rows}


def free_port() -> int:
    """A port nothing listens on now (a server binds it a moment later, with SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def integrity(db: Path) -> str:
    """``PRAGMA integrity_check`` of the ledger file."""
    rows = query(db, "PRAGMA integrity_check")
    return "; ".join(str(row[0]) for row in rows)


def wait_until(check: Callable[[], bool], timeout: float = TIMEOUT, what: str = "a condition") -> None:
    """Poll ``check`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def drop_file(path: Path, data: bytes) -> None:
    """Put ``data`` at ``path`` the way a tech or a sync does: write a temp name, rename into place."""
    tmp = path.with_name(f".{path.name}.incoming")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
