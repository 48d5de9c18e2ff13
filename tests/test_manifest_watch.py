"""Manifest hot-swap: a dropped file is copied, verified and only then activated; the old one is kept."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from gate_daemon.core.keys import SecretKey
from gate_daemon.core.manifest import peek_header
from gate_daemon.core.reasons import Reason
from gate_daemon.core.ticket_record import Status
from gate_daemon.errors import ManifestRefused
from gate_daemon.gate.manifest_watch import ManifestWatch
from gate_daemon.provision.event import load_event
from gate_daemon.store.ledger import Ledger
from gate_daemon.store.manifest_file import install_manifest
from tests.gate_fixtures import GATE_ID, Clock, drop, gate_rig, make_watch
from tests.process_io import LITTLE, bytes_moved
from tests.support import EVENT_TOML, ISSUED, SAT_START, World, flip, replace_ticket

REF_T0001 = "REF-SAT-FLOOR-0001"


@dataclass
class Watched:
    watch: ManifestWatch
    ledger: Ledger
    clock: Clock

    @property
    def private(self) -> bytes | None:
        path = self.watch.private_path
        return path.read_bytes() if path.exists() else None

    def drop(self, data: bytes, size: int | None = None) -> None:
        """Drop ``data``; with ``size``, extended with zeros to that size (a sparse file: no disk)."""
        drop(self.watch.drop_path, data)
        if size is not None:
            os.truncate(self.watch.drop_path, size)


@asynccontextmanager
async def watching(
    world: World, state: Path, *, zone: str | None = "floor", session: str | None = None, start: bool = True
) -> AsyncIterator[Watched]:
    """A ledger in ``state`` and a watch over ``state/drop.gdm``; the ledger closed afterwards."""
    state.mkdir(parents=True, exist_ok=True)
    ledger = await Ledger.open(state / "ledger.sqlite", GATE_ID)
    clock = Clock(SAT_START)
    try:
        watch = await make_watch(world, state, ledger, clock=clock, zone=zone, session=session)
        if start:
            await watch.start()
        yield Watched(watch, ledger, clock)
    finally:
        await ledger.close()


def v2_canceling_t0001(world: World) -> bytes:
    return world.build(replace_ticket(world.tickets, "T-0001", status=Status.CANCELED), version=2)


async def refused_with(w: Watched, data: bytes, reason: str, *, size: int | None = None) -> None:
    """Drop ``data`` (extended to ``size``); check it is refused for ``reason``, nothing else changed."""
    before = (w.watch.current, w.private, await w.ledger.manifest_state())
    counted = (await w.ledger.counters()).get(f"manifest_refused:{reason}", 0)
    w.drop(data, size)
    assert await w.watch.check() is False
    assert w.watch.refusal is not None
    assert w.watch.refusal.reason == reason, w.watch.refusal
    assert w.watch.refusal.at == w.clock.now
    assert (w.watch.current, w.private, await w.ledger.manifest_state()) == before
    assert (await w.ledger.counters())[f"manifest_refused:{reason}"] == counted + 1
    # No temporary copy is left beside the private one.
    assert sorted(p.name for p in w.watch.private_path.parent.glob(".manifest.active*")) == []


async def test_without_a_drop_file_there_is_no_manifest(world: World, tmp_path: Path) -> None:
    async with watching(world, tmp_path) as w:
        assert w.watch.current is None
        assert await w.watch.check() is False
        assert w.watch.refusal is None
        assert w.private is None
        assert await w.ledger.counters() == {}


async def test_drops_activate_newer_versions_and_refuse_a_rollback(world: World, tmp_path: Path) -> None:
    async with watching(world, tmp_path) as w:
        v2 = v2_canceling_t0001(world)
        w.drop(world.manifest_bytes)
        assert await w.watch.check() is True
        assert w.watch.current is not None and w.watch.current.version == 1
        assert w.private == world.manifest_bytes
        assert (await w.ledger.manifest_state()).version == 1
        assert await w.watch.check() is False  # the same file again: nothing to do

        w.clock.now += 60
        w.drop(v2)
        assert await w.watch.check() is True
        assert w.watch.current.version == 2
        assert w.watch.activated_at == w.clock.now
        state = await w.ledger.manifest_state()
        assert (state.version, state.body_sha256, state.issued_at) == (
            2,
            w.watch.current.body_sha256,
            ISSUED,
        )
        assert w.private == v2

        await refused_with(w, world.manifest_bytes, "rollback")
        assert w.watch.current.version == 2
        counters = await w.ledger.counters()
        assert counters["manifest_refused:rollback"] == 1
        assert counters["manifest_activations"] == 2

        # The active version dropped again is no change (and no refusal).
        w.drop(v2)
        assert await w.watch.check() is False
        assert w.watch.current.version == 2


async def test_a_version_reused_for_other_content_is_a_rollback(world: World, tmp_path: Path) -> None:
    async with watching(world, tmp_path) as w:
        w.drop(world.manifest_bytes)
        assert await w.watch.check()
        other_v1 = world.build(replace_ticket(world.tickets, "T-0002", status=Status.CANCELED), version=1)
        await refused_with(w, other_v1, "rollback")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda data: flip(data, len(data) - 5), "tampered"),  # a byte of the ticket body
        (lambda data: flip(data, 40), "bad_signature"),  # a byte of the signed header
        (lambda data: data[:-10], "tampered"),  # cut short (a partial copy)
        (lambda data: b"", "malformed"),
        (lambda data: b"<html>503 Service Unavailable</html>", "malformed"),
    ],
    ids=["body-byte", "header-byte", "truncated", "empty", "html"],
)
async def test_a_damaged_manifest_is_refused_and_the_old_one_kept(
    world: World, tmp_path: Path, damage, reason: str
) -> None:
    async with watching(world, tmp_path) as w:
        w.drop(world.manifest_bytes)
        assert await w.watch.check()
        await refused_with(w, damage(v2_canceling_t0001(world)), reason)
        assert w.watch.current.version == 1


async def test_an_expired_manifest_is_refused(world: World, tmp_path: Path) -> None:
    async with watching(world, tmp_path) as w:
        w.drop(world.manifest_bytes)
        assert await w.watch.check()
        stale = world.build(version=2, expires_at=int(SAT_START) - 1)
        await refused_with(w, stale, "expired")


async def test_a_manifest_signed_by_an_untrusted_key_is_refused(world: World, tmp_path: Path) -> None:
    async with watching(world, tmp_path) as w:
        await refused_with(w, world.build(version=2, key=SecretKey.generate()), "unknown_key")
        assert w.watch.current is None


async def test_a_manifest_for_another_event_is_refused_before_it_replaces_the_copy(
    world: World, tmp_path: Path
) -> None:
    other_toml = world.dir / "other.toml"
    other_toml.write_text(EVENT_TOML.replace('id = "demo-2026"', 'id = "other-2026"'))
    other = world.build(event=load_event(other_toml), version=5)
    async with watching(world, tmp_path) as w:
        w.drop(world.manifest_bytes)
        assert await w.watch.check()
        await refused_with(w, other, "wrong_event")
        assert "other-2026" in w.watch.refusal.detail
        assert w.private == world.manifest_bytes


@pytest.mark.parametrize(("zone", "session"), [("vip", None), ("floor", "fri")])
async def test_a_manifest_that_does_not_know_the_gates_zone_is_refused(
    world: World, tmp_path: Path, zone: str, session: str | None
) -> None:
    async with watching(world, tmp_path, zone=zone, session=session) as w:
        await refused_with(w, world.manifest_bytes, "wrong_checkpoint")
        assert w.watch.current is None
        assert w.private is None
        assert (zone if session is None else session) in w.watch.refusal.detail


async def test_a_drop_path_that_is_not_a_regular_file_is_refused_without_hanging(
    world: World, tmp_path: Path
) -> None:
    async with watching(world, tmp_path) as w:
        os.mkfifo(w.watch.drop_path)  # a FIFO would block a plain open() forever
        assert await asyncio.wait_for(w.watch.check(), 5) is False
        assert w.watch.refusal is not None and w.watch.refusal.reason == "unreadable"
        # Unreadable is looked at again at every poll (it may be fixed in place), but said
        # and counted once.
        assert await asyncio.wait_for(w.watch.check(), 5) is False
        assert (await w.ledger.counters())["manifest_refused:unreadable"] == 1
        # Once it is a real manifest, it is taken.
        w.watch.drop_path.unlink()
        w.drop(world.manifest_bytes)
        assert await w.watch.check()


async def test_a_manifest_is_used_even_when_the_ledger_cannot_record_it(world: World, tmp_path: Path) -> None:
    async with watching(world, tmp_path) as w:
        w.drop(world.manifest_bytes)
        assert await w.watch.check()
        await w.ledger._db.execute("PRAGMA busy_timeout = 50")
        other = sqlite3.connect(tmp_path / "ledger.sqlite", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another writer holds the file: recording fails
        try:
            w.drop(world.build(version=2))
            assert await w.watch.check()
            assert w.watch.current is not None and w.watch.current.version == 2
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert (await w.ledger.manifest_state()).version == 1
    # The next start opens the installed copy and records its version then.
    async with watching(world, tmp_path) as w:
        assert w.watch.current is not None and w.watch.current.version == 2
        assert (await w.ledger.manifest_state()).version == 2


async def test_copies_left_by_a_crash_mid_install_are_swept_at_start(world: World, tmp_path: Path) -> None:
    stray = tmp_path / ".manifest.active.k3j2h1"
    stray.write_bytes(b"half a manifest")
    async with watching(world, tmp_path) as w:
        assert not stray.exists()
        assert w.watch.private_path.parent == tmp_path


async def test_a_restart_loads_the_private_copy(world: World, tmp_path: Path) -> None:
    v2 = v2_canceling_t0001(world)
    async with watching(world, tmp_path) as w:
        w.drop(v2)
        assert await w.watch.check()
        activated = w.watch.activated_at
    (tmp_path / "drop.gdm").unlink()
    async with watching(world, tmp_path) as w:
        assert w.watch.current is not None
        assert w.watch.current.version == 2
        assert w.watch.activated_at == activated
        assert w.watch.refusal is None
        assert (await w.ledger.counters())["manifest_activations"] == 1  # nothing activated anew


async def test_a_restart_prefers_a_newer_drop_file(world: World, tmp_path: Path) -> None:
    async with watching(world, tmp_path) as w:
        w.drop(world.manifest_bytes)
        assert await w.watch.check()
    drop(tmp_path / "drop.gdm", v2_canceling_t0001(world))
    async with watching(world, tmp_path) as w:
        assert w.watch.current is not None and w.watch.current.version == 2


async def test_a_restart_with_a_private_copy_older_than_the_ledger_remembers_is_refused(
    world: World, tmp_path: Path
) -> None:
    async with watching(world, tmp_path) as w:
        w.drop(v2_canceling_t0001(world))
        assert await w.watch.check()
    (tmp_path / "drop.gdm").unlink()
    # Someone puts the old version back where the gate keeps its own copy.
    (tmp_path / "manifest.active").write_bytes(world.manifest_bytes)
    async with watching(world, tmp_path) as w:
        assert w.watch.current is None
        assert (await w.ledger.manifest_state()).version == 2
        # Status says why the gate has no manifest, and the refusal is counted.
        assert w.watch.refusal is not None and w.watch.refusal.reason == "rollback"
        assert "own copy" in w.watch.refusal.detail
        assert (await w.ledger.counters())["manifest_refused:rollback"] == 1
        # A good newer manifest brings the gate back.
        w.drop(world.build(version=3))
        assert await w.watch.check()
        assert w.watch.current.version == 3


async def test_run_polls_the_drop_file(world: World, tmp_path: Path) -> None:
    async with watching(world, tmp_path) as w:
        task = asyncio.create_task(w.watch.run(0.01))
        try:
            w.drop(world.manifest_bytes)
            for _ in range(500):
                if w.watch.current is not None:
                    break
                await asyncio.sleep(0.01)
            assert w.watch.current is not None and w.watch.current.version == 1
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_a_scan_in_flight_finishes_on_the_manifest_it_started_with(
    world: World, tmp_path: Path
) -> None:
    async with gate_rig(world, tmp_path) as rig:
        first = asyncio.create_task(rig.gate.scan(REF_T0001, device="test"))
        await asyncio.sleep(0)  # the scan has taken the active manifest and waits on the ledger
        assert not first.done()
        drop(rig.drop_path, v2_canceling_t0001(world))
        assert await rig.watch.check() is True
        second = await rig.gate.scan(REF_T0001, device="test")
        assert (await first).decision.reason is Reason.OK  # v1: a good ticket
        assert second.decision.reason is Reason.CANCELED  # v2 canceled it (not merely already used)
        assert rig.rows("SELECT reason, manifest_version FROM scans ORDER BY hlc") == [
            ("ok", 1),
            ("canceled", 2),
        ]


async def test_a_gigabyte_drop_is_refused_by_its_signed_header_before_a_byte_is_copied(
    world: World, tmp_path: Path
) -> None:
    gigabyte = 1 << 30
    async with watching(world, tmp_path) as w:
        w.drop(world.manifest_bytes)
        assert await w.watch.check() is True
        v2 = v2_canceling_t0001(world)
        body = peek_header(v2)[1].body_size
        read_before, written_before = bytes_moved()
        # A good version 2 made a gigabyte long with zeros after its body.
        await refused_with(w, v2, "tampered", size=gigabyte)
        read, written = bytes_moved()
        assert w.watch.refusal is not None
        assert w.watch.refusal.detail == (
            f"body is {gigabyte - (len(v2) - body)} bytes, the signed header says {body}"
        )
        # Neither copied into the state directory nor read: the header said enough.
        assert written - written_before < LITTLE
        assert read - read_before < LITTLE
        big = [p.name for p in tmp_path.rglob("*") if p.is_file() and p.stat().st_size >= gigabyte]
        assert big == ["drop.gdm"]
        assert w.watch.current is not None and w.watch.current.version == 1


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("untrusted key", "unknown_key"),
        ("header byte flipped", "bad_signature"),
        ("not a manifest", "malformed"),
    ],
)
async def test_a_gigabyte_drop_is_refused_by_the_name_its_header_earns(
    world: World, tmp_path: Path, damage: str, reason: str
) -> None:
    """The header is judged first, as when the file was read whole: the same names, no copy."""
    data = {
        "untrusted key": world.build(version=2, key=SecretKey.generate()),
        "header byte flipped": flip(world.build(version=2), 40),
        "not a manifest": b"GDMANIF0" + world.build(version=2)[8:],
    }[damage]
    async with watching(world, tmp_path) as w:
        w.drop(world.manifest_bytes)
        assert await w.watch.check() is True
        _, written_before = bytes_moved()
        await refused_with(w, data, reason, size=1 << 30)
        assert bytes_moved()[1] - written_before < LITTLE


def test_install_manifest_leaves_the_destination_alone_when_refused(world: World, tmp_path: Path) -> None:
    folder = tmp_path / "gate"
    folder.mkdir()
    source = folder / "incoming.gdm"
    dest = folder / "active.gdm"
    dest.write_bytes(b"the gate's current copy")
    source.write_bytes(flip(world.manifest_bytes, len(world.manifest_bytes) - 1))
    with pytest.raises(ManifestRefused) as caught:
        install_manifest(source, dest, world.trusted, now=SAT_START)
    assert caught.value.reason == "tampered"
    assert dest.read_bytes() == b"the gate's current copy"
    assert sorted(p.name for p in folder.iterdir()) == ["active.gdm", "incoming.gdm"]
    source.write_bytes(world.manifest_bytes)
    manifest = install_manifest(source, dest, world.trusted, now=SAT_START)
    assert manifest.version == 1
    assert dest.read_bytes() == world.manifest_bytes
    # The copy is what is used: changing the dropped file afterwards changes nothing.
    source.write_bytes(b"x" * len(world.manifest_bytes))
    assert manifest.find_code(REF_T0001) is not None


async def test_a_copy_installed_but_not_yet_recorded_is_recorded_at_start(
    world: World, tmp_path: Path
) -> None:
    async with watching(world, tmp_path) as w:
        w.drop(world.manifest_bytes)
        assert await w.watch.check()
    (tmp_path / "drop.gdm").unlink()
    # A kill between the rename of the copy and the ledger's record of it leaves this state.
    (tmp_path / "manifest.active").write_bytes(world.build(version=2))
    async with watching(world, tmp_path) as w:
        assert w.watch.current is not None and w.watch.current.version == 2
        assert (await w.ledger.manifest_state()).version == 2
    # So losing the copy later cannot bring version 1 back.
    (tmp_path / "manifest.active").unlink()
    async with watching(world, tmp_path) as w:
        w.drop(world.manifest_bytes)
        assert not await w.watch.check()
        assert w.watch.refusal is not None and w.watch.refusal.reason == "rollback"
