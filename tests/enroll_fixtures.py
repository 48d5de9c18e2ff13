"""Enrollment's test parts (docs/ENROLL.md): a running central with no gates in its event file,
the real ``gate-central`` and ``gatectl enroll`` commands, and the check that a refusal changed nothing."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.central_process import GATE_CENTRAL, CentralProcess
from tests.gate_process import SYSTEMD_VARIABLES, free_port, gatectl, query
from tests.live import make_live_world, tickets_csv


@contextlib.contextmanager
def running_central(tmp_path: Path) -> Iterator[CentralProcess]:
    """A running central (event.toml and tickets.csv) whose event.toml lists no gates at all."""
    root = tmp_path / "central"
    make_live_world(root)
    (root / "tickets.csv").write_text(tickets_csv(20))
    config = root / "central.toml"
    config.write_text(
        '[central]\nid = "venue-central"\nlisten = "127.0.0.1:0"\nstate_dir = "state"\n'
        'event = "event.toml"\ntickets = "tickets.csv"\nkey = "signer.key"\npoll_ms = 100\n'
    )
    with CentralProcess(config, tmp_path) as process:
        yield process.start()


def gate_central(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real ``gate-central`` command on ``config`` (the central need not run)."""
    env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARIABLES}
    return subprocess.run(
        [str(GATE_CENTRAL), *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )


def central_cli(central: CentralProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real ``gate-central`` command on the central's config."""
    return gate_central(central.config, *args)


def new_token(central: CentralProcess, gate: str, *extra: str) -> str:
    """``gate-central token --gate GATE``: the token it prints."""
    done = central_cli(central, "token", "--gate", gate, "--url", central.url, *extra)
    assert done.returncode == 0, done.stderr
    assert "GDE1:" not in done.stderr  # the token goes to stdout only
    return done.stdout.strip()


def enroll(token: str, folder: Path, addr: str | None = None) -> subprocess.CompletedProcess[str]:
    """``gatectl enroll TOKEN --etc folder/etc --state folder/state``."""
    addr = addr or f"127.0.0.1:{free_port()}"
    return gatectl("enroll", token, "--etc", folder / "etc", "--state", folder / "state", "--addr", addr)


def enrolled_rows(central: CentralProcess) -> list[tuple[object, ...]]:
    """The central's enrolled roster, as its database holds it."""
    return query(central.database, "SELECT id, pub, addr FROM enrolled_gates ORDER BY id")


def refused(central: CentralProcess, token: str, folder: Path, name: str) -> None:
    """``gatectl enroll`` with ``token`` is refused by ``name``, and nothing changes on either side."""
    before = (enrolled_rows(central), central.report()["manifest"]["version"])
    done = enroll(token, folder)
    assert done.returncode == 1, done.stdout
    assert f"EnrollRefused: {name}:" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not folder.exists(), "nothing is written on a refusal"
    assert (enrolled_rows(central), central.report()["manifest"]["version"]) == before
