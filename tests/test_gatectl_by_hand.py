"""What a tech checks by hand with gatectl is what a gate checks, and no file is read whole to say no.

``manifest verify`` is run beside a real gate's manifest watch (a real ledger, the real
drop path) on the same files, and must refuse exactly what the gate refuses, by the same
name. A gigabyte delta is refused from its signed header before it is read. ``decide``
and ``scan`` take a payload that starts with ``-`` after ``--``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gate_daemon.cli.gatectl import main
from gate_daemon.core.manifest import peek_header
from gate_daemon.core.ticket_record import Status
from gate_daemon.core.times import format_instant
from gate_daemon.store.ledger import Ledger
from tests.gate_fixtures import GATE_ID, Clock, drop, make_watch
from tests.gate_process import Launcher, gatectl, query
from tests.live import TICKETS_CSV, make_live_world, write_gate_config
from tests.process_io import LITTLE, bytes_moved
from tests.support import SAT_START, World, replace_ticket

AT = format_instant(SAT_START)  # the gate's clock below
GIGABYTE = 1 << 30


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """Run gatectl in this process: its exit status, what it printed and what it said on stderr."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def verify(capsys: pytest.CaptureFixture[str], file: Path, world: World, *flags: str | Path) -> str:
    """``gatectl manifest verify`` at the gate's time: "ok", or the reason it was refused."""
    code, out, err = run(capsys, "manifest", "verify", file, "--pub", world.signer_pub, "--at", AT, *flags)
    if code == 0:
        assert out.startswith("ok: ") and err == ""
        return "ok"
    assert code == 1 and out == "" and err.count("\n") == 1, (code, out, err)
    assert err.startswith("ManifestRefused: "), err
    return err.split(": ")[1]


async def gate_says(
    world: World,
    state: Path,
    candidate: bytes,
    *,
    held: bytes | None = None,
    event_id: str = "demo-2026",
    zone: str | None = "floor",
    session: str | None = None,
) -> str:
    """What a gate holding ``held`` does with ``candidate`` dropped: activated, kept, or the refusal."""
    state.mkdir()
    ledger = await Ledger.open(state / "ledger.sqlite", GATE_ID)
    try:
        watch = await make_watch(
            world, state, ledger, clock=Clock(SAT_START), zone=zone, session=session, event_id=event_id
        )
        if held is not None:
            drop(watch.drop_path, held)
        await watch.start()
        if held is not None:
            assert watch.current is not None and watch.refusal is None
        drop(watch.drop_path, candidate)
        if await watch.check():
            return "activated"
        return watch.refusal.reason if watch.refusal is not None else "kept"
    finally:
        await ledger.close()


def write(world: World, name: str, data: bytes) -> Path:
    path = world.dir / name
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------ verify as the gate does


async def test_a_same_version_swap_is_rollback_with_same_as_as_at_the_gate(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Version 1 again, with other content: a gate holding version 1 refuses it.
    swap = world.build(replace_ticket(world.tickets, "T-0001", status=Status.CANCELED), version=1)
    assert await gate_says(world, tmp_path / "gate", swap, held=world.manifest_bytes) == "rollback"
    swap_path = write(world, "swap.gdm", swap)
    _, _, err = run(capsys, "manifest", "verify", swap_path, "--pub", world.signer_pub, "--at", AT,
                    "--same-as", world.manifest_path)  # fmt: skip
    assert err == "ManifestRefused: rollback: version 1 reused for different content\n"
    # --min-version knows no digest: it cannot see the swap, which is why --same-as exists.
    assert verify(capsys, swap_path, world, "--min-version", "1") == "ok"


async def test_same_as_refuses_an_older_version_and_passes_a_newer_one_as_the_gate_does(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v2 = world.build(replace_ticket(world.tickets, "T-0001", status=Status.CANCELED), version=2)
    v2_path = write(world, "v2.gdm", v2)
    assert await gate_says(world, tmp_path / "holds-v2", world.manifest_bytes, held=v2) == "rollback"
    assert verify(capsys, world.manifest_path, world, "--same-as", v2_path) == "rollback"
    assert await gate_says(world, tmp_path / "holds-v1", v2, held=world.manifest_bytes) == "activated"
    assert verify(capsys, v2_path, world, "--same-as", world.manifest_path) == "ok"


async def test_same_as_the_very_manifest_held_passes_and_says_nothing_changes(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    held = world.manifest_bytes
    assert await gate_says(world, tmp_path / "gate", held, held=held) == "kept"
    copy = write(world, "copy.gdm", held)  # another copy of the same file, as a tech would have it
    code, out, _ = run(capsys, "manifest", "verify", copy, "--pub", world.signer_pub, "--at", AT,
                       "--same-as", world.manifest_path)  # fmt: skip
    assert code == 0
    assert out.splitlines()[1] == (
        f"note: the very manifest of {world.manifest_path}: a gate holding it keeps it, nothing changes"
    )


@pytest.mark.parametrize(
    ("gate", "flags", "reason"),
    [
        ({"event_id": "other-2026"}, ("--event", "other-2026"), "wrong_event"),
        ({"zone": "pit"}, ("--zone", "pit"), "wrong_checkpoint"),
        ({"session": "mon"}, ("--session", "mon"), "wrong_checkpoint"),
        (
            {"event_id": "demo-2026", "zone": "balcony", "session": "sun"},
            ("--event", "demo-2026", "--zone", "balcony", "--session", "sun"),
            "activated",
        ),
    ],
)
async def test_event_zone_and_session_are_checked_as_the_gate_checks_them(
    world: World,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    gate: dict[str, str],
    flags: tuple[str, ...],
    reason: str,
) -> None:
    assert await gate_says(world, tmp_path / "gate", world.manifest_bytes, **gate) == reason
    assert verify(capsys, world.manifest_path, world, *flags) == ("ok" if reason == "activated" else reason)


def test_same_as_a_file_that_cannot_be_trusted_is_an_error_of_its_own(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = write(world, "junk.gdm", b"not a manifest, though long enough to have magic bytes")
    code, _, err = run(capsys, "manifest", "verify", world.manifest_path, "--pub", world.signer_pub,
                       "--same-as", junk)  # fmt: skip
    assert code == 1
    assert err == (
        f"GateError: --same-as {junk} cannot be used: "
        "malformed: not a gate-daemon manifest (bad magic bytes)\n"
    )


# ------------------------------------------------------------------ a gigabyte delta


def gigabyte_delta(world: World) -> tuple[Path, int]:
    """A good delta from version 1 to 2 made a gigabyte long with zeros (a sparse file: no disk),
    and the size of the changes its signed header declares."""
    data = world.build(
        replace_ticket(world.tickets, "T-0001", status=Status.CANCELED), version=2, base=world.manifest
    )
    path = write(world, "delta-1-2.gdm", data)
    os.truncate(path, GIGABYTE)
    declared = peek_header(data)[1].changes_size
    assert declared is not None
    return path, declared


def test_apply_refuses_a_gigabyte_delta_from_its_signed_header_before_reading_it(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    delta, declared = gigabyte_delta(world)
    out = world.dir / "v2.gdm"
    read_before, written_before = bytes_moved()
    code, _, err = run(capsys, "manifest", "apply", delta, "--base", world.manifest_path,
                       "--pub", world.signer_pub, "-o", out)  # fmt: skip
    read, written = bytes_moved()
    assert code == 1
    assert err.startswith("ManifestRefused: tampered: changes is ")
    assert err.endswith(f" bytes, the signed header says {declared}\n")
    assert read - read_before < LITTLE and written - written_before < LITTLE
    assert not out.exists()
    assert sorted(p.name for p in world.dir.iterdir() if p.name.startswith(".")) == []


def test_verify_refuses_a_gigabyte_delta_before_reading_it(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    delta, _ = gigabyte_delta(world)
    read_before, _ = bytes_moved()
    assert verify(capsys, delta, world, "--base", world.manifest_path) == "tampered"
    assert bytes_moved()[0] - read_before < LITTLE


# ------------------------------------------------------------------ payloads that start with '-'


def test_decide_takes_a_payload_after_double_dash(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    tickets = replace_ticket(world.tickets, "T-0007", order_id="-O-105")  # a legacy order code with a dash
    manifest = write(world, "dash.gdm", world.build(tickets))
    base = ["decide", "--manifest", str(manifest), "--pub", str(world.signer_pub), "--at", AT]
    code, out, _ = run(capsys, *base, "--", "-O-105-C2")
    assert code == 0
    shown = json.loads(out)
    assert (shown["outcome"], shown["ticket_id"]) == ("allow", "T-0007")
    # Without '--' it reads as an option: a usage error whose usage line says what to do.
    with pytest.raises(SystemExit) as caught:
        main([*base, "-O-105-C2"])
    assert caught.value.code == 2
    assert "[--] PAYLOAD" in capsys.readouterr().err


def test_scan_takes_a_payload_after_double_dash(tmp_path: Path, launch: Launcher) -> None:
    world = make_live_world(tmp_path / "world")
    tickets = TICKETS_CSV + "L-0011,-A7,1,completed,now,floor,1,\n"
    (tmp_path / "drop.gdm").write_bytes(world.manifest(1, tickets_csv=tickets))
    gate = launch(write_gate_config(tmp_path / "gate.toml", world, signals="none"))
    done = gatectl("scan", "--socket", gate.socket_path, "--", "-A7-1")
    assert done.returncode == 0, done.stderr
    decision = json.loads(done.stdout)
    assert (decision["outcome"], decision["ticket_id"]) == ("allow", "L-0011")
    again = gatectl("scan", "--socket", gate.socket_path, "--", "-A7-1")
    assert again.returncode == 4 and json.loads(again.stdout)["outcome"] == "already_used"
    unmarked = gatectl("scan", "--socket", gate.socket_path, "-A7-1")
    assert unmarked.returncode == 2 and "[--] PAYLOAD" in unmarked.stderr
    assert query(gate.ledger_path, "SELECT COUNT(*) FROM scans") == [(2,)]
