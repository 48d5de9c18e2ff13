"""gatectl end to end, in-process: keygen, manifest build/verify/show/apply, decide and its exit codes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gate_daemon.cli.gatectl import main
from gate_daemon.core.manifest import open_manifest
from gate_daemon.provision.keyfiles import read_public, read_secret
from gate_daemon.store.manifest_file import read_manifest
from tests.support import CLI_EXPIRES, TICKETS_CSV, World, flip

AT_SAT = "2026-11-21T19:00:00Z"


@dataclass
class Result:
    """What one gatectl run returned and printed."""

    code: int
    out: str
    err: str


Run = Callable[..., Result]


@pytest.fixture
def gatectl(capsys: pytest.CaptureFixture[str]) -> Run:
    """Run gatectl in this process and capture what it prints."""

    def run(*args: str | Path) -> Result:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def build(gatectl: Run, world: World, out: Path, *extra: str | Path, version: int = 1) -> Result:
    return gatectl(
        "manifest",
        "build",
        "--event",
        world.event_path,
        "--tickets",
        world.tickets_path,
        "--key",
        world.signer_key,
        "--version",
        str(version),
        "--expires",
        CLI_EXPIRES,
        "-o",
        out,
        *extra,
    )


def hidden(folder: Path) -> list[str]:
    """Dot files in ``folder``: the atomic writer's temp files (the fixtures make none)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _refused(result: Result, reason: str) -> None:
    assert result.code == 1
    assert result.err.startswith(f"ManifestRefused: {reason}: "), result.err
    assert result.err.count("\n") == 1
    assert result.out == ""


@pytest.fixture
def v1(gatectl: Run, world: World) -> Path:
    """Manifest version 1 built by gatectl."""
    out = world.dir / "cli-v1.gdm"
    result = build(gatectl, world, out)
    assert result.code == 0, result.err
    assert result.out == (
        f"wrote {out}: demo-2026 version 1, 11 tickets, {out.stat().st_size} bytes, "
        f"signed by {world.signer.public.kid}, expires {CLI_EXPIRES}\n"
    )
    assert result.err == ""
    return out


@pytest.fixture
def delta(gatectl: Run, world: World, v1: Path) -> Path:
    """A delta from v1 to v2 built by gatectl: T-0009's row gone (kept, canceled), T-0003 paid, T-0300 new."""
    world.tickets_path.write_text(
        TICKETS_CSV.replace("T-0009,,,completed,,,1,\n", "")
        .replace("T-0003,O-101,B1,pending", "T-0003,O-101,B1,completed")
        .replace("T-SUN,", "T-0300,O-300,Z9,completed,sun,floor,1,\nT-SUN,")
    )
    out = world.dir / "cli-v1-v2.gdm"
    result = build(gatectl, world, out, "--base", v1, version=2)
    assert result.code == 0, result.err
    # 10 rows left, one new, and T-0009 kept as canceled.
    assert f"wrote {out}: demo-2026 delta 1 -> 2, 12 tickets, " in result.out
    assert result.out.rstrip().endswith(f"expires {CLI_EXPIRES}")
    assert result.err == (
        f"note: 1 tickets of version 1 are not in {world.tickets_path}; "
        "they stay in the manifest as canceled\n"
    )
    return out


# ------------------------------------------------------------------ keygen


def test_keygen_writes_both_files_and_prints_the_key_id(gatectl: Run, tmp_path: Path) -> None:
    result = gatectl("keygen", "gate-7", "--dir", tmp_path)
    assert result.code == 0
    secret, public = tmp_path / "gate-7.key", tmp_path / "gate-7.pub"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    kid = read_public(public).kid
    assert result.out.splitlines()[0] == f"key id {kid}"
    assert read_secret(secret).public.kid == kid


def test_keygen_refuses_to_overwrite_without_force(gatectl: Run, tmp_path: Path) -> None:
    first = gatectl("keygen", "gate-7", "--dir", tmp_path)
    before = (tmp_path / "gate-7.key").read_text()
    again = gatectl("keygen", "gate-7", "--dir", tmp_path)
    assert again.code == 1
    assert again.err.startswith("KeyFileError: ") and "already exists" in again.err
    assert again.err.count("\n") == 1
    assert (tmp_path / "gate-7.key").read_text() == before
    forced = gatectl("keygen", "gate-7", "--dir", tmp_path, "--force")
    assert forced.code == 0
    assert forced.out.splitlines()[0] != first.out.splitlines()[0]
    assert (tmp_path / "gate-7.key").read_text() != before


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../escape", ".hidden", "tab\there"])
def test_keygen_refuses_names_that_are_not_plain_file_names(gatectl: Run, tmp_path: Path, name: str) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    result = gatectl("keygen", name, "--dir", keys)
    assert result.code == 1
    assert result.err.startswith(f"GateError: key name {name!r} must be a plain file name")
    assert result.err.count("\n") == 1
    assert result.out == ""
    assert list(tmp_path.rglob("*")) == [keys]  # nothing written anywhere, no folder made


def test_keygen_force_does_not_write_through_a_symlinked_pub(gatectl: Run, tmp_path: Path) -> None:
    """Someone swapped gate-7.pub for a link to a file they want overwritten."""
    assert gatectl("keygen", "gate-7", "--dir", tmp_path).code == 0
    victim = tmp_path / "elsewhere" / "authorized_keys"
    victim.parent.mkdir()
    victim.write_text("precious\n")
    pub = tmp_path / "gate-7.pub"
    pub.unlink()
    pub.symlink_to(victim)
    secret_before = (tmp_path / "gate-7.key").read_text()
    result = gatectl("keygen", "gate-7", "--dir", tmp_path, "--force")
    assert result.code == 1
    assert result.err == f"KeyFileError: {pub} is a symbolic link; refusing to write a key through it\n"
    assert result.out == ""  # no key id printed
    assert victim.read_text() == "precious\n"
    assert pub.is_symlink()
    # Nothing was written: the old secret key is still there, not replaced by a key
    # whose public half never reached the disk.
    assert (tmp_path / "gate-7.key").read_text() == secret_before


def test_keygen_force_does_not_write_through_a_symlinked_secret(gatectl: Run, tmp_path: Path) -> None:
    assert gatectl("keygen", "gate-7", "--dir", tmp_path).code == 0
    public_before = (tmp_path / "gate-7.pub").read_text()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    secret = tmp_path / "gate-7.key"
    secret.unlink()
    secret.symlink_to(victim)
    result = gatectl("keygen", "gate-7", "--dir", tmp_path, "--force")
    assert result.code == 1
    assert result.err == f"KeyFileError: {secret} is a symbolic link; refusing to write a key through it\n"
    assert victim.read_text() == "precious\n"
    assert secret.is_symlink()
    assert (tmp_path / "gate-7.pub").read_text() == public_before


@pytest.mark.parametrize("which", ["key", "pub"])
def test_keygen_without_force_refuses_an_existing_link_even_a_dangling_one(
    gatectl: Run, tmp_path: Path, which: str
) -> None:
    target = tmp_path / "not-yet-there"
    (tmp_path / f"gate-7.{which}").symlink_to(target)
    result = gatectl("keygen", "gate-7", "--dir", tmp_path)
    assert result.code == 1
    assert result.err.startswith("KeyFileError: ") and "is a symbolic link" in result.err
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"gate-7.{which}"]


def test_build_with_a_public_key_as_signing_key_says_so(gatectl: Run, world: World) -> None:
    """The .pub is world-readable: the complaint is that it is no secret key, not its mode."""
    out = world.dir / "never.gdm"
    result = gatectl(
        "manifest", "build", "--event", world.event_path, "--tickets", world.tickets_path,
        "--key", world.signer_pub, "--version", "1", "--expires", CLI_EXPIRES, "-o", out,
    )  # fmt: skip
    assert result.code == 1
    assert result.err.startswith(f"KeyFileError: {world.signer_pub}: expected a secret key")
    assert "chmod" not in result.err
    assert not out.exists()


def test_build_refuses_an_open_signing_key(gatectl: Run, world: World) -> None:
    world.signer_key.chmod(0o644)
    out = world.dir / "never.gdm"
    result = build(gatectl, world, out)
    assert result.code == 1
    assert result.err.startswith("KeyFileError: ") and "chmod 600" in result.err
    assert not out.exists()


def test_build_refuses_an_expiry_in_the_past(gatectl: Run, world: World) -> None:
    out = world.dir / "never.gdm"
    result = gatectl(
        "manifest", "build", "--event", world.event_path, "--tickets", world.tickets_path,
        "--key", world.signer_key, "--version", "1", "--expires", "2020-01-01T00:00:00Z", "-o", out,
    )  # fmt: skip
    assert result.code == 1
    assert result.err.startswith("BuildError: ") and "already be expired" in result.err
    assert not out.exists()


def test_delta_signed_by_a_new_key_from_a_base_signed_by_the_old(
    gatectl: Run, world: World, v1: Path
) -> None:
    """Key rotation: --base-pub names the key that signed the base."""
    assert gatectl("keygen", "signer-2026b", "--dir", world.dir).code == 0
    out = world.dir / "rotated.gdm"
    built = gatectl(
        "manifest", "build", "--event", world.event_path, "--tickets", world.tickets_path,
        "--key", world.dir / "signer-2026b.key", "--version", "2", "--expires", CLI_EXPIRES,
        "--base", v1, "--base-pub", world.signer_pub, "-o", out,
    )  # fmt: skip
    assert built.code == 0, built.err
    both = ("--pub", world.signer_pub, "--pub", world.dir / "signer-2026b.pub")
    result = gatectl("manifest", "verify", out, "--base", v1, *both)
    assert result.code == 0, result.err
    assert result.out.startswith("ok: demo-2026 version 2")
    without_base_key = gatectl(
        "manifest", "build", "--event", world.event_path, "--tickets", world.tickets_path,
        "--key", world.dir / "signer-2026b.key", "--version", "2", "--expires", CLI_EXPIRES,
        "--base", v1, "-o", world.dir / "never.gdm",
    )  # fmt: skip
    _refused(without_base_key, "unknown_key")


def test_build_writes_a_public_file_atomically(gatectl: Run, world: World) -> None:
    """Temp file beside the output, fsync, rename: mode 0644 whatever the umask, no leftovers."""
    out = world.dir / "out.gdm"
    out.write_bytes(b"the previous manifest")
    old_umask = os.umask(0o077)
    try:
        result = build(gatectl, world, out)
    finally:
        os.umask(old_umask)
    assert result.code == 0, result.err
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert read_manifest(out, world.trusted).version == 1
    assert hidden(world.dir) == []


def test_build_into_a_missing_folder(gatectl: Run, world: World) -> None:
    out = world.dir / "no-such-dir" / "out.gdm"
    result = build(gatectl, world, out)
    assert result.code == 1
    assert result.err == f"GateError: cannot write in {out.parent}: No such file or directory\n"
    assert result.out == ""
    assert not out.parent.exists()


def test_failed_write_leaves_no_temp_file(gatectl: Run, world: World, v1: Path) -> None:
    """The output is a folder: refused before anything is written, the folder kept."""
    out = world.dir / "taken.gdm"
    out.mkdir()
    (out / "inside").write_text("keep me")
    result = build(gatectl, world, out, version=2)
    assert result.code == 1
    assert result.err == f"GateError: {out} exists and is not a regular file; refusing to replace it\n"
    assert result.out == ""
    assert hidden(world.dir) == []
    assert [p.name for p in out.iterdir()] == ["inside"]
    applied = gatectl("manifest", "apply", v1, "--base", v1, "--pub", world.signer_pub, "-o", out)
    assert applied.code == 1  # refused before writing (a full manifest is no delta)
    assert hidden(world.dir) == []


def test_apply_writes_atomically_too(gatectl: Run, world: World, v1: Path, delta: Path) -> None:
    out = world.dir / "applied" / "v2.gdm"
    out.parent.mkdir()
    out.parent.joinpath("v2.gdm").mkdir()  # in the way: a folder is never replaced
    failed = gatectl("manifest", "apply", delta, "--base", v1, "--pub", world.signer_pub, "-o", out)
    assert failed.code == 1
    assert failed.err == f"GateError: {out} exists and is not a regular file; refusing to replace it\n"
    assert failed.out == ""
    assert hidden(out.parent) == []
    out.rmdir()
    ok = gatectl("manifest", "apply", delta, "--base", v1, "--pub", world.signer_pub, "-o", out)
    assert ok.code == 0, ok.err
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert sorted(p.name for p in out.parent.iterdir()) == ["v2.gdm"]


def test_build_accepts_the_largest_version(gatectl: Run, world: World) -> None:
    out = world.dir / "max.gdm"
    largest = 2**63 - 1
    result = build(gatectl, world, out, version=largest)
    assert result.code == 0, result.err
    assert f"version {largest}," in result.out
    assert read_manifest(out, world.trusted).version == largest


@pytest.mark.parametrize("version", ["0", "-1", "1.5", "abc", "", "\u0663", str(2**63), "9" * 40])
def test_build_refuses_versions_out_of_range_as_usage_errors(
    world: World, capsys: pytest.CaptureFixture[str], version: str
) -> None:
    out = world.dir / "never.gdm"
    args = [
        "manifest", "build", "--event", str(world.event_path), "--tickets", str(world.tickets_path),
        "--key", str(world.signer_key), "--version", version, "--expires", CLI_EXPIRES, "-o", str(out),
    ]  # fmt: skip
    with pytest.raises(SystemExit) as caught:
        main(args)
    assert caught.value.code == 2
    assert "--version" in capsys.readouterr().err
    assert not out.exists()
    assert hidden(world.dir) == []


# ------------------------------------------------------------------ verify


def test_verify_good(gatectl: Run, world: World, v1: Path) -> None:
    result = gatectl("manifest", "verify", v1, "--pub", world.signer_pub)
    assert result.code == 0, result.err
    assert result.out.startswith("ok: demo-2026 version 1, 11 tickets")
    assert "expires 2099-12-31T00:00:00Z" in result.out


def test_verify_tampered(gatectl: Run, world: World, v1: Path) -> None:
    data = v1.read_bytes()
    v1.write_bytes(flip(data, len(data) - 5))
    _refused(gatectl("manifest", "verify", v1, "--pub", world.signer_pub), "tampered")


def test_verify_expired(gatectl: Run, world: World, v1: Path) -> None:
    result = gatectl("manifest", "verify", v1, "--pub", world.signer_pub, "--at", "2100-01-01T00:00:00Z")
    _refused(result, "expired")
    ok = gatectl("manifest", "verify", v1, "--pub", world.signer_pub, "--at", CLI_EXPIRES)
    assert ok.code == 0


def test_verify_wrong_key(gatectl: Run, world: World, v1: Path) -> None:
    _refused(gatectl("manifest", "verify", v1, "--pub", world.issuer_pub), "unknown_key")


def test_verify_with_several_keys(gatectl: Run, world: World, v1: Path) -> None:
    result = gatectl("manifest", "verify", v1, "--pub", world.issuer_pub, "--pub", world.signer_pub)
    assert result.code == 0


def test_verify_min_version_rollback(gatectl: Run, world: World, v1: Path) -> None:
    _refused(gatectl("manifest", "verify", v1, "--pub", world.signer_pub, "--min-version", "2"), "rollback")
    assert gatectl("manifest", "verify", v1, "--pub", world.signer_pub, "--min-version", "1").code == 0


def test_verify_a_delta_needs_its_base(gatectl: Run, world: World, v1: Path, delta: Path) -> None:
    _refused(gatectl("manifest", "verify", delta, "--pub", world.signer_pub), "malformed")
    result = gatectl("manifest", "verify", delta, "--pub", world.signer_pub, "--base", v1)
    assert result.code == 0, result.err
    assert result.out.startswith("ok: demo-2026 version 2, 12 tickets")


def test_verify_missing_file(gatectl: Run, world: World) -> None:
    _refused(gatectl("manifest", "verify", world.dir / "nope.gdm", "--pub", world.signer_pub), "unreadable")


# ------------------------------------------------------------------ show


def test_show(gatectl: Run, world: World, v1: Path) -> None:
    result = gatectl("manifest", "show", v1)
    assert result.code == 0
    lines = {line.split()[0]: line for line in result.out.splitlines()}
    assert lines["event"] == "event      demo-2026 (Demo Night)"
    assert lines["version"] == "version    1"
    assert "NOT CHECKED" in lines["signature"]
    assert (
        "sat (Saturday) opens 2026-11-21T18:00:00Z, 2026-11-21T19:00:00Z to 2026-11-21T23:30:00Z"
        in (lines["sessions"])
    )
    assert "sun (Sunday) opens 2026-11-22T17:30:00Z" in lines["sessions"]
    assert lines["zones"] == "zones      floor (Floor), balcony (Balcony)"
    assert world.issuer.public.kid in lines["ticket"]
    assert f"north-1 ({world.gate.public.kid})" in lines["gates"]
    assert lines["revoked"] == "revoked    1"
    assert lines["tickets"] == ("tickets    11: 1 blocked, 1 canceled, 7 completed, 1 pending, 1 refunded")
    # T-0001 and T-SUN have codes, so their order and seat open nothing.
    assert lines["codes"] == "codes      3 reference, 7 order-seat"


def test_show_verified_and_json(gatectl: Run, world: World, v1: Path) -> None:
    verified = gatectl("manifest", "show", v1, "--pub", world.signer_pub)
    assert verified.code == 0 and "good (verified with the given key)" in verified.out
    as_json = gatectl("manifest", "show", v1, "--json")
    assert as_json.code == 0
    shown = json.loads(as_json.out)
    assert set(shown) == {"verified", "header"}
    assert shown["verified"] is False  # read without a key: say so, in the JSON too
    header = shown["header"]
    assert header["event"] == {"id": "demo-2026", "name": "Demo Night"}
    assert header["version"] == 1
    assert header["by_status"]["completed"] == 7
    assert header["legacy_codes"] is True
    checked = gatectl("manifest", "show", v1, "--json", "--pub", world.signer_pub)
    assert checked.code == 0
    assert json.loads(checked.out) == {"verified": True, "header": header}
    _refused(gatectl("manifest", "show", v1, "--pub", world.issuer_pub), "unknown_key")


def test_show_a_delta(gatectl: Run, world: World, delta: Path) -> None:
    result = gatectl("manifest", "show", delta)
    assert result.code == 0
    assert "version    2 (delta from version 1)" in result.out


def test_show_garbage(gatectl: Run, world: World) -> None:
    junk = world.dir / "junk.gdm"
    junk.write_bytes(b"not a manifest at all")
    _refused(gatectl("manifest", "show", junk), "malformed")


# ------------------------------------------------------------------ apply


def test_apply_a_delta(gatectl: Run, world: World, v1: Path, delta: Path) -> None:
    out = world.dir / "cli-v2.gdm"
    result = gatectl("manifest", "apply", delta, "--base", v1, "--pub", world.signer_pub, "-o", out)
    assert result.code == 0, result.err
    assert result.out == f"wrote {out}: version 2, expires {CLI_EXPIRES}\n"
    applied = read_manifest(out, world.trusted)
    assert applied.version == 2
    assert applied.find_ticket("T-0009").status.value == "canceled"
    assert applied.find_ticket("T-0300") is not None
    assert applied.find_ticket("T-0003").status.value == "completed"
    assert gatectl("manifest", "verify", out, "--pub", world.signer_pub).code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert hidden(world.dir) == []


def test_apply_to_the_wrong_base(gatectl: Run, world: World, v1: Path, delta: Path) -> None:
    other = world.dir / "other-v1.gdm"
    world.tickets_path.write_text(TICKETS_CSV.replace("T-0009,,,completed,,,1,\n", ""))
    assert build(gatectl, world, other).code == 0
    out = world.dir / "never.gdm"
    _refused(
        gatectl("manifest", "apply", delta, "--base", other, "--pub", world.signer_pub, "-o", out),
        "wrong_base",
    )
    assert not out.exists()


def test_apply_a_full_manifest(gatectl: Run, world: World, v1: Path) -> None:
    out = world.dir / "never.gdm"
    _refused(
        gatectl("manifest", "apply", v1, "--base", v1, "--pub", world.signer_pub, "-o", out), "malformed"
    )


# ------------------------------------------------------------------ decide


def decide(
    gatectl: Run, world: World, manifest: Path, payload: str, *extra: str
) -> tuple[int, dict[str, object]]:
    result = gatectl("decide", payload, "--manifest", manifest, "--pub", world.signer_pub, *extra)
    assert result.err == ""
    return result.code, json.loads(result.out)


def test_decide_allow_exits_0(gatectl: Run, world: World, v1: Path) -> None:
    code, shown = decide(gatectl, world, v1, "REF-SAT-FLOOR-0001", "--at", AT_SAT, "--zone", "floor")
    assert code == 0
    assert (shown["outcome"], shown["reason"], shown["ticket_id"]) == ("allow", "ok", "T-0001")


def test_decide_signed_ticket_allow(gatectl: Run, world: World, v1: Path) -> None:
    payload = world.sign("T-NEW-1", session="sat")
    code, shown = decide(gatectl, world, v1, payload, "--at", AT_SAT, "--session", "sat")
    assert code == 0 and shown["format"] == "signed"
    assert payload not in json.dumps(shown)


@pytest.mark.parametrize(
    ("payload", "extra", "reason"),
    [
        ("NO-SUCH-CODE-1234", (), "unknown_ticket"),
        ("O-100-A2", ("--zone", "floor"), "wrong_zone"),
        ("O-102-B2", (), "canceled"),
        ("REF-SAT-FLOOR-0001", ("--session", "sun"), "wrong_session"),
        ("GD2:AAAA", (), "invalid_payload"),
    ],
)
def test_decide_deny_exits_3(
    gatectl: Run, world: World, v1: Path, payload: str, extra: tuple[str, ...], reason: str
) -> None:
    code, shown = decide(gatectl, world, v1, payload, "--at", AT_SAT, *extra)
    assert code == 3
    assert (shown["outcome"], shown["reason"]) == ("deny", reason)


def test_decide_too_early_exits_5(gatectl: Run, world: World, v1: Path) -> None:
    code, shown = decide(gatectl, world, v1, "REF-SAT-FLOOR-0001", "--at", "2026-11-21T17:00:00Z")
    assert code == 5
    assert (shown["outcome"], shown["reason"]) == ("too_early", "too_early")
    assert shown["opens_at"] == "2026-11-21T18:00:00Z"
    assert shown["opens_in"] == 3600


def test_decide_with_a_delta_and_its_base(gatectl: Run, world: World, v1: Path, delta: Path) -> None:
    code, shown = decide(gatectl, world, delta, "O-101-B1", "--base", str(v1), "--at", AT_SAT)
    assert code == 0 and shown["ticket_id"] == "T-0003"  # paid in version 2
    code, shown = decide(gatectl, world, v1, "O-101-B1", "--at", AT_SAT)
    assert code == 3 and shown["reason"] == "unpaid"


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--zone", "flor", "zone 'flor' is not a zone of event demo-2026 (zones: floor, balcony)"),
        ("--session", "nope", "session 'nope' is not a session of event demo-2026 (sessions: sat, sun)"),
    ],
)
def test_decide_refuses_a_checkpoint_the_event_does_not_have(
    gatectl: Run, world: World, v1: Path, option: str, value: str, words: str
) -> None:
    """A typo would otherwise quietly turn tickets away as wrong_zone or wrong_session."""
    result = gatectl(
        "decide", "REF-SAT-FLOOR-0001", "--manifest", v1, "--pub", world.signer_pub, "--at", AT_SAT,
        option, value,
    )  # fmt: skip
    assert result.code == 1
    assert result.err == f"GateError: {words}\n"
    assert result.out == ""


def test_decide_names_both_unknown_zone_and_session(gatectl: Run, world: World, v1: Path) -> None:
    result = gatectl(
        "decide", "REF-SAT-FLOOR-0001", "--manifest", v1, "--pub", world.signer_pub,
        "--zone", "flor", "--session", "nope",
    )  # fmt: skip
    assert result.code == 1
    assert result.err.startswith("GateError: zone 'flor' is not a zone of event demo-2026")
    assert "; session 'nope' is not a session of event demo-2026" in result.err
    assert result.err.count("\n") == 1


def test_dropped_rows_stay_canceled_through_gatectl(gatectl: Run, world: World, v1: Path) -> None:
    """T-0004 (canceled) and T-0001 (sold) leave tickets.csv: their signed tickets stay refused."""
    world.tickets_path.write_text(
        "".join(
            line
            for line in TICKETS_CSV.splitlines(keepends=True)
            if not line.startswith(("T-0001,", "T-0004,"))
        )
    )
    delta_path = world.dir / "drop.gdm"
    built = build(gatectl, world, delta_path, "--base", v1, version=2)
    assert built.code == 0, built.err
    assert ", 11 tickets, " in built.out
    assert built.err == (
        f"note: 2 tickets of version 1 are not in {world.tickets_path}; "
        "they stay in the manifest as canceled\n"
    )
    full = world.dir / "v2-applied.gdm"
    assert (
        gatectl("manifest", "apply", delta_path, "--base", v1, "--pub", world.signer_pub, "-o", full).code
        == 0
    )
    for ticket_id in ("T-0001", "T-0004"):
        payload = world.sign(ticket_id, session="sat")
        for manifest, extra in ((delta_path, ("--base", str(v1))), (full, ())):
            code, shown = decide(gatectl, world, manifest, payload, "--at", AT_SAT, *extra)
            assert (code, shown["reason"], shown["ticket_id"]) == (3, "canceled", ticket_id)
    code, shown = decide(gatectl, world, full, "REF-SAT-FLOOR-0001", "--at", AT_SAT)
    assert (code, shown["reason"]) == (3, "canceled")
    # A ticket sold after the last sync (never listed) still opens: the check is not "listed or out".
    code, shown = decide(gatectl, world, full, world.sign("T-NEW-9", session="sat"), "--at", AT_SAT)
    assert (code, shown["reason"]) == (0, "ok")


def test_decide_refuses_a_tampered_manifest(gatectl: Run, world: World, v1: Path) -> None:
    data = v1.read_bytes()
    v1.write_bytes(flip(data, 40))
    result = gatectl("decide", "REF-SAT-FLOOR-0001", "--manifest", v1, "--pub", world.signer_pub)
    _refused(result, "bad_signature")


def test_decide_reads_the_payload_from_stdin(world: World, v1: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gate_daemon.cli.gatectl",
            "decide",
            "-",
            "--manifest",
            str(v1),
            "--pub",
            str(world.signer_pub),
            "--at",
            "2026-11-21T17:00:00Z",
        ],
        input="REF-SAT-FLOOR-0001\r\n",
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 5, done.stderr
    assert json.loads(done.stdout)["reason"] == "too_early"


def test_full_flow_in_real_processes(world: World) -> None:
    """keygen, build, verify as separate processes, the way a tech runs them."""

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gate_daemon.cli.gatectl", *map(str, args)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    keygen = run("keygen", "ops", "--dir", world.dir)
    assert keygen.returncode == 0 and keygen.stdout.startswith("key id ")
    out = world.dir / "ops.gdm"
    built = run(
        "manifest", "build", "--event", world.event_path, "--tickets", world.tickets_path,
        "--key", world.dir / "ops.key", "--version", "3", "--expires", CLI_EXPIRES, "-o", out,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert run("manifest", "verify", out, "--pub", world.dir / "ops.pub").returncode == 0
    refused = run("manifest", "verify", out, "--pub", world.signer_pub)
    assert refused.returncode == 1 and refused.stderr.startswith("ManifestRefused: unknown_key")
    assert open_manifest(out.read_bytes(), [read_public(world.dir / "ops.pub")]).version == 3


# ------------------------------------------------------------------ usage


@pytest.mark.parametrize("rounds", ["0", "-5", "many", "1e3"])
def test_bench_refuses_rounds_below_one(capsys: pytest.CaptureFixture[str], rounds: str) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["bench", "core", "--rounds", rounds, "--sizes", "10"])
    assert caught.value.code == 2
    assert "--rounds" in capsys.readouterr().err


def test_verify_min_version_out_of_range_is_a_usage_error(world: World, v1: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["manifest", "verify", str(v1), "--pub", str(world.signer_pub), "--min-version", str(2**63)])
    assert caught.value.code == 2


def test_usage_errors_exit_2(gatectl: Run, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["manifest", "frobnicate"])
    assert caught.value.code == 2
    with pytest.raises(SystemExit) as caught:
        main(["ticket", "issue", "--key", "k", "--event", "e", "--ticket-id", "t", "--entries", "0"])
    assert caught.value.code == 2
    assert "must be 1..255 or 'reentry'" in capsys.readouterr().err
