"""A gate's upstream sync, in process, against the reference central on 127.0.0.1 (real SQLite, real HTTP).

The pull verifies records against the gate's roster: a gate the central's newer manifest
added must not be skipped forever because this gate's manifest had not caught up yet,
nor every gate's records because this gate had no manifest at all when it pulled. The
pull cursor moves past a record refused only under the newest roster the gate can know.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from gate_daemon.central.manifests import ManifestBook
from gate_daemon.core.decision import Checkpoint, Ticket, decide, identify
from gate_daemon.core.reasons import Reason
from gate_daemon.errors import ManifestRefused
from gate_daemon.gate.clock import GateClock
from gate_daemon.gate.manifest_watch import ManifestWatch
from gate_daemon.net import sync as sync_module
from gate_daemon.net.replication import Replication
from gate_daemon.net.sync import SyncSettings, UpstreamSync
from gate_daemon.net.upstream import MAX_BATCH, PullPage, UpstreamClient
from gate_daemon.provision.event import load_event
from gate_daemon.provision.keyfiles import read_public, write_keypair
from gate_daemon.store.ledger import Ledger
from gate_daemon.store.manifest_file import read_manifest
from gate_daemon.store.upstream_marks import UpstreamMarks
from tests.central_fixtures import GATES, CentralWorld, GateClient, Running, make_central_world, serving
from tests.live import EVENT_ID, event_toml, tickets_csv


async def rebuilt(book: ManifestBook, before: int) -> None:
    """Make the central build a version from its changed files now. Its own poll may have built it
    first, so what counts is a version newer than ``before`` (the latest before the change)."""
    await book.refresh(force=True)
    assert book.latest is not None and book.latest.version > before


def latest(book: ManifestBook) -> int:
    """The central's latest version."""
    assert book.latest is not None
    return book.latest.version


class ManifestRoundMidPull(UpstreamClient):
    """The central as a gate's pull meets it when the manifest loop's round starts while a page is on its way.

    Both loops start together in a gate, and a manifest takes longer to come than a page:
    this makes that order certain. ``sync`` is the gate's sync, set by the test.
    """

    sync: UpstreamSync | None = None
    round: asyncio.Task[bool] | None = None

    async def pull(self, after: int, limit: int = MAX_BATCH) -> PullPage:
        page = await super().pull(after, limit)
        if self.sync is not None and self.round is None:
            self.round = asyncio.create_task(self.sync.refresh_manifest())
            await asyncio.sleep(0)  # the round takes the manifest lock and starts its download
        return page

    async def finish_round(self) -> None:
        """Wait for the manifest round started mid-pull, if one was."""
        if self.round is not None:
            await self.round


@asynccontextmanager
async def gate_sync(
    world: CentralWorld,
    running: Running,
    root: Path,
    gate_id: str,
    *,
    trusted: Path | None = None,
    client_type: type[UpstreamClient] = UpstreamClient,
) -> AsyncIterator[UpstreamSync]:
    """Gate ``gate_id``'s ledger, manifest watch and upstream sync (its loops not started).

    ``trusted``: the manifest signer's public key the gate trusts (the central's by default).
    """
    root.mkdir(parents=True)
    ledger = await Ledger.open(root / "ledger.sqlite", gate_id)
    client = client_type(running.url, gate_id, world.keys[gate_id], client=httpx.AsyncClient(), timeout=10.0)
    try:
        manifests = ManifestWatch(
            drop_path=root / "drop.gdm",
            private_path=root / "manifest.active",
            trusted=[read_public(trusted or world.live.signer_pub)],
            ledger=ledger,
            event_id=EVENT_ID,
            checkpoint=Checkpoint("floor"),
        )
        await manifests.start()
        replication = Replication(ledger, world.keys[gate_id], lambda: manifests.current)
        marks = await UpstreamMarks.load(ledger)
        yield UpstreamSync(
            client, replication, marks, manifests, GateClock(), SyncSettings(), download_dir=root
        )
    finally:
        await client.aclose()
        await ledger.close()


async def test_a_gate_added_after_this_gates_manifest_is_learned_not_skipped(tmp_path: Path) -> None:
    world = make_central_world(tmp_path / "central")
    async with serving(world) as running, gate_sync(world, running, tmp_path / "north", "north-1") as sync:
        assert await sync.refresh_manifest()
        first = sync.manifests.current
        assert first is not None
        # The organiser adds a gate; the central builds the next version with it in the roster.
        east_key = write_keypair(world.live.dir / "east-1")[2]
        before = latest(running.central.book)
        (world.live.dir / "event.toml").write_text(event_toml(world.live.now, (*GATES, "east-1")))
        await rebuilt(running.central.book, before)
        east = GateClient(running.http, "east-1", east_key)
        record = east.record("L-0001")
        pushed = await east.push(record)
        assert pushed.json()["results"][0]["status"] == "applied", pushed.text
        # North pulls before its manifest loop has fetched the new version.
        assert sync.manifests.current is first
        assert await sync.pull() == 1
        current = sync.manifests.current
        assert current is not None and current.version > first.version
        assert sync.ledger.known().get(("east-1", east.epoch)) == 1
        facts = await sync.ledger.facts("L-0001")
        assert facts.entries == 1


async def decides(sync: UpstreamSync, payload: str) -> Reason:
    """What the gate decides now for ``payload`` at its checkpoint, from its manifest and its ledger."""
    manifest = sync.manifests.current
    assert manifest is not None
    now = time.time()
    found = identify(payload, manifest, now)
    assert isinstance(found, Ticket), found
    facts = await sync.ledger.facts(found.ticket_id)
    return decide(found, manifest, Checkpoint("floor"), facts, now).reason


async def test_a_gate_pulling_before_its_first_manifest_learns_what_the_central_holds(tmp_path: Path) -> None:
    # A gate's first start: its pull loop and its manifest loop begin together, and the
    # central's first page arrives while the manifest is still on its way.
    world = make_central_world(tmp_path / "central")
    root = tmp_path / "north"
    async with (
        serving(world) as running,
        gate_sync(world, running, root, "north-1", client_type=ManifestRoundMidPull) as sync,
    ):
        south = running.gates["south-1"]
        assert (await south.push(south.record("L-0001"))).json()["results"][0]["status"] == "applied"
        client = sync.client
        assert isinstance(client, ManifestRoundMidPull) and sync.manifests.current is None
        client.sync = sync
        assert await sync.pull() == 1
        await client.finish_round()
        assert sync.manifests.current is not None
        assert sync.ledger.known().get(("south-1", south.epoch)) == 1
        # The ticket south-1 let in is used here too.
        assert await decides(sync, "REF-LIVE-FLOOR-000001") is Reason.ALREADY_USED


async def test_a_gate_refusing_the_centrals_manifest_keeps_its_cursor_until_its_own_arrives(
    tmp_path: Path,
) -> None:
    # The organiser signs with a new key; the gate trusts only it, the central still signs
    # with the old one. The gate has no manifest: nothing it pulls can be judged.
    world = make_central_world(tmp_path / "central")
    root = tmp_path / "north"
    new_pub, new_signer = write_keypair(tmp_path / "new-signer")[1:]
    async with serving(world) as running, gate_sync(world, running, root, "north-1", trusted=new_pub) as sync:
        south = running.gates["south-1"]
        assert (await south.push(south.record("L-0001"))).json()["results"][0]["status"] == "applied"
        with pytest.raises(ManifestRefused):  # the pull loop's error in status
            await sync.pull()
        assert sync.marks.after == 0
        assert sync.manifests.current is None
        # The tech drops the manifest signed with the new key: once it is active, the
        # pull takes up where it stood and learns south's check-in.
        (root / "drop.gdm").write_bytes(world.live.manifest(1, key=new_signer))
        assert await sync.manifests.check()
        assert await sync.pull() == 1
        assert sync.marks.after == 1
        assert sync.ledger.known().get(("south-1", south.epoch)) == 1
        assert await decides(sync, "REF-LIVE-FLOOR-000001") is Reason.ALREADY_USED


async def test_a_manifest_activated_while_the_page_was_judged_is_used_for_it(tmp_path: Path) -> None:
    # The central's newer manifest lists a new gate; the gate's manifest loop activates it
    # while a page holding that gate's check-in is judged under the older roster.
    world = make_central_world(tmp_path / "central")
    async with (
        serving(world) as running,
        gate_sync(world, running, tmp_path / "north", "north-1", client_type=ManifestRoundMidPull) as sync,
    ):
        assert await sync.refresh_manifest()
        first = sync.manifests.current
        assert first is not None
        east_key = write_keypair(world.live.dir / "east-1")[2]
        before = latest(running.central.book)
        (world.live.dir / "event.toml").write_text(event_toml(world.live.now, (*GATES, "east-1")))
        await rebuilt(running.central.book, before)
        east = GateClient(running.http, "east-1", east_key)
        assert (await east.push(east.record("L-0001"))).json()["results"][0]["status"] == "applied"
        client = sync.client
        assert isinstance(client, ManifestRoundMidPull)
        client.sync = sync
        assert await sync.pull() == 1
        await client.finish_round()
        current = sync.manifests.current
        assert current is not None and current.version > first.version
        assert sync.ledger.known().get(("east-1", east.epoch)) == 1
        assert await decides(sync, "REF-LIVE-FLOOR-000001") is Reason.ALREADY_USED


async def test_records_refused_by_a_gate_ahead_of_the_central_do_not_stop_the_pull(tmp_path: Path) -> None:
    # A tech dropped a manifest newer than any the central has, without south-1: the gate
    # holds the newest roster it can know, so south's record is refused for good.
    world = make_central_world(tmp_path / "central")
    root = tmp_path / "north"
    async with serving(world) as running, gate_sync(world, running, root, "north-1") as sync:
        south = running.gates["south-1"]
        assert (await south.push(south.record("L-0002"))).json()["results"][0]["status"] == "applied"
        north_only = world.live.dir / "north-only.toml"  # beside event.toml: the central never reads it
        north_only.write_text(event_toml(world.live.now, ("north-1",)))
        (root / "drop.gdm").write_bytes(world.live.manifest(9, event=load_event(north_only)))
        assert await sync.manifests.check()
        assert await sync.pull() == 0  # the central answers gate_ahead: nothing newer to judge under
        assert sync.marks.after == 1
        assert ("south-1", south.epoch) not in sync.ledger.known()


async def test_records_from_a_gate_the_central_no_longer_lists_do_not_stop_the_pull(tmp_path: Path) -> None:
    world = make_central_world(tmp_path / "central")
    async with serving(world) as running, gate_sync(world, running, tmp_path / "north", "north-1") as sync:
        south = running.gates["south-1"]
        gone = south.record("L-0002")
        assert (await south.push(gone)).json()["results"][0]["status"] == "applied"
        # South leaves the roster; north holds the central's latest manifest, without it.
        before = latest(running.central.book)
        (world.live.dir / "event.toml").write_text(event_toml(world.live.now, ("north-1",)))
        await rebuilt(running.central.book, before)
        assert "south-1" not in (running.central.book.roster() or {})
        assert await sync.refresh_manifest()
        north = running.gates["north-1"]
        kept = north.record("L-0009")
        assert (await north.push(kept)).json()["results"][0]["status"] == "applied"
        # South's record is refused for good (the central has nothing newer), and the
        # cursor moves on past it to north's.
        assert await sync.pull() == 1
        assert sync.marks.after == 2
        assert ("south-1", south.epoch) not in sync.ledger.known()


async def test_the_centrals_manifest_and_a_dropped_one_at_once_end_on_the_newer(tmp_path: Path) -> None:
    # A tech drops version 2 (large: slow to verify) as the sync offers the central's
    # version 3 (small): whichever install finishes last, the gate ends on version 3, in
    # memory and in its private copy, never rolled back to 2.
    world = make_central_world(tmp_path / "central").live
    root = tmp_path / "gate"
    root.mkdir()
    (root / "v1.gdm").write_bytes(world.manifest(1))
    (root / "v3.gdm").write_bytes(world.manifest(3))
    ledger = await Ledger.open(root / "ledger.sqlite", "north-1")
    try:
        manifests = ManifestWatch(
            drop_path=root / "drop.gdm",
            private_path=root / "manifest.active",
            trusted=[read_public(world.signer_pub)],
            ledger=ledger,
            event_id=EVENT_ID,
            checkpoint=Checkpoint("floor"),
        )
        await manifests.start()
        assert await manifests.offer(root / "v1.gdm")
        (root / "drop.gdm").write_bytes(world.manifest(2, tickets_csv=tickets_csv(200_000)))
        await asyncio.gather(manifests.check(), manifests.offer(root / "v3.gdm"), return_exceptions=True)
        current = manifests.current
        assert current is not None and current.version == 3
        assert read_manifest(root / "manifest.active", [read_public(world.signer_pub)]).version == 3
        assert (await ledger.manifest_state()).version == 3
    finally:
        await ledger.close()


async def test_a_delta_too_large_to_apply_is_replaced_by_the_full_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    world = make_central_world(tmp_path / "central")
    async with serving(world) as running, gate_sync(world, running, tmp_path / "north", "north-1") as sync:
        assert await sync.refresh_manifest()
        first = sync.manifests.current
        assert first is not None
        before = latest(running.central.book)
        world.tickets_path.write_text(tickets_csv(12))  # the next version: a delta from the first
        await rebuilt(running.central.book, before)
        monkeypatch.setattr(sync_module, "MAX_DELTA_APPLIED", 1)  # every delta is "too large"
        assert await sync.refresh_manifest()
        current = sync.manifests.current
        assert current is not None and current.version == first.version + 1
        assert len(current) >= 12
        assert "fetching the full manifest instead" in caplog.text  # the delta was offered, and passed over
        # Nothing of either download is left behind in the state directory.
        assert not list((tmp_path / "north").glob("manifest.download*"))
