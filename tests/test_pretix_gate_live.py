"""A pretix signed secret sold while the bridge cannot reach pretix: admitted offline, then in pretix once.

Real processes: the session's pretix, a ``gate-central`` bridging it (tests.pretix_bridge_world)
and a ``gate-daemon`` of zone ``main``. The order is made after the bridge lost pretix, so no
manifest lists its position: the gate decides the secret from its signature and claims alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gate_daemon.core.pretix_sig import ticket_id_for
from tests.central_process import CONVERGE
from tests.gate_process import Launcher, wait_until
from tests.live import EVENT_ID
from tests.pretix_bridge_world import BridgeWorld, bridge_world
from tests.pretix_server import PretixServer

pytestmark = [pytest.mark.pretix, pytest.mark.slow]


@pytest.fixture
def world(tmp_path: Path, pretix: PretixServer) -> BridgeWorld:
    with bridge_world(tmp_path / "bridge", pretix) as made:
        yield made  # type: ignore[misc]


def test_a_signed_secret_sold_while_pretix_is_cut_off_is_admitted_once_and_reaches_pretix(
    world: BridgeWorld, pretix: PretixServer, launch: Launcher
) -> None:
    gate = world.gate(launch, "north-1")
    known = pretix.positions["paid"].secret
    wait_until(lambda: gate.scan(known, kind="exit")["reason"] == "not_inside", CONVERGE, "the manifest")
    world.cut()
    late = pretix.make_order(name="Sold While Cut Off")
    vip_only = pretix.make_order("vip", name="VIP While Cut Off")

    first = gate.scan(late.secret)
    assert (first["outcome"], first["format"]) == ("allow", "pretix"), first
    assert first["ticket_id"] == ticket_id_for(EVENT_ID, late.secret)
    assert gate.scan(late.secret)["reason"] == "already_used"
    lounge = world.gate(launch, "south-1", zone="vip")
    wait_until(
        lambda: lounge.scan(known, kind="exit")["reason"] != "manifest_missing", CONVERGE, "a manifest"
    )
    assert lounge.scan(late.secret)["reason"] == "wrong_zone"
    assert lounge.scan(vip_only.secret)["outcome"] == "allow"

    world.heal()
    wait_until(lambda: bool(pretix.checkins_of(late.position_id)), CONVERGE, "the check-in in pretix")
    held = pretix.checkins_of(late.position_id)
    assert len(held) == 1 and held[0]["list"] == pretix.lists["main"], held
