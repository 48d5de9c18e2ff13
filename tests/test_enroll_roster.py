"""Enrollment's roster at the central (docs/ENROLL.md): the ids it keeps, a removed gate's
tokens, a central bridging pretix, and a gate enrolled where the installer left its example.

Real ``gate-central`` and ``gatectl`` processes, a real central on 127.0.0.1 and its SQLite
file; the pretix central's token and roster commands read only its venue file, so pretix need
not run for them (tests/test_enroll_pretix.py enrolls a gate against a real pretix's central).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gate_daemon.config.load import load_config
from gate_daemon.config.sections import InputKind
from gate_daemon.core.enrollment import SECRET_SIZE, Token, fingerprint
from gate_daemon.core.keys import SecretKey
from gate_daemon.provision.gate_files import Placement
from gate_daemon.store.central.checkin_book import CentralStore
from gate_daemon.store.central.enrollments import Enrollments
from tests.central_process import CentralProcess
from tests.enroll_fixtures import (
    central_cli,
    enroll,
    enrolled_rows,
    gate_central,
    new_token,
    refused,
    running_central,
)
from tests.gate_process import GATE_DAEMON, SYSTEMD_VARIABLES, query, wait_until
from tests.live import make_live_world
from tests.pretix_bridge_world import venue_toml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "gate.example.toml"
CONVERGE = 30.0


@pytest.fixture
def central(tmp_path: Path) -> Iterator[CentralProcess]:
    """A running central whose event.toml lists no gates at all."""
    with running_central(tmp_path) as process:
        yield process


def _version(central: CentralProcess) -> int:
    return int(central.report()["manifest"]["version"])


def _tokens(central: CentralProcess, gate: str) -> list[tuple[object, ...]]:
    return query(central.database, "SELECT used_at, revoked_at FROM enroll_tokens WHERE gate = ?", gate)


# ---------------------------------------------------------------- the bridge's gate id


def test_gate_central_makes_no_token_for_the_bridge_gate(central: CentralProcess) -> None:
    done = central_cli(central, "token", "--gate", "pretix", "--url", central.url)
    assert done.returncode == 1 and "EnrollRefused: gate_id_reserved:" in done.stderr, done.stderr
    assert done.stdout == "" and _tokens(central, "pretix") == []


def test_an_enrollment_as_the_bridge_gate_is_refused_by_name(central: CentralProcess, tmp_path: Path) -> None:
    # A token for "pretix" kept before gate-central token refused the id: the central refuses it too.
    signer = SecretKey.parse((central.config.parent / "signer.key").read_text()).public
    token = Token(os.urandom(SECRET_SIZE), fingerprint(signer), int(time.time()) + 600, "pretix", central.url)

    async def keep() -> None:
        store = await CentralStore.open(central.database)
        try:
            await Enrollments(store).add_token(
                token.key.public, "pretix", None, time.time(), float(token.expires_at)
            )
        finally:
            await store.aclose()

    asyncio.run(keep())
    refused(central, token.text(), tmp_path / "gate", "gate_id_reserved")
    assert _tokens(central, "pretix") == [(None, None)], "the refused token is not spent"


# ---------------------------------------------------------------- removing a gate


def test_removing_a_gate_revokes_the_tokens_it_could_rejoin_with(
    central: CentralProcess, tmp_path: Path
) -> None:
    assert enroll(new_token(central, "east-1"), tmp_path / "east-1").returncode == 0
    leftover = new_token(central, "east-1")  # made for a replaced Pi, never used
    wait_until(lambda: [row[0] for row in enrolled_rows(central)] == ["east-1"], CONVERGE, "east-1 enrolled")
    before = _version(central)
    removed = central_cli(central, "gates", "--remove", "east-1")
    assert removed.returncode == 0, removed.stderr
    wait_until(lambda: _version(central) > before, CONVERGE, "a manifest without east-1")
    refused(central, leftover, tmp_path / "again", "token_revoked")
    assert enrolled_rows(central) == [] and "revoked 1 open token(s)" in removed.stdout


def test_removing_a_gate_never_enrolled_revokes_its_open_tokens(
    central: CentralProcess, tmp_path: Path
) -> None:
    token = new_token(central, "west-2")
    removed = central_cli(central, "gates", "--remove", "west-2")
    assert removed.returncode == 0 and "was not enrolled; revoked 1 open token(s)" in removed.stdout
    refused(central, token, tmp_path / "gate", "token_revoked")
    again = central_cli(central, "gates", "--remove", "west-2")
    assert again.returncode == 1 and "not enrolled and has no open token" in again.stderr, again.stderr


# ---------------------------------------------------------------- a central bridging pretix


def test_a_pretix_central_makes_tokens_and_lists_its_roster_from_its_venue_file(tmp_path: Path) -> None:
    make_live_world(tmp_path, ("north-1",))
    (tmp_path / "venue.toml").write_text(venue_toml(("north-1",)))  # no [event] name: pretix has it
    (tmp_path / "pretix-init-token").write_text("not used: pretix is not asked\n")
    config = tmp_path / "central.toml"
    config.write_text(
        '[central]\nid = "pretix-central"\nlisten = "127.0.0.1:0"\nstate_dir = "state"\n'
        'event = "venue.toml"\nkey = "signer.key"\n\n[source]\nkind = "pretix"\n'
        'url = "http://127.0.0.1:9"\norganizer = "gateorg"\nevent = "gate2026"\n'
        'init_token = "pretix-init-token"\n\n[source.lists]\nmain = 1\nvip = 2\n'
    )
    made = gate_central(
        config, "token", "--gate", "east-1", "--zone", "vip", "--url", "http://127.0.0.1:8700"
    )
    assert made.returncode == 0 and made.stdout.startswith("GDE1:"), made.stderr
    listed = gate_central(config, "gates")
    assert listed.returncode == 0 and "north-1" in listed.stdout, listed.stderr
    reserved = gate_central(config, "token", "--gate", "pretix", "--url", "http://127.0.0.1:8700")
    assert reserved.returncode == 1 and "EnrollRefused: gate_id_reserved:" in reserved.stderr


# ---------------------------------------------------------------- installer + enroll


def test_enrolling_beside_the_installers_example_gives_the_example_lane(
    central: CentralProcess, tmp_path: Path
) -> None:
    folder = tmp_path / "gate"
    (folder / "etc").mkdir(parents=True)
    shutil.copyfile(EXAMPLE, folder / "etc" / "gate.example.toml")  # as scripts/install-pi puts it
    done = enroll(new_token(central, "east-1"), folder)
    assert done.returncode == 0, done.stderr
    placement = Placement(folder / "etc", folder / "state")
    assert done.stdout.strip() == str(placement.config)
    config = load_config(placement.config, placement.environ())
    example = load_config(EXAMPLE, placement.environ())
    assert config.input.kind is InputKind.PICAMERA and config.input == example.input
    assert config.signals == example.signals and config.turnstile == example.turnstile
    assert config.gate.id == "east-1" and config.upstream.url == central.url
    assert not (folder / "etc" / "gate.toml.bak").exists()
    assert (folder / "etc" / "gate.example.toml").read_bytes() == EXAMPLE.read_bytes()
    checked = _check_config(placement, tmp_path / "site")
    assert checked.returncode == 0, checked.stderr
    assert "input picamera, signals gpio" in checked.stdout, checked.stdout


def _check_config(placement: Placement, site: Path) -> subprocess.CompletedProcess[str]:
    """The real ``gate-daemon check-config``, with systemd's directories as the unit gives them and
    picamera2 (which only a Pi has) stood in by the tests' camera."""
    site.mkdir()
    (site / "picamera2.py").write_text("from tests.fake_picamera2 import FakePicamera2 as Picamera2\n")
    env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARIABLES}
    env |= placement.environ() | {"PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    return subprocess.run(
        [str(GATE_DAEMON), "check-config", str(placement.config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
