"""The local control socket: manual scans, status and counters for ``gatectl``.

A unix socket only (never the LAN), mode 0660: whoever may open it may scan. The
protocol is one JSON object per line each way:

    {"op": "scan", "payload": "...", "operator": "anna", "kind": "entry", "scan_id": "<uuid>"}
    {"op": "status"}
    {"op": "counters"}
    {"op": "conflicts"}
    {"op": "search", "query": "A-1042", "limit": 20}
    {"op": "confirm"}
    {"op": "scan", "payload": "...", "force": true, "badge": "GDS1:..."}

Answers are ``{"ok": true, ...}`` or ``{"ok": false, "error": NAME, "message": ...}`` with
``error`` one of ``not_json``, ``too_large``, ``bad_request``, ``unknown_op``, ``busy``
(more than ``MAX_CONNECTIONS`` connections at once), ``unavailable`` (the ledger could
not answer a status, counters or conflicts request), ``no_upstream`` (a search on a gate
without a central) or ``upstream`` (the central did not answer a search). A scan goes through the same
path as a camera scan (recorded, then signalled); ``scan_id`` makes a retried request
idempotent (the gate records it under ``record_id``, an id of its own made from it, so
the same id used at another gate makes another record there). Without ``operator`` the
scan is recorded under the operator a staff badge signed in at the gate, else the name of
the user on the other end of the socket. ``confirm``
releases the oldest allow a supervised lane holds (``gatectl confirm``): it answers
``{"ok": true, "confirmed": true|false, "lane": LANE}``, false when none was waiting.
A scan with ``force`` (``gatectl scan --force``) needs ``badge``, a supervisor's staff badge:
a refusal of the ticket is put to the badge at once (``Gate.force``, docs/BADGES.md); the
answer is the override's decision, or the ticket's when it was not refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pwd
import socket
import sqlite3
import stat
import struct
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gate_daemon.core.badges import is_badge
from gate_daemon.core.decision import ScanKind
from gate_daemon.core.snapshot import GateSnapshot
from gate_daemon.errors import GateError, WireError
from gate_daemon.gate.scan import Gate, ScanIdReused

log = logging.getLogger(__name__)

#: The longest request line accepted.
MAX_REQUEST = 64 * 1024
#: Connections served at once; more are answered ``busy`` and closed.
MAX_CONNECTIONS = 32
#: A connection idle this long is closed.
IDLE_TIMEOUT = 60.0
MAX_PAYLOAD = 4096


class BadRequest(WireError):
    """A control request that cannot be served; ``name`` is the error code sent back."""


def peer_user(sock: socket.socket | None) -> str | None:
    """The user name of the process on the other end of a unix socket."""
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid:{uid}"


class ControlServer:
    """Serves control requests for one gate on a unix socket."""

    def __init__(
        self,
        path: Path,
        gate: Gate,
        status: Callable[[], Awaitable[GateSnapshot]],
        search: Callable[[str, int], Awaitable[list[dict[str, Any]]]] | None = None,
    ) -> None:
        self.path = path
        self.gate = gate
        self._status = status
        #: The central's participant search (``[upstream]``), or None.
        self.search = search
        self._server: asyncio.AbstractServer | None = None
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._busy: set[asyncio.Task[Any]] = set()
        self._closing = False

    async def start(self) -> None:
        """Bind the socket (replacing a stale one, refusing a live one) and listen."""
        await asyncio.to_thread(_clear_stale, self.path)
        old_umask = os.umask(0o117)  # the socket file is made 0660
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=self.path, limit=MAX_REQUEST)
        except OSError as exc:
            raise GateError(f"cannot listen on control socket {self.path}: {exc.strerror}") from None
        finally:
            os.umask(old_umask)

    async def aclose(self) -> None:
        """Stop listening, let requests being answered finish, close the rest, remove the socket file."""
        self._closing = True
        if self._server is not None:
            self._server.close()
            # A scan in flight commits and is answered before the ledger closes; idle connections
            # are closed (their handlers see the end of input and return).
            for task, writer in self._connections.items():
                if task not in self._busy:
                    writer.close()
            if self._connections:
                await asyncio.wait(set(self._connections), timeout=10)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
        with contextlib.suppress(OSError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= MAX_CONNECTIONS:
            with contextlib.suppress(ConnectionError, OSError):
                await _send(writer, _error("busy", f"the gate serves at most {MAX_CONNECTIONS} connections"))
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            return
        user = peer_user(writer.get_extra_info("socket"))
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            while not self._closing:
                try:
                    line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
                except (ValueError, asyncio.LimitOverrunError):
                    await _send(writer, _error("too_large", f"a request is at most {MAX_REQUEST} bytes"))
                    return
                if not line:
                    return
                if not line.strip():
                    continue
                self._busy.add(task)
                try:
                    try:
                        answer = await self.handle(line, user)
                    except BadRequest as exc:
                        answer = _error(exc.name, exc.detail)
                    await _send(writer, answer)
                finally:
                    self._busy.discard(task)
        except (TimeoutError, ConnectionError):
            return
        finally:
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def handle(self, line: bytes, user: str | None) -> dict[str, Any]:
        """Answer one request line."""
        try:
            request = json.loads(line)
        except (ValueError, RecursionError) as exc:  # ValueError: also digits past int's limit
            raise BadRequest("not_json", f"the request is not a JSON object: {exc}") from None
        if not isinstance(request, dict):
            raise BadRequest("not_json", "the request must be a JSON object")
        op = request.get("op")
        if op == "scan":
            return await self._scan(request, user)
        if op == "search":
            return await self._search(request)
        if op == "confirm":
            if set(request) != {"op"}:
                raise BadRequest("bad_request", "confirm takes no other field")
            confirmed = self.gate.confirm(f"gatectl:{user or '?'}")
            return {"ok": True, "confirmed": confirmed, "lane": self.gate.lane.status()}
        try:
            if op == "status":
                return {"ok": True, "status": await self._status()}
            if op == "counters":
                return {"ok": True, "counters": await self.gate.ledger.counters()}
            if op == "conflicts":
                found = await self.gate.ledger.conflicts()
                return {"ok": True, "conflicts": [conflict.as_dict() for conflict in found]}
        except (sqlite3.Error, ValueError) as exc:
            raise BadRequest("unavailable", f"the ledger cannot answer: {exc}") from None
        ops = "scan, status, counters, conflicts, search or confirm"
        raise BadRequest("unknown_op", f"op must be {ops}, not {op!r}")

    async def _search(self, request: dict[str, Any]) -> dict[str, Any]:
        query, limit = request.get("query"), request.get("limit", 20)
        if not isinstance(query, str) or not 2 <= len(query) <= 64 or not _printable(query, 64):
            raise BadRequest("bad_request", "query must be 2 to 64 printable characters")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 50:
            raise BadRequest("bad_request", "limit must be a whole number from 1 to 50")
        if self.search is None:
            raise BadRequest("no_upstream", "this gate has no central server ([upstream] url) to search")
        # Imported here: only a gate with [upstream] has httpx loaded.
        from gate_daemon.net.upstream import UpstreamError

        try:
            return {"ok": True, "results": await self.search(query, limit)}
        except UpstreamError as exc:
            raise BadRequest("upstream", f"the central did not answer the search: {exc}") from None

    async def _scan(self, request: dict[str, Any], user: str | None) -> dict[str, Any]:
        unknown = set(request) - {"op", "payload", "operator", "kind", "scan_id", "force", "badge"}
        if unknown:
            raise BadRequest("bad_request", f"unknown fields: {', '.join(sorted(unknown))}")
        payload = request.get("payload")
        if not isinstance(payload, str) or not payload or len(payload) > MAX_PAYLOAD:
            raise BadRequest("bad_request", f"payload must be a string of 1 to {MAX_PAYLOAD} characters")
        operator = request.get("operator", user)
        if operator is not None and not _printable(operator, 64):
            raise BadRequest("bad_request", "operator must be printable text of 1 to 64 characters")
        kind_text = request.get("kind")
        try:
            kind = ScanKind(kind_text) if kind_text is not None else None
        except ValueError:
            raise BadRequest("bad_request", 'kind must be "entry" or "exit"') from None
        scan_id = request.get("scan_id")
        if scan_id is not None:
            try:
                scan_id = str(uuid.UUID(str(scan_id)))
            except ValueError:
                raise BadRequest("bad_request", "scan_id must be a UUID") from None
        badge = _forcing(request)
        if "operator" not in request:  # the operator a staff badge signed in, before the socket's user
            operator = self.gate.shift.operator() or operator
        # The device names who is on the other end of the socket, whatever operator they give.
        device = f"control:{user}" if user else "control"
        try:
            if badge is not None:
                result = await self.gate.force(
                    payload, badge, device=device, operator=operator, scan_id=scan_id
                )
            else:
                result = await self.gate.scan(
                    payload, device=device, operator=operator, kind=kind, scan_id=scan_id
                )
        except ScanIdReused as exc:
            raise BadRequest("bad_request", str(exc)) from None
        return {"ok": True, "decision": result.as_dict(client_id=scan_id)}


def _forcing(request: dict[str, Any]) -> str | None:
    """A forced scan's badge (None for a plain scan); no force without a badge, no badge without force."""
    force, badge = request.get("force", False), request.get("badge")
    if not isinstance(force, bool):
        raise BadRequest("bad_request", "force must be true or false")
    if badge is not None and (not isinstance(badge, str) or not badge or len(badge) > MAX_PAYLOAD):
        raise BadRequest("bad_request", f"badge must be a string of 1 to {MAX_PAYLOAD} characters")
    if badge is not None and not is_badge(badge):
        raise BadRequest("bad_request", "badge is not a staff badge (GDS1:...)")
    if force and badge is None:
        raise BadRequest("bad_request", "force needs a supervisor's staff badge (badge)")
    if badge is not None and not force:
        raise BadRequest(
            "bad_request", "badge is given only with force (a badge alone is scanned as a payload)"
        )
    if force and request.get("kind") == "exit":
        raise BadRequest("bad_request", "force admits an entry; it cannot be an exit")
    return badge


def _printable(value: object, limit: int) -> bool:
    """A string of 1 to ``limit`` printable characters that UTF-8 can encode."""
    if not isinstance(value, str) or not 0 < len(value) <= limit or not value.isprintable():
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _error(name: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": name, "message": message}


async def _send(writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
    writer.write(json.dumps(answer, separators=(",", ":")).encode() + b"\n")
    await writer.drain()


def _clear_stale(path: Path) -> None:
    """Remove a socket file left by a dead daemon; refuse if a daemon still answers on it."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise GateError(f"control socket path {path} exists and is not a socket; refusing to replace it")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink(missing_ok=True)
            return
    raise GateError(f"another gate-daemon is already listening on {path}")


#: Where the systemd unit puts the socket (RuntimeDirectory=gate-daemon).
DEFAULT_SOCKET = Path("/run/gate-daemon/control.sock")


def ask(path: Path, request: dict[str, Any], timeout: float = 15.0) -> dict[str, Any]:
    """Send one request to a running gate and return its answer (``GateError`` if unreachable)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(request).encode() + b"\n")
            with sock.makefile("rb") as answers:
                line = answers.readline(16 << 20)
    except (FileNotFoundError, ConnectionRefusedError):
        raise GateError(f"no gate-daemon is listening on {path} (is it running? see --socket)") from None
    except PermissionError:
        raise GateError(f"not allowed to use {path}: join the gate-daemon group or use sudo") from None
    except TimeoutError:
        raise GateError(f"the gate on {path} did not answer within {timeout:.0f} s") from None
    except OSError as exc:
        raise GateError(f"cannot talk to the gate on {path}: {exc.strerror or exc}") from None
    try:
        answer = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise GateError(f"the gate on {path} sent an unreadable answer") from None
    if not isinstance(answer, dict):
        raise GateError(f"the gate on {path} sent an unreadable answer")
    if not answer.get("ok"):
        raise GateError(f"the gate refused the request ({answer.get('error')}): {answer.get('message')}")
    return answer
