"""gatectl end to end, in-process: keygen, manifest build/verify/show/apply, decide and its exit codes."""

from __future__ import annotations

import json
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
    assert f"wrote {out}: demo-2026 version 1, 11 tickets" in result.out
    assert world.signer.public.kid in result.out
    return out


@pytest.fixture
def delta(gatectl: Run, world: World, v1: Path) -> Path:
    """A delta from v1 to v2 built by gatectl: T-0009 gone, T-0003 paid, T-0300 new."""
    world.tickets_path.write_text(
        TICKETS_CSV.replace("T-0009,,,completed,,,1,\n", "")
        .replace("T-0003,O-101,B1,pending", "T-0003,O-101,B1,completed")
        .replace("T-SUN,", "T-0300,O-300,Z9,completed,sun,floor,1,\nT-SUN,")
    )
    out = world.dir / "cli-v1-v2.gdm"
    result = build(gatectl, world, out, "--base", v1, version=2)
    assert result.code == 0, result.err
    assert "delta 1 -> 2" in result.out
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
    assert result.out.startswith("ok: demo-2026 version 2, 11 tickets")


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
    assert lines["codes"] == "codes      3 reference, 9 order-seat"


def test_show_verified_and_json(gatectl: Run, world: World, v1: Path) -> None:
    verified = gatectl("manifest", "show", v1, "--pub", world.signer_pub)
    assert verified.code == 0 and "good (verified with the given key)" in verified.out
    as_json = gatectl("manifest", "show", v1, "--json")
    header = json.loads(as_json.out)
    assert header["event"] == {"id": "demo-2026", "name": "Demo Night"}
    assert header["version"] == 1
    assert header["by_status"]["completed"] == 7
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
    assert result.out.strip() == f"wrote {out}: version 2"
    applied = read_manifest(out, world.trusted)
    assert applied.version == 2
    assert applied.find_ticket("T-0009") is None
    assert applied.find_ticket("T-0300") is not None
    assert applied.find_ticket("T-0003").status.value == "completed"
    assert gatectl("manifest", "verify", out, "--pub", world.signer_pub).code == 0
    assert not list(world.dir.glob(".*.tmp"))


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


def test_usage_errors_exit_2(gatectl: Run, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["manifest", "frobnicate"])
    assert caught.value.code == 2
    with pytest.raises(SystemExit) as caught:
        main(["ticket", "issue", "--key", "k", "--event", "e", "--ticket-id", "t", "--entries", "0"])
    assert caught.value.code == 2
    assert "must be 1..255 or 'reentry'" in capsys.readouterr().err
