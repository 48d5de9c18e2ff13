"""The control socket of a gate started in-process with app.start and served with app.serve."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import socket
import stat
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gate_daemon.config.load import load_config
from gate_daemon.daemon import app
from gate_daemon.daemon.control import MAX_REQUEST, ControlServer, ask
from gate_daemon.daemon.systemd import Notifier
from gate_daemon.errors import GateError
from tests.gate_fixtures import query
from tests.live import LiveWorld, make_live_world, write_gate_config

REF = "REF-LIVE-FLOOR-000001"  # L-0001: tonight, floor, one entry
ME = pwd.getpwuid(os.getuid()).pw_name


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path: unix socket paths are limited to about 100 bytes."""
    path = Path(tempfile.mkdtemp(prefix="gd-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class Served:
    running: app.RunningGate
    live: LiveWorld
    socket: Path
    stop: asyncio.Event
    task: asyncio.Task[int]

    async def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """``gatectl``'s way: a blocking client, here on a thread."""
        return await asyncio.to_thread(ask, self.socket, request)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return query(self.running.config.ledger_path, sql)


async def serve_gate(root: Path, sock: Path, **config: Any) -> Served:
    live = make_live_world(root / "event")
    drop_path = root / "drop.gdm"
    drop_path.write_bytes(live.manifest())
    path = write_gate_config(root / "gate.toml", live, socket=sock, signals="none", **config)
    running = await app.start(load_config(path, {}))
    stop = asyncio.Event()
    task = asyncio.create_task(app.serve(running, Notifier({}), stop))
    return Served(running, live, sock, stop, task)


@pytest.fixture
async def gate(tmp_path: Path, short_dir: Path) -> AsyncIterator[Served]:
    served = await serve_gate(tmp_path, short_dir / "control.sock")
    try:
        yield served
    finally:
        served.stop.set()
        assert await asyncio.wait_for(served.task, 15) == 0
    assert not served.socket.exists()  # removed on shutdown


class Conn:
    """A raw connection to the socket, for requests gatectl would never send."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, line: bytes) -> dict[str, Any]:
        self.writer.write(line)
        await self.writer.drain()
        return await self.answer()

    async def answer(self) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.reader.readline(), 10)
        assert raw.endswith(b"\n"), raw
        answer = json.loads(raw)
        assert isinstance(answer, dict)
        return answer

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def connect(path: Path) -> Conn:
    reader, writer = await asyncio.open_unix_connection(path)
    return Conn(reader, writer)


def error(answer: dict[str, Any]) -> str:
    assert answer["ok"] is False, answer
    assert isinstance(answer["message"], str) and answer["message"]
    return str(answer["error"])


# ------------------------------------------------------------------ what gatectl does


async def test_scans_through_the_socket_are_decided_and_recorded(gate: Served) -> None:
    first = await gate.ask({"op": "scan", "payload": REF})
    second = await gate.ask({"op": "scan", "payload": REF})
    assert first["ok"] is True
    assert first["decision"]["outcome"] == "allow"
    assert first["decision"]["ticket_id"] == "L-0001"
    assert first["decision"]["recorded"] is True
    uuid.UUID(first["decision"]["scan_id"])
    assert second["decision"]["outcome"] == "already_used"
    assert "at gate north-1" in second["decision"]["message"]
    rows = gate.rows("SELECT uuid, device, reason FROM scans ORDER BY hlc")
    assert rows == [
        (first["decision"]["scan_id"], f"control:{ME}", "ok"),
        (second["decision"]["scan_id"], f"control:{ME}", "already_used"),
    ]


async def test_the_operator_defaults_to_the_user_on_the_other_end(gate: Served) -> None:
    await gate.ask({"op": "scan", "payload": REF})
    await gate.ask({"op": "scan", "payload": gate.live.sign("L-7777"), "operator": "anna"})
    assert gate.rows("SELECT operator FROM scans ORDER BY hlc") == [(ME,), ("anna",)]
    assert gate.rows("SELECT operator FROM redemptions ORDER BY hlc") == [(ME,), ("anna",)]


async def test_a_scan_id_makes_a_retried_request_a_duplicate(gate: Served) -> None:
    scan_id = str(uuid.uuid4())
    first = await gate.ask({"op": "scan", "payload": REF, "scan_id": scan_id.upper()})
    retry = await gate.ask({"op": "scan", "payload": REF, "scan_id": scan_id})
    assert first["decision"]["scan_id"] == retry["decision"]["scan_id"] == scan_id
    assert retry["decision"]["duplicate"] is True
    assert retry["decision"]["outcome"] == first["decision"]["outcome"] == "allow"
    assert gate.rows("SELECT COUNT(*) FROM scans") == [(1,)]


async def test_exit_scans_through_the_socket(gate: Served) -> None:
    reentry = gate.live.sign("L-8000", entries=0)
    assert (await gate.ask({"op": "scan", "payload": reentry, "kind": "exit"}))["decision"]["reason"] == (
        "not_inside"
    )
    assert (await gate.ask({"op": "scan", "payload": reentry}))["decision"]["reason"] == "ok"
    assert (await gate.ask({"op": "scan", "payload": reentry, "kind": "exit"}))["decision"]["reason"] == "ok"
    assert gate.rows("SELECT kind FROM redemptions ORDER BY hlc") == [("entry",), ("exit",)]


async def test_status_names_the_gate_and_its_manifest(gate: Served) -> None:
    answer = await gate.ask({"op": "status"})
    status = answer["status"]
    assert answer["ok"] is True
    assert (status["gate"], status["event"], status["zone"], status["mode"]) == (
        "north-1",
        "live-2026",
        "floor",
        "entry",
    )
    assert status["manifest"]["active"] is True
    assert status["manifest"]["version"] == 1
    assert status["manifest"]["tickets"] == 10
    assert status["manifest"]["expired"] is False
    assert status["ledger"]["epoch"] == gate.running.ledger.epoch
    assert status["since_start"] == {"repeats": 0, "unrecorded": 0}


async def test_counters_reflect_the_scans(gate: Served) -> None:
    before = (await gate.ask({"op": "counters"}))["counters"]
    assert before == {"manifest_activations": 1}
    await gate.ask({"op": "scan", "payload": REF})
    await gate.ask({"op": "scan", "payload": REF})
    await gate.ask({"op": "scan", "payload": "no such ticket"})
    counters = (await gate.ask({"op": "counters"}))["counters"]
    assert counters["scans"] == 3
    assert counters["outcome:allow"] == 1
    assert counters["outcome:already_used"] == 1
    assert counters["reason:unknown_ticket"] == 1
    assert counters["kind:entry"] == 3
    status = (await gate.ask({"op": "status"}))["status"]
    assert status["counters"] == counters


# ------------------------------------------------------------------ what only a broken client sends


async def test_malformed_requests_get_named_errors_and_the_connection_keeps_working(gate: Served) -> None:
    conn = await connect(gate.socket)
    try:
        assert error(await conn.send(b"hello gate\n")) == "not_json"
        assert (await conn.send(b'{"op": "status"}\n'))["ok"] is True  # same connection, still served
        assert error(await conn.send(b"[1, 2, 3]\n")) == "not_json"
        assert error(await conn.send(b'"scan"\n')) == "not_json"
        assert error(await conn.send(b"\xff\xfe\xfd\n")) == "not_json"
        assert error(await conn.send(b"[" * 60_000 + b"\n")) == "not_json"  # nested too deep to parse
        assert error(await conn.send(b'{"op": ' + b"9" * 5000 + b"}\n")) == "not_json"  # past int's limit
        assert (await conn.send(b'{"op": "counters"}\n'))["ok"] is True
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("request_", "name", "words"),
    [
        ({"op": "reboot"}, "unknown_op", "op must be scan, status, counters, conflicts, search or confirm"),
        ({"payload": REF}, "unknown_op", "not None"),
        ({"op": "scan"}, "bad_request", "payload must be a string"),
        ({"op": "scan", "payload": 42}, "bad_request", "payload must be a string"),
        ({"op": "scan", "payload": ""}, "bad_request", "payload must be a string"),
        ({"op": "scan", "payload": "x" * 5000}, "bad_request", "payload must be a string"),
        (
            {"op": "scan", "payload": REF, "force": True},
            "bad_request",
            "force needs a supervisor's staff badge",
        ),
        ({"op": "scan", "payload": REF, "scan_id": "not-a-uuid"}, "bad_request", "scan_id must be a UUID"),
        ({"op": "scan", "payload": REF, "scan_id": 7}, "bad_request", "scan_id must be a UUID"),
        ({"op": "scan", "payload": REF, "kind": "sideways"}, "bad_request", 'kind must be "entry" or "exit"'),
        ({"op": "scan", "payload": REF, "kind": ["entry"]}, "bad_request", "kind must be"),
        ({"op": "scan", "payload": REF, "operator": ""}, "bad_request", "operator must be printable"),
        ({"op": "scan", "payload": REF, "operator": 5}, "bad_request", "operator must be printable"),
        ({"op": "scan", "payload": REF, "operator": "\ud800"}, "bad_request", "operator must be printable"),
        ({"op": "scan", "payload": REF, "operator": "a\nb"}, "bad_request", "operator must be printable"),
        ({"op": "scan", "payload": REF, "operator": "o" * 65}, "bad_request", "operator must be"),
    ],
)
async def test_bad_requests_are_refused_and_nothing_is_scanned(
    gate: Served, request_: dict[str, Any], name: str, words: str
) -> None:
    conn = await connect(gate.socket)
    try:
        answer = await conn.send(json.dumps(request_).encode() + b"\n")
        assert error(answer) == name
        assert words in answer["message"]
    finally:
        await conn.close()
    assert gate.rows("SELECT COUNT(*) FROM scans") == [(0,)]
    with pytest.raises(GateError, match=name):
        await gate.ask(request_)
    # The gate itself is unharmed: the ticket still enters.
    assert (await gate.ask({"op": "scan", "payload": REF}))["decision"]["outcome"] == "allow"


async def test_blank_lines_are_skipped(gate: Served) -> None:
    conn = await connect(gate.socket)
    try:
        answer = await conn.send(b"\n  \n\r\n" + b'{"op": "counters"}\n')
        assert answer["ok"] is True and "counters" in answer
    finally:
        await conn.close()


async def test_a_request_over_64_kib_is_too_large(gate: Served) -> None:
    conn = await connect(gate.socket)
    try:
        answer = await conn.send(b'{"op": "scan", "payload": "' + b"A" * MAX_REQUEST + b'"}\n')
        assert error(answer) == "too_large"
        assert await asyncio.wait_for(conn.reader.read(), 10) == b""  # then the connection is closed
    finally:
        await conn.close()
    # Other connections are served as before.
    assert (await gate.ask({"op": "status"}))["ok"] is True
    assert gate.rows("SELECT COUNT(*) FROM scans") == [(0,)]


async def test_many_clients_at_once(gate: Served) -> None:
    payloads = [REF] * 10 + [gate.live.sign(f"L-9{n:03d}") for n in range(10)]
    answers = await asyncio.gather(*(gate.ask({"op": "scan", "payload": p}) for p in payloads))
    outcomes = [a["decision"]["outcome"] for a in answers]
    assert outcomes[:10].count("allow") == 1
    assert outcomes[:10].count("already_used") == 9
    assert outcomes[10:] == ["allow"] * 10
    assert gate.rows("SELECT COUNT(*) FROM redemptions") == [(11,)]


# ------------------------------------------------------------------ the socket file


async def test_the_socket_file_is_0660(gate: Served) -> None:
    st = gate.socket.lstat()
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660


async def test_a_second_server_on_a_live_socket_is_refused(gate: Served) -> None:
    other = ControlServer(gate.socket, gate.running.gate, gate.running.status.snapshot)
    with pytest.raises(GateError, match="already listening"):
        await other.start()
    # The first server was not disturbed.
    assert stat.S_ISSOCK(gate.socket.lstat().st_mode)
    assert (await gate.ask({"op": "status"}))["status"]["gate"] == "north-1"


async def test_a_stale_socket_file_is_replaced(tmp_path: Path, short_dir: Path) -> None:
    sock = short_dir / "control.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock))  # a daemon that died without removing its socket
    dead.close()
    assert stat.S_ISSOCK(sock.lstat().st_mode)
    with pytest.raises(GateError, match="no gate-daemon is listening"):
        ask(sock, {"op": "status"})
    served = await serve_gate(tmp_path, sock)
    try:
        assert (await served.ask({"op": "status"}))["ok"] is True
        assert stat.S_IMODE(sock.lstat().st_mode) == 0o660
    finally:
        served.stop.set()
        assert await asyncio.wait_for(served.task, 15) == 0


async def test_a_socket_path_that_is_not_a_socket_is_left_alone(tmp_path: Path, short_dir: Path) -> None:
    sock = short_dir / "control.sock"
    sock.write_text("someone's notes")
    with pytest.raises(GateError, match="is not a socket"):
        await serve_gate(tmp_path, sock)
    assert sock.read_text() == "someone's notes"
    # Once the path is clear, a gate starts there.
    sock.unlink()
    served = await serve_gate(tmp_path / "again", sock)
    served.stop.set()
    assert await asyncio.wait_for(served.task, 15) == 0


async def test_ask_names_an_absent_gate(short_dir: Path) -> None:
    with pytest.raises(GateError, match="no gate-daemon is listening"):
        await asyncio.to_thread(ask, short_dir / "nothing.sock", {"op": "status"})


async def test_connections_beyond_the_limit_are_answered_busy(gate: Served) -> None:
    from gate_daemon.daemon.control import MAX_CONNECTIONS

    held = [await connect(gate.socket) for _ in range(MAX_CONNECTIONS)]
    # Each held connection is being served (it answers), so all of them count.
    for conn in held[:2]:
        assert (await conn.send(b'{"op": "counters"}\n'))["ok"] is True
    await asyncio.sleep(0.05)
    extra = await connect(gate.socket)
    assert error(await extra.answer()) == "busy"
    assert await extra.reader.read() == b""  # and closed
    await extra.close()
    for conn in held:
        await conn.close()
    await asyncio.sleep(0.05)
    # Once they are gone, the gate serves new connections again.
    assert (await gate.ask({"op": "status"}))["ok"] is True


async def test_a_scan_id_sent_again_with_another_payload_is_refused(gate: Served) -> None:
    scan_id = str(uuid.uuid4())
    first = await gate.ask({"op": "scan", "payload": REF, "scan_id": scan_id})
    assert first["decision"]["outcome"] == "allow"
    conn = await connect(gate.socket)
    try:
        request = {"op": "scan", "payload": "A100-2", "scan_id": scan_id}
        answer = await conn.send(json.dumps(request).encode() + b"\n")
        assert error(answer) == "bad_request" and "another payload" in answer["message"]
    finally:
        await conn.close()
    assert gate.rows("SELECT COUNT(*) FROM scans") == [(1,)]


async def test_a_second_gate_on_the_same_state_dir_is_refused(
    gate: Served, tmp_path: Path, short_dir: Path
) -> None:
    # Another socket, the same ledger: two processes would number their records alike.
    other = write_gate_config(
        tmp_path / "other.toml", gate.live, socket=short_dir / "other.sock", signals="none"
    )
    with pytest.raises(GateError, match="another gate-daemon is using state_dir"):
        await app.start(load_config(other, {}))
    assert not (short_dir / "other.sock").exists()
    assert (await gate.ask({"op": "status"}))["ok"] is True
