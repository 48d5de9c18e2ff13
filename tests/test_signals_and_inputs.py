"""The simulated and real adapters of the two ports: signals (console, GPIO) and inputs (stdin, images)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory
from PIL import Image

from gate_daemon.config.load import load_config
from gate_daemon.config.sections import GpioPins
from gate_daemon.core.decision import Decision
from gate_daemon.core.reasons import Reason
from gate_daemon.errors import GateError
from gate_daemon.hardware.console_signals import ConsoleSignals
from gate_daemon.hardware.decoders import ZxingDecoder
from gate_daemon.hardware.factory import make_input, make_signals
from gate_daemon.hardware.gpio_signals import GpioSignals
from gate_daemon.hardware.image_folder import ImageFolderInput, UnreadableImage, read_frame
from gate_daemon.hardware.stdin_input import MAX_LINE, StdinInput
from gate_daemon.provision.qrimage import write_qr
from tests.gate_fixtures import gate_rig
from tests.live import make_live_world, write_gate_config
from tests.support import World
from tests.waiting import eventually

ALLOW = Decision(Reason.OK, "Entry allowed", ticket_id="T-0001")
DENY = Decision(Reason.CANCELED, "Order was canceled", ticket_id="T-0004")
USED = Decision(Reason.ALREADY_USED, "Already used 2026-11-21T19:00:00Z at gate north-1", ticket_id="T-0001")
EARLY = Decision(Reason.TOO_EARLY, "Too early: entry opens 2026-11-22T17:30:00Z (in 2 h 00 min)")
NO_TICKET = Decision(Reason.INVALID_PAYLOAD, "Not a ticket code: empty")
ESC = "\x1b["


# ------------------------------------------------------------------ console


def test_console_writes_one_plain_line_per_decision() -> None:
    out = io.StringIO()
    signals = ConsoleSignals(out, color="never")
    for decision in (ALLOW, DENY, USED, EARLY, NO_TICKET):
        signals.show(decision)
    lines = out.getvalue().splitlines()
    assert len(lines) == 5
    assert out.getvalue().endswith("\n")
    assert ESC not in out.getvalue()
    expected = [
        ("ALLOW", "ok", "T-0001", "Entry allowed"),
        ("DENY", "canceled", "T-0004", "Order was canceled"),
        ("USED", "already_used", "T-0001", "Already used 2026-11-21T19:00:00Z at gate north-1"),
        ("EARLY", "too_early", None, "Too early: entry opens 2026-11-22T17:30:00Z (in 2 h 00 min)"),
        ("DENY", "invalid_payload", None, "Not a ticket code: empty"),
    ]
    for line, (label, reason, ticket, message) in zip(lines, expected, strict=True):
        fields = line.split("  ")
        time.strptime(fields[0], "%H:%M:%S")
        assert fields[1].strip() == label
        assert reason in line
        assert line.endswith(message)
        if ticket:
            assert f"  {ticket}  " in line


@pytest.mark.parametrize(
    ("decision", "label"),
    [
        (ALLOW, "\x1b[1;32mALLOW"),
        (DENY, "\x1b[1;31mDENY"),
        (USED, "\x1b[1;33mUSED"),
        (EARLY, "\x1b[1;33mEARLY"),
    ],
)
def test_console_colours_the_label_when_asked(decision: Decision, label: str) -> None:
    out = io.StringIO()
    ConsoleSignals(out, color="always").show(decision)
    line = out.getvalue()
    assert label in line
    assert line.count(ESC) == 2 and "\x1b[0m" in line  # the label only, then reset
    assert line.rstrip("\n").endswith(decision.message)


def test_console_auto_colour_only_on_a_terminal() -> None:
    plain = io.StringIO()
    ConsoleSignals(plain, color="auto").show(ALLOW)
    assert ESC not in plain.getvalue()

    leader, follower = os.openpty()  # a real terminal
    try:
        with open(follower, "w", closefd=False) as tty:
            ConsoleSignals(tty, color="auto").show(ALLOW)
            ConsoleSignals(tty, color="never").show(DENY)
        data = ""
        while data.count("\n") < 2:  # the terminal hands the output over in pieces
            data += os.read(leader, 4096).decode()
    finally:
        os.close(leader)
        os.close(follower)
    allow_line, deny_line = data.splitlines()
    assert "\x1b[1;32mALLOW" in allow_line
    assert ESC not in deny_line and "DENY" in deny_line


# ------------------------------------------------------------------ GPIO, on gpiozero's mock pins

PINS = GpioPins(green="GPIO17", red="GPIO27", yellow="GPIO22", buzzer="GPIO23")


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    made = MockFactory()
    yield made
    made.close()


def lights(factory: MockFactory) -> tuple[bool, bool, bool]:
    return (factory.pin(17).state, factory.pin(27).state, factory.pin(22).state)


def beeps(factory: MockFactory) -> int:
    """How many times the buzzer pin went high since its history was cleared."""
    return sum(1 for change in factory.pin(23).states[1:] if change.state)


@pytest.mark.parametrize(
    ("decision", "lit", "count", "tone"),
    [
        (ALLOW, (True, False, False), 1, 0.1),
        (DENY, (False, True, False), 1, 0.6),
        (USED, (False, False, True), 2, 0.1),
        (EARLY, (False, False, True), 1, 0.25),
    ],
    ids=["allow", "deny", "already_used", "too_early"],
)
async def test_gpio_lights_the_outcomes_led_and_beeps_its_pattern(
    factory: MockFactory, decision: Decision, lit: tuple[bool, bool, bool], count: int, tone: float
) -> None:
    signals = GpioSignals(PINS, hold=30, pin_factory=factory)
    try:
        buzzer = factory.pin(23)
        buzzer.clear_states()
        signals.show(decision)
        await eventually(lambda: lights(factory) == lit)
        # The pattern plays out in the background: count the beeps once the buzzer is quiet.
        await eventually(lambda: beeps(factory) == count and not buzzer.state)
        await asyncio.sleep(0.05)
        assert beeps(factory) == count
        first_on = next(i for i, change in enumerate(buzzer.states) if change.state)
        # The state history records how long each state lasted: the tone is never shorter.
        assert tone - 0.01 <= buzzer.states[first_on + 1].timestamp < tone + 0.2
        assert lights(factory) == lit  # held for `hold` seconds
    finally:
        await signals.aclose()
    assert lights(factory) == (False, False, False)
    assert not factory.pin(23).state


async def test_gpio_a_new_decision_replaces_the_light(factory: MockFactory) -> None:
    signals = GpioSignals(PINS, hold=30, pin_factory=factory)
    try:
        signals.show(ALLOW)
        await eventually(lambda: lights(factory) == (True, False, False))
        signals.show(DENY)
        await eventually(lambda: lights(factory) == (False, True, False))
        signals.show(USED)
        await eventually(lambda: lights(factory) == (False, False, True))
    finally:
        await signals.aclose()


async def test_gpio_light_goes_out_after_hold(factory: MockFactory) -> None:
    signals = GpioSignals(PINS, hold=0.05, pin_factory=factory)
    try:
        signals.show(ALLOW)
        await eventually(lambda: factory.pin(17).state)
        await eventually(lambda: not factory.pin(17).state)
    finally:
        await signals.aclose()


async def test_gpio_aclose_turns_everything_off_and_releases_the_pins(factory: MockFactory) -> None:
    signals = GpioSignals(PINS, hold=30, pin_factory=factory)
    signals.show(DENY)
    await eventually(lambda: factory.pin(27).state and factory.pin(23).state)
    await signals.aclose()
    assert lights(factory) == (False, False, False)
    assert not factory.pin(23).state
    assert all(device.closed for device in (signals.green, signals.red, signals.yellow, signals.buzzer))
    # Released: the same pins can be claimed again.
    again = GpioSignals(PINS, hold=30, pin_factory=factory)
    await again.aclose()


async def test_gpio_without_a_buzzer(factory: MockFactory) -> None:
    signals = GpioSignals(GpioPins("GPIO5", "GPIO6", "GPIO13", None), hold=30, pin_factory=factory)
    try:
        assert signals.buzzer is None
        signals.show(USED)
        await eventually(lambda: factory.pin(13).state)
    finally:
        await signals.aclose()
    assert not factory.pin(13).state


def _gpio_config(tmp_path: Path, pins: str) -> Path:
    live = make_live_world(tmp_path / "event")
    path = write_gate_config(tmp_path / "gate.toml", live, signals="gpio")
    path.write_text(path.read_text() + f"[signals.pins]\n{pins}\n")
    return path


async def test_make_signals_builds_gpio_signals_on_the_given_factory(
    tmp_path: Path, factory: MockFactory
) -> None:
    config = load_config(_gpio_config(tmp_path, 'green = "GPIO5"\nbuzzer = 6'), {})
    signals = make_signals(config, pin_factory=factory)
    try:
        assert isinstance(signals, GpioSignals)
        signals.show(ALLOW)
        await eventually(lambda: factory.pin(5).state)
    finally:
        await signals.aclose()


async def test_make_signals_names_a_pin_that_cannot_be_used(tmp_path: Path, factory: MockFactory) -> None:
    from gpiozero import LED

    config = load_config(_gpio_config(tmp_path, 'green = "GPIO5"'), {})
    held = LED("GPIO27", pin_factory=factory)  # red's pin is taken by something else
    try:
        with pytest.raises(GateError, match="cannot drive GPIO pins"):
            make_signals(config, pin_factory=factory)
        assert not factory.pin(5).state  # what was opened before the failure is released
        LED("GPIO5", pin_factory=factory).close()
    finally:
        held.close()


# ------------------------------------------------------------------ stdin


async def collect(source: StdinInput | ImageFolderInput, timeout: float = 10) -> list[str]:
    async def run() -> list[str]:
        return [payload async for payload in source.payloads()]

    return await asyncio.wait_for(run(), timeout)


async def test_stdin_lines_become_payloads_until_end_of_input(world: World, tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    overlong = b"A" * (MAX_LINE + 900)
    data = (
        b"REF-SAT-FLOOR-0001\n"
        b"\n"
        b"   \t \n"
        b"O-105-C2\r\n"
        b"  O-100-A2  \n"
        b"\xff\xfe-NOT-UTF-8\n" + overlong + b"\n"
        b"LAST-LINE-WITHOUT-NEWLINE"
    )
    with os.fdopen(write_fd, "wb") as writer:
        writer.write(data)
    with io.FileIO(read_fd, "rb") as reader:
        source = StdinInput(reader)
        payloads = await collect(source)
        await source.aclose()
    assert payloads == [
        "REF-SAT-FLOOR-0001",
        "O-105-C2",
        "O-100-A2",
        "\udcff\udcfe-NOT-UTF-8",  # the bytes kept, as escapes
        "A" * MAX_LINE,  # cut, the rest of the line dropped
        "LAST-LINE-WITHOUT-NEWLINE",
    ]

    # Through a real gate, every one of them has a named answer.
    async with gate_rig(world, tmp_path / "gate") as rig:
        results = [await rig.gate.sighted(p, device=source.name) for p in payloads]
        reasons = [r.decision.reason for r in results if r is not None]
        assert reasons == [
            Reason.OK,
            Reason.OK,
            Reason.WRONG_ZONE,
            Reason.INVALID_PAYLOAD,
            Reason.INVALID_PAYLOAD,
            Reason.UNKNOWN_TICKET,
        ]
        assert rig.rows("SELECT DISTINCT device FROM scans") == [("stdin",)]
        assert rig.scalar("SELECT COUNT(*) FROM scans") == 6


async def test_stdin_payloads_arrive_as_they_are_written() -> None:
    read_fd, write_fd = os.pipe()
    with io.FileIO(read_fd, "rb") as reader, os.fdopen(write_fd, "wb", buffering=0) as writer:
        source = StdinInput(reader)
        payloads = source.payloads()
        writer.write(b"FIRST\n")
        assert await asyncio.wait_for(anext(payloads), 5) == "FIRST"
        writer.write(b"SECOND\n")
        assert await asyncio.wait_for(anext(payloads), 5) == "SECOND"
        writer.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(payloads), 5)


async def test_stdin_that_is_already_closed_just_ends() -> None:
    read_fd, write_fd = os.pipe()
    os.close(write_fd)
    with io.FileIO(read_fd, "rb") as reader:
        assert await collect(StdinInput(reader)) == []


# ------------------------------------------------------------------ image folder

_mtimes = itertools.count(1_790_000_000_000_000_000, 1_000_000)


def place(folder: Path, name: str, write: Callable[[Path], object]) -> Path:
    """Write a frame beside its final name (dot files are ignored), then rename it into place."""
    tmp = folder / f".{name}"
    write(tmp)
    stamp = next(_mtimes)  # a distinct mtime: a rewritten file is always seen as changed
    os.utime(tmp, ns=(stamp, stamp))
    final = folder / name
    tmp.replace(final)
    return final


def qr(payload: str) -> Callable[[Path], object]:
    return lambda path: write_qr(payload, path)


def blank(path: Path) -> None:
    Image.new("L", (320, 240), 255).save(path, format="PNG")


@contextlib.asynccontextmanager
async def watching(source: ImageFolderInput) -> AsyncIterator[asyncio.Queue[str]]:
    """Run the input in a task that puts each payload on a queue."""
    found: asyncio.Queue[str] = asyncio.Queue()

    async def run() -> None:
        async with contextlib.aclosing(source.payloads()) as payloads:
            async for payload in payloads:
                found.put_nowait(payload)

    task = asyncio.create_task(run())
    try:
        yield found
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await source.aclose()


async def next_payload(found: asyncio.Queue[str]) -> str:
    return await asyncio.wait_for(found.get(), 10)


def decode_qr_file(path: Path) -> list[str]:
    return ZxingDecoder().decode(read_frame(path))


def test_decode_qr_file_reads_segno_images(tmp_path: Path, world: World) -> None:
    signed = world.sign("T-4000", session="sat")
    png = tmp_path / "ticket.png"
    write_qr(signed, png)
    assert decode_qr_file(png) == [signed]
    jpeg = tmp_path / "ticket.jpg"
    Image.open(png).convert("RGB").save(jpeg, quality=90)
    assert decode_qr_file(jpeg) == [signed]
    blank(tmp_path / "white.png")
    assert decode_qr_file(tmp_path / "white.png") == []
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(UnreadableImage):
        decode_qr_file(tmp_path / "notes.png")


async def test_image_folder_yields_each_new_or_changed_frame(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    place(folder, "old.png", qr("OLD-FRAME-BEFORE-START"))
    unreadable: list[int] = []

    async def count() -> None:
        unreadable.append(1)

    source = ImageFolderInput(folder, interval=0.01, on_unreadable=count)
    async with watching(source) as found:
        await eventually(lambda: "old.png" in source._seen)  # the first look at the folder is done

        place(folder, "new.png", qr("REF-SAT-FLOOR-0001"))
        assert await next_payload(found) == "REF-SAT-FLOOR-0001"

        # Not an image, despite its name: counted, logged, and the input carries on.
        place(folder, "notes.png", lambda p: p.write_text("a note, not a frame"))
        await eventually(lambda: len(unreadable) == 1)
        # An image without a code, and files that are no frames at all, yield nothing.
        place(folder, "empty.png", blank)
        (folder / "readme.txt").write_text("not looked at")
        place(folder, "zz-after.png", qr("O-105-C2"))  # decoded after empty.png
        assert await next_payload(found) == "O-105-C2"

        # The same name with new content is a new frame; so is the same content written again.
        place(folder, "new.png", qr("O-100-A2"))
        assert await next_payload(found) == "O-100-A2"
        place(folder, "new.png", qr("O-100-A2"))
        assert await next_payload(found) == "O-100-A2"

        # Deleting a frame yields nothing; putting one back under that name is new.
        (folder / "new.png").unlink()
        await eventually(lambda: "new.png" not in source._seen)
        place(folder, "new.png", qr("BACK-AGAIN"))
        assert await next_payload(found) == "BACK-AGAIN"

        await asyncio.sleep(0.1)
        assert found.empty()
        assert len(unreadable) == 1


async def test_image_folder_through_a_gate(world: World, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    place(folder, "before.png", blank)
    source = ImageFolderInput(folder, interval=0.01)
    async with gate_rig(world, tmp_path / "gate") as rig, watching(source) as found:
        await eventually(lambda: "before.png" in source._seen)
        place(folder, "frame-1.png", qr("REF-SAT-FLOOR-0001"))
        place(folder, "frame-2.png", qr("REF-SAT-FLOOR-0001"))  # the same code, next frame
        results = [await rig.gate.sighted(await next_payload(found), device=source.name) for _ in range(2)]
        assert results[0] is not None and results[0].decision.reason is Reason.OK
        assert results[1] is None  # a repeat within the window, not a second scan
        assert rig.gate.volatile["repeats"] == 1
        assert rig.rows("SELECT device, reason FROM scans") == [("images", "ok")]


async def test_make_input_builds_the_configured_input(tmp_path: Path) -> None:
    live = make_live_world(tmp_path / "event")
    frames = tmp_path / "frames"
    path = write_gate_config(tmp_path / "gate.toml", live, input_kind="images", images=frames)
    with pytest.raises(GateError, match="is not a folder"):
        make_input(load_config(path, {}))
    frames.mkdir()
    made = make_input(load_config(path, {}))
    assert isinstance(made, ImageFolderInput)
    assert made.folder == frames
    assert made.interval == pytest.approx(0.1)
    stdin = write_gate_config(tmp_path / "stdin.toml", live, input_kind="stdin")
    assert isinstance(make_input(load_config(stdin, {}), io.BytesIO(b"")), StdinInput)
    none = write_gate_config(tmp_path / "none.toml", live, input_kind="none")
    assert make_input(load_config(none, {})) is None


def test_damaged_images_are_unreadable_never_an_uncaught_error(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    write_qr("REF-SAT-FLOOR-0001", good)
    original = good.read_bytes()
    rng = random.Random(20261122)
    outcomes: set[str] = set()
    for n in range(300):
        damaged = bytearray(original)
        for _ in range(rng.randint(1, 12)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        frame = tmp_path / f"d{n}.png"
        frame.write_bytes(bytes(damaged))
        try:
            codes = decode_qr_file(frame)
        except UnreadableImage as exc:
            outcomes.add(str(exc).split(":")[0])
        else:
            assert codes in ([], ["REF-SAT-FLOOR-0001"])
    # Pillow's decoders fail in several ways (OSError, SyntaxError, ...): all are named.
    assert len(outcomes) > 1
