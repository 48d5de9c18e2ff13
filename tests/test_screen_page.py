"""The gate screen in a real browser: a real gate-daemon serving /screen, Debian's Chromium reading it.

Scans go through the gate's control socket (as ``gatectl scan`` sends them) or through the
page's own manual-entry field; the page is read as a steward would see it: the colour of
the whole screen (computed style), its words, the countdown. Every wait has a deadline
and only bounds a failure.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import Page, expect

from gate_daemon.core.keys import SecretKey
from gate_daemon.core.rotating import DEFAULT_PERIOD, encode_code, issue_certificate, step_of
from gate_daemon.core.tokens import TicketClaims, event_tag
from tests.gate_process import GateProcess, Launcher, free_port, query, wait_until
from tests.live import EVENT_ID as LIVE_EVENT
from tests.live import LiveWorld, make_live_world, write_gate_config

#: The live event's tickets, with holders' names.
TICKETS = """\
ticket_id,order_id,seat,status,session,zone,entries,code,name
L-0001,A100,1,completed,now,floor,1,REF-LIVE-FLOOR-000001,Ada Lovelace
L-0002,A100,2,completed,now,floor,1,,
L-0003,A101,1,pending,now,floor,1,,
L-0006,A104,1,completed,later,floor,1,,Grace Hopper
L-0009,A107,14,completed,now,floor,1,,
L-0100,A199,7,completed,now,floor,1,,Grace Hopper
"""
GREEN = "rgb(27, 127, 59)"
RED = "rgb(195, 38, 31)"
YELLOW = "rgb(242, 183, 5)"
OUT_OF_SERVICE = "rgb(74, 59, 28)"
#: A deadline for what the page shows: it bounds a failure only.
SHOWN = 10_000


def screen_gate(
    tmp_path: Path,
    live: LiveWorld,
    launch: Launcher,
    *,
    port: int | None = None,
    hold_ms: int = 60_000,
    screen: str = "",
    manifest: bytes | None = None,
    lan: str = "",
) -> tuple[GateProcess, str]:
    """A gate with its screen on 127.0.0.1; its process and the screen's URL."""
    port = port or free_port()
    drop = tmp_path / "drop.gdm"
    drop.unlink(missing_ok=True)
    if manifest != b"":
        drop.write_bytes(manifest or live.manifest(1, tickets_csv=TICKETS))
    extra = f'[screen]\nlisten = "127.0.0.1:{port}"\n{screen}{lan}'
    config = write_gate_config(tmp_path / "gate.toml", live, signals="none", extra=extra)
    text = config.read_text().replace(
        '[signals]\nkind = "none"', f'[signals]\nkind = "none"\nhold_ms = {hold_ms}'
    )
    config.write_text(text)
    return launch(config), f"http://127.0.0.1:{port}/screen"


def background(page: Page) -> str:
    return str(page.evaluate("getComputedStyle(document.body).backgroundColor"))


def wait_colour(page: Page, colour: str) -> None:
    page.wait_for_function(
        "colour => getComputedStyle(document.body).backgroundColor === colour", arg=colour, timeout=SHOWN
    )


def ready(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("#headline")).to_have_text("Ready", timeout=SHOWN)
    expect(page.locator("#s-link")).to_have_text("live")


def test_each_outcome_shows_in_its_colour_with_its_words(
    tmp_path: Path, live: LiveWorld, launch: Launcher, page: Page
) -> None:
    gate, url = screen_gate(tmp_path, live, launch)
    ready(page, url)
    expect(page.locator("#s-gate")).to_have_text("Gate north-1")
    expect(page.locator("#s-manifest")).to_contain_text("Manifest v1")

    assert gate.scan("REF-LIVE-FLOOR-000001")["outcome"] == "allow"
    wait_colour(page, GREEN)
    expect(page.locator("#headline")).to_have_text("Go ahead")
    expect(page.locator("#name")).to_have_text("Ada Lovelace")
    expect(page.locator("#details")).to_contain_text("Seat 1 · Floor · Tonight")

    assert gate.scan("REF-LIVE-FLOOR-000001")["outcome"] == "already_used"
    wait_colour(page, YELLOW)
    expect(page.locator("#headline")).to_have_text("Already used")
    expect(page.locator("#details")).to_contain_text(
        re.compile(r"Used at gate north-1 \d\d:\d\d \(\d+ s ago\)")
    )

    assert gate.scan("A101-1")["reason"] == "unpaid"
    wait_colour(page, RED)
    expect(page.locator("#headline")).to_have_text("No entry")
    expect(page.locator("#text")).to_have_text("Order not paid")
    expect(page.locator("#advice")).to_have_text("Send to the box office")
    expect(page.locator("#s-scans")).to_have_text("3 scans this hour")


def test_an_old_rotating_code_says_by_how_much_and_shows_the_gates_clock(
    tmp_path: Path, live: LiveWorld, launch: Launcher, page: Page
) -> None:
    gate, url = screen_gate(tmp_path, live, launch)
    ready(page, url)
    claims = TicketClaims("L-0009", event_tag(LIVE_EVENT), session="now", zone="floor")
    holder = SecretKey.generate()
    cert = issue_certificate(claims, holder.public, live.issuer, DEFAULT_PERIOD)
    screenshot = encode_code(cert, step_of(time.time() - 60, DEFAULT_PERIOD), holder)
    assert gate.scan(screenshot)["reason"] == "expired_code"
    wait_colour(page, RED)
    text = page.locator("#text")
    expect(text).to_contain_text(re.compile(r"Code expired \d+ s ago"))
    expect(text).to_contain_text(re.compile(r"This gate's clock: \d\d:\d\d:\d\d UTC"))
    shown = re.search(r"(\d\d):(\d\d):(\d\d) UTC", text.text_content() or "")
    assert shown is not None
    now = time.gmtime()
    gap = (now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec) - (
        int(shown[1]) * 3600 + int(shown[2]) * 60 + int(shown[3])
    )
    assert 0 <= gap % 86400 < 120  # the gate's clock at the scan, not some other time
    expect(page.locator("#advice")).to_have_text(
        "Ask for the live ticket page; compare its clock with this gate's"
    )


def test_too_early_counts_down_to_the_opening(
    tmp_path: Path, live: LiveWorld, launch: Launcher, page: Page
) -> None:
    gate, url = screen_gate(tmp_path, live, launch)
    ready(page, url)
    # A signed ticket valid from two hours on: too early, within the open session.
    signed = live.sign("L-0100", session="now", zone="floor", valid_from=int(time.time()) + 7200)
    assert gate.scan(signed)["outcome"] == "too_early"
    wait_colour(page, YELLOW)
    expect(page.locator("#headline")).to_have_text("Too early")
    expect(page.locator("#name")).to_have_text("Grace Hopper")
    countdown = page.locator("#countdown")
    expect(countdown).to_have_text(re.compile(r"Opens in \d+:\d\d:\d\d"))

    def seconds_left() -> int:
        h, m, s = (int(n) for n in (countdown.text_content() or "").removeprefix("Opens in ").split(":"))
        return h * 3600 + m * 60 + s

    first = seconds_left()
    assert 7000 < first <= 7200
    page.wait_for_function(
        "first => { const [h, m, s] = document.getElementById('countdown').textContent"
        ".replace('Opens in ', '').split(':').map(Number); return h * 3600 + m * 60 + s < first; }",
        arg=first,
        timeout=SHOWN,
    )
    assert seconds_left() < first


def test_the_screen_returns_to_ready_after_the_hold(
    tmp_path: Path, live: LiveWorld, launch: Launcher, page: Page
) -> None:
    gate, url = screen_gate(tmp_path, live, launch, hold_ms=300)
    ready(page, url)
    gate.scan("A100-2")
    page.wait_for_function("() => document.body.dataset.state === 'allow'", timeout=SHOWN)
    expect(page.locator("#headline")).to_have_text("Ready", timeout=SHOWN)
    assert page.evaluate("document.body.dataset.state") == "ready"


def test_out_of_service_when_the_manifest_expires(
    tmp_path: Path, live: LiveWorld, launch: Launcher, page: Page
) -> None:
    short = live.manifest(1, tickets_csv=TICKETS, expires_in=int(time_left(live)) + 15)
    gate, url = screen_gate(tmp_path, live, launch, manifest=short)
    ready(page, url)
    expect(page.locator("#headline")).to_have_text("Out of service", timeout=60_000)
    wait_colour(page, OUT_OF_SERVICE)
    expect(page.locator("#text")).to_have_text("The manifest has expired")
    expect(page.locator("#advice")).to_contain_text("newer ticket list")
    assert gate.scan("A100-2")["reason"] == "manifest_expired"
    expect(page.locator("#text")).to_have_text("This gate's ticket list has expired")


def time_left(live: LiveWorld) -> float:
    """Seconds from the world's ``now`` to this moment (its manifests expire relative to the former)."""
    return time.time() - live.now


def test_out_of_service_without_a_manifest(
    tmp_path: Path, live: LiveWorld, launch: Launcher, page: Page
) -> None:
    gate, url = screen_gate(tmp_path, live, launch, manifest=b"")
    page.goto(url)
    expect(page.locator("#headline")).to_have_text("Out of service", timeout=SHOWN)
    expect(page.locator("#text")).to_have_text("No valid manifest")
    expect(page.locator("#advice")).to_contain_text("signed ticket list")
    assert gate.status()["in_service"] is False


def test_manual_entry_goes_through_the_scan_path_as_device_screen(
    tmp_path: Path, live: LiveWorld, launch: Launcher, page: Page
) -> None:
    gate, url = screen_gate(tmp_path, live, launch)
    ready(page, url)
    page.fill("#code", "A107-14")
    page.click("#manual button")
    wait_colour(page, GREEN)
    expect(page.locator("#code")).to_have_value("")
    rows = query(gate.ledger_path, "SELECT device, ticket_id, outcome FROM scans")
    assert rows == [("screen", "L-0009", "allow")]
    page.fill("#code", "A107-14")
    page.click("#manual button")
    wait_colour(page, YELLOW)


def test_the_page_recovers_when_the_gate_restarts(
    tmp_path: Path, live: LiveWorld, launch: Launcher, page: Page
) -> None:
    port = free_port()
    gate, url = screen_gate(tmp_path, live, launch, port=port)
    ready(page, url)
    assert gate.stop() == 0
    expect(page.locator("#s-link")).to_have_text("reconnecting", timeout=SHOWN)
    expect(page.locator("#headline")).to_have_text("No connection", timeout=SHOWN)
    again = launch(gate.config, name="again")
    expect(page.locator("#s-link")).to_have_text("live", timeout=30_000)
    expect(page.locator("#headline")).to_have_text("Ready")
    assert again.scan("A100-2")["outcome"] == "allow"
    wait_colour(page, GREEN)


def command(address: str, envelope: dict[str, object]) -> dict[str, object]:
    """POST a signed supervisor command to the gate's LAN API; its answer."""
    request = urllib.request.Request(
        f"http://{address}/v1/command", data=json.dumps(envelope).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return dict(json.loads(answer.read()))


def test_a_supervised_lane_waits_for_the_screens_confirm_and_a_closed_one_says_so(
    tmp_path: Path, launch: Launcher, page: Page
) -> None:
    world = make_live_world(tmp_path / "world", supervisors=("sam",))
    lan = f"127.0.0.1:{free_port()}"
    manifest = world.manifest(1, tickets_csv=TICKETS)
    extra = f'[lan]\nlisten = "{lan}"\n'
    gate, url = screen_gate(tmp_path, world, launch, manifest=manifest, lan=extra, hold_ms=5000)
    ready(page, url)
    assert command(lan, world.command("message", "Wheelchairs: lane 3"))["applied"] is True
    expect(page.locator("#message")).to_have_text("Wheelchairs: lane 3", timeout=SHOWN)
    assert command(lan, world.command("lane", "supervised"))["applied"] is True
    expect(page.locator("#s-lane")).to_have_text("Lane supervised", timeout=SHOWN)

    assert gate.request({"op": "scan", "payload": "A100-2"})["decision"]["pending"] is True
    page.wait_for_function("() => document.body.dataset.state === 'pending'", timeout=SHOWN)
    expect(page.locator("#headline")).to_have_text("Confirm entry")
    page.click("#confirm")
    wait_colour(page, GREEN)
    expect(page.locator("#headline")).to_have_text("Go ahead")
    expect(page.locator("#confirm")).to_be_hidden()
    assert gate.status()["lane"]["pending"] is None
    wait_until(lambda: gate.counters().get("lane:confirmed") == 1, what="the confirmation counted")

    assert command(lan, world.command("lane", "closed"))["applied"] is True
    expect(page.locator("#headline")).to_have_text("Out of service", timeout=SHOWN)
    expect(page.locator("#text")).to_have_text("This lane is closed by supervisor sam")
    expect(page.locator("#advice")).to_have_text("Send people to another lane")
    assert gate.scan("A100-1")["reason"] == "lane_closed"
    wait_colour(page, RED)
    expect(page.locator("#headline")).to_have_text("Lane closed")
