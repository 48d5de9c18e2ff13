"""QR images: issue a ticket, read the picture back with both real decoders, and decide on it."""

from __future__ import annotations

import io
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image
from pyzbar import pyzbar

from gate_daemon.cli.gatectl import main as gatectl
from gate_daemon.core.decision import Checkpoint, evaluate
from gate_daemon.core.reasons import Reason
from gate_daemon.core.tokens import PayloadFormat, SignedTicket, parse_payload
from gate_daemon.errors import GateError
from gate_daemon.provision.qrimage import write_qr
from tests.support import EVENT_ID, SAT_START, World


def read_pyzbar(image: Image.Image) -> list[str]:
    return [r.data.decode("ascii") for r in pyzbar.decode(image) if r.type == "QRCODE"]


def read_zxing(image: Image.Image) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(image) if "QR" in str(r.format)]


def read_both(path: Path) -> str:
    """The text both decoders read from an image file; they must agree."""
    with Image.open(path) as image:
        gray = image.convert("L")
    zbar, zxing = read_pyzbar(gray), read_zxing(gray)
    assert len(zbar) == 1, zbar
    assert zbar == zxing
    return zbar[0]


def issue_args(world: World, *extra: str) -> list[str]:
    return [
        "ticket",
        "issue",
        "--key",
        str(world.issuer_key),
        "--event",
        EVENT_ID,
        "--ticket-id",
        "T-QR-0001",
        "--session",
        "sat",
        "--zone",
        "floor",
        *extra,
    ]


def test_issue_png_decodes_with_both_readers_and_is_allowed(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    png = world.dir / "ticket.png"
    assert gatectl(issue_args(world, "--png", str(png))) == 0
    captured = capsys.readouterr()
    payload = captured.out.strip()
    assert "QR alphanumeric mode" in captured.err and str(png) in captured.err
    assert payload.startswith("GD1:")

    scanned = read_both(png)
    assert scanned == payload
    parsed = parse_payload(scanned)
    assert isinstance(parsed, SignedTicket)
    assert parsed.claims.ticket_id == "T-QR-0001"
    decision = evaluate(scanned, world.manifest, Checkpoint(zone="floor", session="sat"), SAT_START)
    assert decision.reason is Reason.OK
    assert (decision.ticket_id, decision.format) == ("T-QR-0001", PayloadFormat.SIGNED)
    assert decision.format is PayloadFormat.SIGNED


def test_issue_svg(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    svg = world.dir / "ticket.svg"
    assert gatectl(issue_args(world, "--svg", str(svg))) == 0
    svg_payload = capsys.readouterr().out.strip()
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    assert len(list(root.iter())) > 1
    # Ed25519 is deterministic: the same claims give the same payload as the PNG run.
    assert gatectl(issue_args(world, "--png", str(world.dir / "same.png"))) == 0
    assert capsys.readouterr().out.strip() == svg_payload
    assert read_both(world.dir / "same.png") == svg_payload


def test_issue_in_a_real_process(world: World) -> None:
    png = world.dir / "proc.png"
    done = subprocess.run(
        [sys.executable, "-m", "gate_daemon.cli.gatectl", *issue_args(world, "--png", str(png))],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    payload = done.stdout.strip()
    assert read_both(png) == payload
    decision = evaluate(payload, world.manifest, Checkpoint(zone="floor"), SAT_START)
    assert decision.reason is Reason.OK


def test_installed_console_script(world: World) -> None:
    script = Path(sys.executable).parent / "gatectl"
    if not script.exists():
        pytest.skip("gatectl console script is not installed next to this interpreter")
    png = world.dir / "script.png"
    done = subprocess.run(
        [str(script), *issue_args(world, "--png", str(png))],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert read_both(png) == done.stdout.strip()


@pytest.mark.parametrize(
    ("code", "ticket_id", "fmt"),
    [
        ("REF-SAT-FLOOR-0001", "T-0001", PayloadFormat.REFERENCE),
        ("O-105-C2", "T-0007", PayloadFormat.LEGACY),
    ],
)
def test_reference_and_legacy_codes_round_trip(
    world: World, code: str, ticket_id: str, fmt: PayloadFormat
) -> None:
    png = world.dir / "code.png"
    assert write_qr(code, png) == "alphanumeric"
    scanned = read_both(png)
    assert scanned == code
    decision = evaluate(scanned, world.manifest, Checkpoint(zone="floor"), SAT_START)
    assert (decision.reason, decision.ticket_id, decision.format) == (Reason.OK, ticket_id, fmt)


def test_order_seat_of_a_ticket_with_a_code_does_not_open(world: World) -> None:
    """T-0001 is order O-100 seat A1, and has a reference code: only the code opens it."""
    png = world.dir / "guess.png"
    write_qr("O-100-A1", png)
    decision = evaluate(read_both(png), world.manifest, Checkpoint(zone="floor"), SAT_START)
    assert (decision.reason, decision.ticket_id) == (Reason.UNKNOWN_TICKET, None)


def test_longest_payload_survives_a_rough_camera_copy(world: World) -> None:
    """A JPEG-compressed, downscaled, rotated copy, as a phone screen might look to the camera."""
    payload = world.sign("T-" + "9" * 30, session="sat", zone="floor", valid_from=0, valid_until=2**32 - 1)
    png = world.dir / "long.png"
    write_qr(payload, png, scale=4)
    with Image.open(png) as image:
        rough = image.convert("L").rotate(90, expand=True)
        rough = rough.resize((rough.width * 3 // 4, rough.height * 3 // 4))
    buffer = io.BytesIO()
    rough.save(buffer, format="JPEG", quality=40)
    buffer.seek(0)
    with Image.open(buffer) as jpeg:
        gray = jpeg.convert("L")
        assert read_pyzbar(gray) == [payload]
        assert read_zxing(gray) == [payload]
    assert evaluate(payload, world.manifest, Checkpoint(), SAT_START).reason is Reason.OK


def test_write_qr_only_writes_png_or_svg(tmp_path: Path) -> None:
    with pytest.raises(GateError, match=r"\.png or \.svg"):
        write_qr("REF-SAT-FLOOR-0001", tmp_path / "ticket.gif")
    assert not (tmp_path / "ticket.gif").exists()
    with pytest.raises(GateError, match="cannot write"):
        write_qr("REF-SAT-FLOOR-0001", tmp_path / "no-such-dir" / "ticket.png")


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--zone", "a-zone-name-that-is-too-long", "zone must be 1 to 16 bytes of UTF-8, got 28"),
        ("--session", "s" * 17, "session must be 1 to 16 bytes of UTF-8, got 17"),
        ("--session", "\u00e9" * 9, "session must be 1 to 16 bytes of UTF-8, got 18"),  # 9 chars, 18 bytes
        ("--ticket-id", "T" * 65, "ticket id must be 1 to 64 bytes of UTF-8, got 65"),
    ],
)
def test_issue_refuses_labels_that_do_not_fit(
    world: World, capsys: pytest.CaptureFixture[str], option: str, value: str, words: str
) -> None:
    args = issue_args(world, "--png", str(world.dir / "x.png"))
    args[args.index(option) + 1] = value
    assert gatectl(args) == 1
    captured = capsys.readouterr()
    assert captured.err == f"GateError: {words}\n"
    assert captured.out == ""
    assert not (world.dir / "x.png").exists()


def test_issue_refuses_a_window_that_is_never_open(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    png = world.dir / "never.png"
    args = issue_args(
        world,
        "--valid-from",
        "2026-11-21T20:00:00Z",
        "--valid-until",
        "2026-11-21T19:00:00Z",
        "--png",
        str(png),
    )
    assert gatectl(args) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("GateError: --valid-from is later than --valid-until")
    assert captured.err.count("\n") == 1
    assert captured.out == ""
    assert not png.exists()
    # A window of a single second is still a window.
    same = issue_args(world, "--valid-from", "2026-11-21T19:00:00Z", "--valid-until", "2026-11-21T19:00:00Z")
    assert gatectl(same) == 0
    payload = capsys.readouterr().out.strip()
    assert evaluate(payload, world.manifest, Checkpoint(zone="floor"), SAT_START).reason is Reason.OK
    assert (
        evaluate(payload, world.manifest, Checkpoint(zone="floor"), SAT_START + 1).reason is Reason.TOO_LATE
    )


def test_issue_prints_no_payload_when_the_image_cannot_be_written(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """A script that pipes stdout must not get a payload whose QR image was never made."""
    target = world.dir / "no-such-dir" / "x.png"
    assert gatectl(issue_args(world, "--png", str(target))) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"GateError: cannot write {target}")
    assert captured.err.count("\n") == 1
    assert not target.parent.exists()
    # The same in a real process, with an absolute path whose folder does not exist.
    assert not Path("/nonexistent-dir").exists()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gate_daemon.cli.gatectl",
            *issue_args(world, "--png", "/nonexistent-dir/x.png"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("GateError: cannot write /nonexistent-dir/x.png")


def test_issue_warns_about_long_payloads(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    args = issue_args(world)
    args[args.index("--ticket-id") + 1] = "T-" + "7" * 60
    assert gatectl(args) == 0
    captured = capsys.readouterr()
    assert len(captured.out.strip()) > 160
    assert "shorter ids keep the QR small" in captured.err
