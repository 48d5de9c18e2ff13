"""Enrollment against a central bridging a real pretix (docs/ENROLL.md, docs/PRETIX.md).

The central reads a venue file (no ``[event] name``, no sessions: pretix has them), so its
token command and ``POST /v1/enroll`` read that file as a venue; the gate enrolled joins the
roster beside the venue's gates and the bridge's own gate ``pretix``, whose id no token takes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gate_daemon.core.keys import SecretKey
from gate_daemon.core.manifest import Manifest
from gate_daemon.store.manifest_file import read_manifest
from tests.central_process import CentralProcess
from tests.enroll_fixtures import central_cli, enroll, enrolled_rows, new_token
from tests.gate_process import wait_until
from tests.pretix_bridge_world import BridgeWorld, bridge_world
from tests.pretix_server import PretixServer

pytestmark = [pytest.mark.pretix, pytest.mark.slow]
CONVERGE = 60.0


@pytest.fixture
def world(tmp_path: Path, pretix: PretixServer) -> Iterator[BridgeWorld]:
    """A central bridging the session's pretix, with gates north-1 and south-1 in its venue file."""
    with bridge_world(tmp_path / "bridge", pretix) as made:
        yield made


def _latest(central: CentralProcess) -> Manifest:
    version = central.report()["manifest"]["version"]
    signer = SecretKey.parse((central.config.parent / "signer.key").read_text())
    return read_manifest(central.database.parent / "manifests" / f"{version}.gdm", [signer.public])


def test_a_gate_enrolls_by_token_with_a_central_bridging_pretix(world: BridgeWorld, tmp_path: Path) -> None:
    central = world.central
    wait_until(lambda: central.report()["manifest"] is not None, CONVERGE, "the first manifest from pretix")
    done = enroll(new_token(central, "east-1", "--zone", "vip"), tmp_path / "east-1")
    assert done.returncode == 0, done.stderr
    assert [row[0] for row in enrolled_rows(central)] == ["east-1"]
    wait_until(
        lambda: "east-1" in {g.id for g in _latest(central).header.gates}, CONVERGE, "a manifest with east-1"
    )
    assert {g.id for g in _latest(central).header.gates} == {"north-1", "south-1", "pretix", "east-1"}
    listed = central_cli(central, "gates")
    assert listed.returncode == 0 and "east-1" in listed.stdout, listed.stderr
    reserved = central_cli(central, "token", "--gate", "pretix", "--url", central.url)
    assert reserved.returncode == 1 and "EnrollRefused: gate_id_reserved:" in reserved.stderr
