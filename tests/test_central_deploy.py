"""gate-central as systemd runs it: the unit, its commands, and the config's systemd variables."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gate_daemon.central.cli import parser
from gate_daemon.central.config import load_central_config
from gate_daemon.errors import SourceError
from gate_daemon.provision.keyfiles import write_keypair
from tests.gate_process import SYSTEMD_VARIABLES
from tests.test_deployment_files import directives

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "gate-central.service"
EXAMPLE = ROOT / "config" / "central.example.toml"
INSTALLED = "/opt/gate-daemon/.venv/bin/gate-central"
GATE_CENTRAL = Path(sys.executable).parent / "gate-central"
CONFIG = "/etc/gate-central/central.toml"
#: The systemd form the example's comments show, by key.
SYSTEMD_FORM = {
    "state_dir": '"${STATE_DIRECTORY}"',
    "key": '"${CREDENTIALS_DIRECTORY}/signer.key"',
}


@pytest.fixture(scope="module")
def unit() -> dict[str, list[str]]:
    return directives(UNIT.read_text())


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    """/etc/gate-central as a tech sets it up: the example in its systemd form, event and tickets."""
    folder = tmp_path / "etc"
    folder.mkdir()
    for name in ("event.example.toml", "tickets.example.csv"):
        shutil.copy(ROOT / "config" / name, folder / name)
    write_keypair(folder / "issuer")
    text = EXAMPLE.read_text()
    for key, value in SYSTEMD_FORM.items():
        assert f"#   {key} = {value}" in text, f"the example no longer shows {key} = {value}"
        text, count = re.subn(rf"^{key} = \S+", f"{key} = {value}", text, flags=re.MULTILINE)
        assert count == 1, key
    (folder / "central.toml").write_text(text.replace('"127.0.0.1:8700"', '"127.0.0.1:0"'))
    return folder


@pytest.fixture
def systemd_env(unit: dict[str, list[str]], tmp_path: Path) -> dict[str, str]:
    """The environment the unit gives: the signing key as its credential, an empty state directory."""
    credential, _, source = unit["LoadCredential"][0].partition(":")
    assert source == "/etc/gate-central/keys/signer.key"
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    write_keypair(credentials / "signer")
    assert (credentials / credential).is_file()
    state = tmp_path / "state"
    state.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARIABLES}
    return {**env, "CREDENTIALS_DIRECTORY": str(credentials), "STATE_DIRECTORY": str(state)}


def command(line: str, etc: Path) -> list[str]:
    """A unit's command line, run from this venv against ``etc`` instead of /etc/gate-central."""
    program, *args = line.split()
    assert program == INSTALLED
    return [str(GATE_CENTRAL), *(str(etc / "central.toml") if arg == CONFIG else arg for arg in args)]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    local = tmp_path / "gate-central.service"
    local.write_text(UNIT.read_text().replace(INSTALLED, str(GATE_CENTRAL)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    # Unknown keys and bad values are warnings only; none may appear.
    assert "gate-central.service" not in done.stderr, done.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_pretix_drop_in_docs_pretix_shows_loads_the_init_token(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "PRETIX.md").read_text()
    found = re.search(r"```ini\n# (/etc/systemd/system/gate-central\.service\.d/\S+)\n(.*?)```", text, re.S)
    assert found is not None, "docs/PRETIX.md shows no drop-in"
    local = tmp_path / "gate-central.service"
    local.write_text(UNIT.read_text().replace(INSTALLED, str(GATE_CENTRAL)))
    drop_in = tmp_path / "gate-central.service.d" / Path(found[1]).name
    drop_in.parent.mkdir()
    drop_in.write_text(found[2])
    assert "LoadCredential=pretix-init-token:" in found[2]
    assert "pretix-init-token" not in UNIT.read_text().split("[Service]")[1].split("# Hardening")[0]
    done = subprocess.run(
        ["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "gate-central.service" not in done.stderr, done.stderr


def test_the_unit_is_a_plain_hardened_service_without_devices(unit: dict[str, list[str]]) -> None:
    assert unit["Type"] == ["exec"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["StateDirectory"] == ["gate-central"]
    assert unit["DevicePolicy"] == ["closed"]
    assert "DeviceAllow" not in unit
    assert unit["PrivateDevices"] == ["yes"]
    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["CapabilityBoundingSet"] == [""]


def test_the_unit_commands_are_ones_gate_central_accepts(unit: dict[str, list[str]]) -> None:
    (check,) = unit["ExecStartPre"]
    (serve,) = unit["ExecStart"]
    checked = parser().parse_args(check.split()[1:])
    assert checked.command == "check-config" and checked.file == Path(CONFIG)
    served = parser().parse_args(serve.split()[1:])
    assert served.command is None and served.config == Path(CONFIG)


def test_the_unit_checks_serves_and_reports_the_systemd_form_of_the_example(
    unit: dict[str, list[str]], etc: Path, systemd_env: dict[str, str], tmp_path: Path
) -> None:
    done = _run(command(unit["ExecStartPre"][0], etc), systemd_env)
    assert done.returncode == 0, done.stderr
    assert "event demo-2026, 9 tickets" in done.stdout

    state = Path(systemd_env["STATE_DIRECTORY"])
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        server = subprocess.Popen(
            command(unit["ExecStart"][0], etc),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=systemd_env,
        )
    try:
        deadline = time.monotonic() + 30
        while "serving http://127.0.0.1:" not in out.read_text():
            assert server.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.02)
        assert (state / "central.sqlite").is_file()
        assert [p.name for p in (state / "manifests").glob("*.gdm")] == ["1.gdm"]
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0, err.read_text()

    done = _run([str(GATE_CENTRAL), "report", "--config", str(etc / "central.toml")], systemd_env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("manifest   demo-2026 version 1, 9 tickets")


def test_check_config_by_hand_names_the_unset_variable(etc: Path, systemd_env: dict[str, str]) -> None:
    env = {k: v for k, v in systemd_env.items() if k != "CREDENTIALS_DIRECTORY"}
    config = etc / "central.toml"
    done = _run([str(GATE_CENTRAL), "check-config", str(config)], env)
    assert done.returncode == 1
    line = _line(config, "key =")
    assert (
        f"{config}:{line}: central.key: '${{CREDENTIALS_DIRECTORY}}/signer.key': "
        "${CREDENTIALS_DIRECTORY} is not set;" in done.stderr
    ), done.stderr
    assert "central.state_dir" not in done.stderr  # ${STATE_DIRECTORY} is set


def test_the_variables_expand_to_the_first_directory_systemd_lists(tmp_path: Path) -> None:
    path = _write(tmp_path, 'state_dir = "${STATE_DIRECTORY}"\nkey = "${CREDENTIALS_DIRECTORY}/signer.key"\n')
    environ = {"CREDENTIALS_DIRECTORY": "/run/credentials/gate-central.service", "STATE_DIRECTORY": "/a:/b"}
    config = load_central_config(path, environ)
    assert config.key == Path("/run/credentials/gate-central.service/signer.key")
    assert config.state_dir == Path("/a")
    assert config.database == Path("/a/central.sqlite")
    assert config.event == tmp_path / "event.toml"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('"${STATE_DIRECTORY}"', "${STATE_DIRECTORY} is not set"),
        ('"${RUNTIME_DIRECTORY}/state"', "${RUNTIME_DIRECTORY} is not allowed"),
        ('"${HOME}/state"', "only ${CREDENTIALS_DIRECTORY}, ${STATE_DIRECTORY} may be used"),
        ('"${state_directory}"', "only ${CREDENTIALS_DIRECTORY}, ${STATE_DIRECTORY} may be used"),
    ],
)
def test_a_variable_unset_or_not_allowed_is_named_with_file_key_and_line(
    tmp_path: Path, value: str, words: str
) -> None:
    path = _write(tmp_path, f'key = "signer.key"\nstate_dir = {value}\n')
    with pytest.raises(SourceError) as caught:
        load_central_config(path, {"CREDENTIALS_DIRECTORY": "/run/credentials/gate-central.service"})
    assert [p.where for p in caught.value.problems] == ["central.state_dir"]
    assert f"{path}:{_line(path, 'state_dir =')}: central.state_dir: " in str(caught.value)
    assert words in str(caught.value)


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, env=env, check=False)


def _write(folder: Path, paths: str) -> Path:
    path = folder / "central.toml"
    path.write_text(f'# the central\n[central]\nevent = "event.toml"\ntickets = "tickets.csv"\n{paths}')
    return path


def _line(path: Path, start: str) -> int:
    lines = path.read_text().splitlines()
    return next(n for n, text in enumerate(lines, start=1) if text.startswith(start))
