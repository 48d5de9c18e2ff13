"""Files and arguments that are not what they claim: named errors, never a hang or a traceback."""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

import pytest

from gate_daemon.cli.gatectl import main
from gate_daemon.core.decision import Checkpoint, evaluate
from gate_daemon.core.delta import apply_delta, plan_delta
from gate_daemon.core.manifest import MAGIC, open_manifest, peek_header
from gate_daemon.core.reasons import Reason
from gate_daemon.core.ticket_record import TicketEntry
from gate_daemon.core.tokens import code_hash
from gate_daemon.errors import GateError, KeyFileError, ManifestRefused, SourceError
from gate_daemon.files import read_regular, write_atomic
from gate_daemon.provision.event import load_event
from gate_daemon.provision.keyfiles import read_public, read_secret
from gate_daemon.provision.tickets import load_tickets
from gate_daemon.store.manifest_file import read_manifest
from tests.support import SAT_START, World

# ------------------------------------------------------------------ not regular files


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


def test_a_fifo_is_refused_everywhere_without_blocking(fifo: Path, world: World) -> None:
    with pytest.raises(KeyFileError, match="not a regular file"):
        read_public(fifo)
    with pytest.raises(KeyFileError, match="not a regular file"):
        read_secret(fifo)
    with pytest.raises(SourceError, match="not a regular file"):
        load_tickets(fifo, world.event)
    with pytest.raises(SourceError, match="not a regular file"):
        load_event(fifo)
    with pytest.raises(ManifestRefused, match="not a regular file") as refused:
        read_manifest(fifo, world.trusted)
    assert refused.value.reason == "unreadable"


def test_a_device_or_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="not a regular file"):
        read_public(Path("/dev/zero"))  # would never end
    with pytest.raises(KeyFileError, match="not a regular file"):
        read_public(tmp_path)


def test_reads_are_bounded(tmp_path: Path) -> None:
    big = tmp_path / "big.pub"
    big.write_text("ed25519:" + "A" * 5000)
    with pytest.raises(KeyFileError, match="larger than 4096 bytes"):
        read_public(big)
    with pytest.raises(OSError, match="larger than 10 bytes"):
        read_regular(big, 10)


# ------------------------------------------------------------------ writes


def test_write_atomic_replaces_only_regular_files(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_text("precious")
    link = tmp_path / "out.gdm"
    link.symlink_to(target)
    with pytest.raises(GateError, match="not a regular file"):
        write_atomic(link, b"new")
    assert target.read_text() == "precious" and link.is_symlink()
    plain = tmp_path / "plain.gdm"
    write_atomic(plain, b"one", bytearray(b"two"), memoryview(b"three"))
    assert plain.read_bytes() == b"onetwothree"
    assert oct(plain.stat().st_mode & 0o777) == "0o644"


def test_write_atomic_leaves_nothing_behind_when_a_part_fails(tmp_path: Path) -> None:
    gone = memoryview(b"x")
    gone.release()
    out = tmp_path / "out.gdm"
    with pytest.raises(ValueError, match="released"):
        write_atomic(out, b"first", gone)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ unverified headers


def unsigned_file(header: bytes) -> bytes:
    """A manifest-shaped file with ``header`` and a zero signature: only peek_header reads it."""
    return struct.pack("<8sc4sI", MAGIC, b"F", b"\0\0\0\0", len(header)) + header + bytes(64)


@pytest.mark.parametrize(
    "header",
    [
        b"[" * 200_000,
        b'{"event": {"id": "\\ud800"}}',
    ],
    ids=["nested", "lone-surrogate"],
)
def test_peek_header_names_hostile_json(header: bytes) -> None:
    with pytest.raises(ManifestRefused) as refused:
        peek_header(unsigned_file(header))
    assert refused.value.reason == "malformed"


def test_peek_header_refuses_times_past_2106(world: World) -> None:
    _, header = peek_header(world.manifest_bytes)
    doc = dict(header.raw, expires_at=10**30)
    with pytest.raises(ManifestRefused, match="after 2106"):
        peek_header(unsigned_file(json.dumps(doc).encode()))


def test_gatectl_show_of_a_hostile_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "evil.gdm"
    path.write_bytes(unsigned_file(b"[" * 200_000))
    assert main(["manifest", "show", str(path)]) == 1
    err = capsys.readouterr().err
    assert err == "ManifestRefused: malformed: header: nested too deeply\n"


# ------------------------------------------------------------------ arguments


def test_undecodable_argument_text_is_named(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    bad = os.fsdecode(b"\xff")
    code = main(["ticket", "issue", "--key", str(world.issuer_key), "--event", bad, "--ticket-id", "T"])
    assert code == 1
    assert capsys.readouterr().err == "GateError: --event '\\udcff' is not valid text\n"


def test_decide_from_a_closed_stdin(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", None)
    code = main(["decide", "-", "--manifest", str(world.manifest_path), "--pub", str(world.signer_pub)])
    assert code == 1
    assert "no standard input" in capsys.readouterr().err


def test_bench_in_a_folder_it_cannot_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main(["bench", "core", "--sizes", "100", "--rounds", "1", "--workdir", str(blocker / "sub")])
    assert code == 1
    assert capsys.readouterr().err.startswith("GateError: --workdir ")


# ------------------------------------------------------------------ tombstones across versions


def test_a_tombstone_code_never_shadows_a_new_order_seat_text(world: World) -> None:
    """v1: T-A has code K-P; v2 drops T-A and lists T-B with order K, seat P (text "K-P")."""
    text = "K7Q2M9X4-P8R6Z3W5"
    order, seat = text.split("-")
    v1_tickets = [TicketEntry("T-A", code_hash=code_hash(world.event.event_id, text))]
    v1 = open_manifest(world.build(v1_tickets, version=1), world.trusted)
    v2_tickets = [TicketEntry("T-B", order_id=order, seat=seat)]
    plan = plan_delta(v1.event_id, v1.entries(), v2_tickets, set(), set())
    [tomb] = [e for e in plan.entries if e.ticket_id == "T-A"]
    assert tomb.code_hash is None
    delta = world.build(v2_tickets, version=2, base=v1)
    v2 = open_manifest(apply_delta(v1, delta, world.trusted), world.trusted)
    decision = evaluate(text, v2, Checkpoint(), SAT_START)
    assert (decision.reason, decision.ticket_id) == (Reason.OK, "T-B")
