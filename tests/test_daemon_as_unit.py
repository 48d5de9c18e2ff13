"""The shipped example config, run the way the systemd unit runs it.

The unit gives the daemon ``$CREDENTIALS_DIRECTORY`` (LoadCredential), ``$STATE_DIRECTORY``
and ``$RUNTIME_DIRECTORY``, a notify socket, a watchdog and the journal on stderr. Here
the same variables point into the test's folders, and gpiozero's mock pins stand in for
the Pi's (``GPIOZERO_PIN_FACTORY=mock``, which gpiozero reads itself).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gate_process import Launcher
from tests.live import EVENT_ID, LiveWorld

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "gate.example.toml"


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A short folder for the runtime directory: unix socket paths are limited."""
    path = Path(tempfile.mkdtemp(prefix="gd-run-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_example_config_runs_as_the_unit_runs_it(
    tmp_path: Path, live: LiveWorld, launch: Launcher, run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    shutil.copy(live.signer_pub, credentials / "manifest-signer.pub")
    state = tmp_path / "state"
    (state / "incoming").mkdir(parents=True)
    (state / "incoming" / "manifest.gdm").write_bytes(live.manifest(1))
    text = EXAMPLE.read_text()
    text = text.replace('event = "demo-2026"', f'event = "{EVENT_ID}"')
    text = text.replace('kind = "picamera"', 'kind = "none"')  # no camera here; every pin is a mock
    text = re.sub(
        r'^path = "/var/lib/gate-daemon/incoming/manifest.gdm"',
        'path = "${STATE_DIRECTORY}/incoming/manifest.gdm"',
        text,
        flags=re.M,
    )
    config = tmp_path / "gate.toml"
    config.write_text(text)
    env = {
        "CREDENTIALS_DIRECTORY": str(credentials),
        "STATE_DIRECTORY": str(state),
        "RUNTIME_DIRECTORY": str(run_dir),
        "GPIOZERO_PIN_FACTORY": "mock",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # so the test's own reading of the config agrees

    gate = launch(config, env=env, watchdog_usec=2_000_000, journal=True)
    assert gate.socket_path == run_dir / "control.sock"
    status = gate.status()
    assert (status["gate"], status["signals"], status["input"]) == ("north-1", "gpio", "none")
    assert status["manifest"]["version"] == 1
    assert gate.scan("A100-2")["outcome"] == "allow"
    assert gate.scan("A100-2")["outcome"] == "already_used"
    assert (state / "ledger.sqlite").exists() and (state / "manifest.active").exists()
    assert gate.stop() == 0
    fields = gate.fields()
    assert "READY=1" in fields and "WATCHDOG=1" in fields and "STOPPING=1" in fields
    err = gate.stderr()
    assert "gate north-1 ready" in err and "Traceback" not in err
    assert all(line.startswith("<") for line in err.splitlines() if line), err
    assert "PinFactoryFallback" not in err
