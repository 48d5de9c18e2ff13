"""The files a venue tech installs: the systemd unit, the example config, the demo."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gate_daemon.cli import daemon
from gate_daemon.config.load import load_config
from gate_daemon.daemon.control import DEFAULT_SOCKET

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "gate-daemon.service"
EXAMPLE = ROOT / "config" / "gate.example.toml"


def directives(text: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of a unit file, by key (keys may repeat)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key, []).append(value)
    return out


@pytest.fixture(scope="module")
def unit() -> dict[str, list[str]]:
    return directives(UNIT.read_text())


def test_the_unit_is_a_notify_service_with_a_watchdog(unit: dict[str, list[str]]) -> None:
    assert unit["Type"] == ["notify"]
    assert unit["Restart"] == ["on-failure"]
    assert re.fullmatch(r"\d+s", unit["WatchdogSec"][0])
    assert unit["User"] == ["gate-daemon"]
    assert set(unit["SupplementaryGroups"][0].split()) >= {"video", "gpio", "input"}
    assert unit["StateDirectory"][0].split()[0] == "gate-daemon"
    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"]


def test_the_unit_keeps_the_gate_devices_reachable(unit: dict[str, list[str]]) -> None:
    allowed = {value.split()[0] for value in unit["DeviceAllow"]}
    assert unit["DevicePolicy"] == ["closed"]
    assert {"char-video4linux", "char-gpiochip", "char-input"} <= allowed
    assert "PrivateDevices" not in unit  # it would hide /dev/video* and /dev/gpiochip*


def test_the_unit_commands_are_ones_gate_daemon_accepts(unit: dict[str, list[str]]) -> None:
    for command in (*unit["ExecStartPre"], *unit["ExecStart"]):
        program, *args = command.split()
        assert program.endswith("/gate-daemon")
        parsed = daemon.parser().parse_args(args)
        assert parsed.config or parsed.command == "check-config"


def test_the_example_config_matches_the_unit(unit: dict[str, list[str]], tmp_path: Path) -> None:
    credential = unit["LoadCredential"][0].split(":")[0]
    environ = {
        "CREDENTIALS_DIRECTORY": str(tmp_path / "creds"),
        "STATE_DIRECTORY": "/var/lib/gate-daemon",
        "RUNTIME_DIRECTORY": "/run/" + unit["RuntimeDirectory"][0],
    }
    config = load_config(EXAMPLE, environ)
    assert config.manifest.trusted_keys == (tmp_path / "creds" / credential,)
    assert config.control.socket == DEFAULT_SOCKET
    assert config.gate.state_dir == Path("/var/lib/gate-daemon")
    assert config.manifest.path.parent == Path("/var/lib/gate-daemon/incoming")
    assert unit["StateDirectory"][0].split()[1] == "gate-daemon/incoming"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    gate_daemon = Path(sys.executable).parent / "gate-daemon"
    local = tmp_path / "gate-daemon.service"
    local.write_text(UNIT.read_text().replace("/opt/gate-daemon/.venv/bin/gate-daemon", str(gate_daemon)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    # Unknown keys and bad values are warnings only; none may appear.
    assert "gate-daemon.service" not in done.stderr, done.stderr


@pytest.mark.slow
def test_the_demo_runs_a_gate_and_shows_every_outcome(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    env = {**os.environ, "DEMO_DIR": str(demo), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "scripts/demo"],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for words in ("ALLOW", "USED", "EARLY", "unpaid", "wrong_zone", "revoked", "at gate north-1"):
        assert words in out, words
    assert "scans     14" in out
    assert (demo / "tickets" / "W-0001.png").stat().st_size > 0
    assert not (demo / "state" / "control.sock").exists()  # the gate stopped cleanly
