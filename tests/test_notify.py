"""sd_notify against a real AF_UNIX datagram socket that nobody reads: sends never block.

The kernel queues at most ``net.unix.max_dgram_qlen`` datagrams (10 by default) for a
reader; a blocking send to a full queue waits until the reader reads, which froze the
gate's event loop when systemd stalled.
"""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gate_daemon.daemon.systemd import Notifier

#: Far more messages than any kernel queues for one unread datagram socket.
MESSAGES = 2000
#: Only bounds a hang: the sends take milliseconds.
HANG = 60.0


@pytest.fixture
def stalled() -> Iterator[tuple[socket.socket, Path]]:
    """A bound notify socket that is never read from (unix socket paths must be short)."""
    folder = Path(tempfile.mkdtemp(prefix="gd-", dir="/tmp"))
    path = folder / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        yield sock, path
    finally:
        sock.close()
        shutil.rmtree(folder, ignore_errors=True)


def _send_all(notifier: Notifier, count: int) -> None:
    """``count`` status lines from another thread; fails if they do not return (a blocked send)."""
    worker = threading.Thread(
        target=lambda: [notifier.status(f"serving, scan {n}") for n in range(count)], daemon=True
    )
    worker.start()
    worker.join(HANG)
    assert not worker.is_alive(), "a notification blocked on systemd's full queue"


def _drain(sock: socket.socket) -> list[bytes]:
    got = []
    sock.setblocking(False)
    while True:
        try:
            got.append(sock.recv(4096))
        except BlockingIOError:
            return got


def test_a_stalled_reader_costs_dropped_notifications_not_a_blocked_gate(
    stalled: tuple[socket.socket, Path], caplog: pytest.LogCaptureFixture
) -> None:
    sock, path = stalled
    notifier = Notifier({"NOTIFY_SOCKET": str(path)})
    with caplog.at_level(logging.INFO, logger="gate_daemon.daemon.systemd"):
        _send_all(notifier, MESSAGES)
    queued = _drain(sock)
    assert queued and queued[0] == b"STATUS=serving, scan 0"
    assert notifier.dropped == MESSAGES - len(queued)
    # One line for the whole run of drops, not one per message.
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("systemd is not reading its notify socket (queue full)")


def test_after_the_reader_catches_up_notifications_flow_and_a_new_stall_is_logged_again(
    stalled: tuple[socket.socket, Path], caplog: pytest.LogCaptureFixture
) -> None:
    sock, path = stalled
    notifier = Notifier({"NOTIFY_SOCKET": str(path)})
    with caplog.at_level(logging.INFO, logger="gate_daemon.daemon.systemd"):
        _send_all(notifier, MESSAGES)
        _drain(sock)
        dropped = notifier.dropped
        notifier.status("caught up")
        assert _drain(sock) == [b"STATUS=caught up"] and notifier.dropped == dropped
        _send_all(notifier, MESSAGES)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[0].startswith("systemd is not reading") and lines[2].startswith("systemd is not reading")
    assert lines[1] == f"systemd reads its notify socket again ({dropped} notifications dropped)"
