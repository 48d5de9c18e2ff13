"""The gate screen as a tech installs it: the kiosk unit, the example config, the screenshots' script."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gate_daemon.config.load import load_config
from tests.test_deployment_files import directives

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "gate-screen.service"
EXAMPLE = ROOT / "config" / "gate.example.toml"
SCREEN_DOC = ROOT / "docs" / "SCREEN.md"


def unit_text() -> str:
    """The unit with its continuation lines joined, as systemd reads it."""
    return UNIT.read_text().replace("\\\n", " ")


def test_the_kiosk_opens_the_screen_the_example_config_serves(tmp_path: Path) -> None:
    unit = directives(unit_text())
    environ = {
        "CREDENTIALS_DIRECTORY": str(tmp_path),
        "STATE_DIRECTORY": "/var/lib/x",
        "RUNTIME_DIRECTORY": "/run/x",
    }
    screen = load_config(EXAMPLE, environ).screen
    url = f"http://{screen.host}:{screen.port}/screen"
    assert (screen.host, screen.names, screen.manual_entry) == ("127.0.0.1", True, True)
    program, *args = shlex.split(unit["ExecStart"][0])
    assert program.endswith("/chromium") and "--kiosk" in args and args[-1] == url
    assert url in unit["ExecStartPre"][0]  # waits for the page before the first load
    assert unit["Restart"] == ["always"]
    assert "User" not in unit  # a user unit of the desktop user: Chromium needs its session
    assert unit["WantedBy"] == ["graphical-session.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_kiosk_unit(tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed")
    local = tmp_path / "gate-screen.service"
    local.write_text(UNIT.read_text().replace("/usr/bin/chromium", chromium))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "gate-screen.service" not in done.stderr, done.stderr


def test_the_screen_doc_shows_every_picture_the_script_makes() -> None:
    shown = set(re.findall(r"\(screen/([a-z_]+)\.png\)", SCREEN_DOC.read_text()))
    made = {path.stem for path in (ROOT / "docs" / "screen").glob("*.png")}
    assert shown == made and {"allow", "deny", "already_used", "too_early", "out_of_service"} <= made


@pytest.mark.slow
def test_the_screenshot_script_makes_every_picture(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "scripts/screenshots.py", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    made = {path.stem for path in tmp_path.glob("*.png")}
    assert made == {path.stem for path in (ROOT / "docs" / "screen").glob("*.png")}
    for path in tmp_path.glob("*.png"):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
