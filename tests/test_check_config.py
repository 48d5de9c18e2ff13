"""``gate-daemon check-config``: the file's own mistakes fail it; a manifest that does not fit warns."""

from __future__ import annotations

from pathlib import Path

import pytest

from gate_daemon.cli import daemon
from tests.live import make_live_world, write_gate_config


def test_a_good_config_passes_and_says_what_it_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = make_live_world(tmp_path / "event")
    (tmp_path / "drop.gdm").write_bytes(live.manifest())
    cfg = write_gate_config(tmp_path / "gate.toml", live)
    assert daemon.main(["check-config", str(cfg)]) == 0
    out = capsys.readouterr()
    assert "OK: gate north-1 for event live-2026 (entry, zone floor)" in out.out
    assert out.err == ""


def test_a_manifest_without_the_gates_zone_warns_but_does_not_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = make_live_world(tmp_path / "event")
    (tmp_path / "drop.gdm").write_bytes(live.manifest())
    cfg = write_gate_config(tmp_path / "gate.toml", live, zone="vip")
    # The gate starts, refuses that manifest and says why; a better one can be dropped live.
    assert daemon.main(["check-config", str(cfg)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {cfg}:" in err and "gate.zone" in err and "wrong_checkpoint" in err


def test_no_manifest_yet_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    live = make_live_world(tmp_path / "event")
    cfg = write_gate_config(tmp_path / "gate.toml", live)
    assert daemon.main(["check-config", str(cfg)]) == 0
    assert "manifest_missing" in capsys.readouterr().err


def test_an_unreadable_trusted_key_fails_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = make_live_world(tmp_path / "event")
    live.signer_pub.write_text("not a key\n")
    cfg = write_gate_config(tmp_path / "gate.toml", live)
    assert daemon.main(["check-config", str(cfg)]) == 1
    err = capsys.readouterr().err
    line = next(
        n for n, text in enumerate(cfg.read_text().splitlines(), 1) if text.startswith("trusted_keys")
    )
    assert f"{cfg}:{line}: manifest.trusted_keys[0]:" in err


def test_a_camera_gate_without_picamera2_fails_saying_how_to_install_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = make_live_world(tmp_path / "event")
    (tmp_path / "drop.gdm").write_bytes(live.manifest())
    cfg = write_gate_config(tmp_path / "gate.toml", live, input_kind="picamera")  # no picamera2 here
    assert daemon.main(["check-config", str(cfg)]) == 1
    err = capsys.readouterr().err
    line = next(
        n for n, text in enumerate(cfg.read_text().splitlines(), 1) if text.startswith('kind = "picamera')
    )
    assert f"{cfg}:{line}: input.kind:" in err and "sudo apt install python3-picamera2" in err


def test_a_scanner_not_plugged_in_yet_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    live = make_live_world(tmp_path / "event")
    (tmp_path / "drop.gdm").write_bytes(live.manifest())
    missing = tmp_path / "no-such-scanner"
    cfg = write_gate_config(tmp_path / "gate.toml", live, input_kind="serial", extra="")
    cfg.write_text(cfg.read_text().replace('kind = "serial"', f'kind = "serial"\ndevice = "{missing}"'))
    assert daemon.main(["check-config", str(cfg)]) == 0
    err = capsys.readouterr().err
    assert "input.device" in err and "does not exist (yet)" in err
