"""The watchdog pings systemd only while the scan path is alive: the ledger answers, the input lives."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gate_daemon.config.load import load_config
from gate_daemon.daemon import app
from gate_daemon.daemon.systemd import Notifier
from gate_daemon.hardware.image_folder import ImageFolderInput
from gate_daemon.hardware.ports import Frame
from gate_daemon.provision.qrimage import write_qr
from tests.live import make_live_world, write_gate_config


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="gd-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def pings(sock: socket.socket) -> int:
    """WATCHDOG=1 datagrams waiting on the notify socket."""
    count = 0
    while True:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return count
        count += data.split(b"\n").count(b"WATCHDOG=1")


async def test_a_stuck_input_withholds_the_watchdog_until_it_recovers(
    tmp_path: Path, short_dir: Path
) -> None:
    live = make_live_world(tmp_path / "event")
    (tmp_path / "drop.gdm").write_bytes(live.manifest())
    frames = tmp_path / "frames"
    frames.mkdir()
    config = load_config(
        write_gate_config(
            tmp_path / "gate.toml", live, input_kind="images", images=frames, signals="none",
            socket=short_dir / "control.sock",
        ),
        {},
    )  # fmt: skip
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(short_dir / "notify"))
    notify.setblocking(False)
    notifier = Notifier({"NOTIFY_SOCKET": str(short_dir / "notify"), "WATCHDOG_USEC": "300000"})

    running = await app.start(config)
    entered, release = threading.Event(), threading.Event()

    class StuckDecoder:
        name = "stuck"

        def decode(self, frame: Frame) -> list[str]:
            entered.set()
            release.wait(20)  # a decoder hung on a frame
            return []

    async def eventually_pinged(count: int) -> None:
        seen, deadline = 0, asyncio.get_running_loop().time() + 10
        while seen < count:
            assert asyncio.get_running_loop().time() < deadline, f"only {seen} pings"
            await asyncio.sleep(0.05)
            seen += pings(notify)

    running.source = ImageFolderInput(frames, interval=0.01, decoder=StuckDecoder())
    stop = asyncio.Event()
    task = asyncio.create_task(app.serve(running, notifier, stop))
    try:
        await eventually_pinged(2)  # alive: a ping every 0.1 s
        write_qr("A100-2", frames / "frame.png")
        assert await asyncio.to_thread(entered.wait, 10)
        # The decode hangs; once the input has been silent for half the watchdog interval
        # (0.15 s) and a probe period has passed, no more pings are sent.
        await asyncio.sleep(0.4)
        pings(notify)
        await asyncio.sleep(0.6)
        assert pings(notify) == 0
        release.set()
        await eventually_pinged(2)  # recovered
    finally:
        release.set()
        stop.set()
        assert await asyncio.wait_for(task, 15) == 0
        notify.close()
