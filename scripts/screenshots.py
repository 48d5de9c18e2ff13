"""Make docs/screen/*.png: the gate screen for each outcome, from a real gate in a real browser.

    .venv/bin/python scripts/screenshots.py [OUT_DIR]      (default: docs/screen)

Builds a demo event (keys, event.toml, tickets.csv with holders' names) with the package's
own writers, starts ``gate-daemon`` with its screen on a free loopback port, opens the
screen in Debian's Chromium (800x480, the 7-inch display) and scans each outcome through
the control socket; then a supervisor's message, a supervised lane (an allow waiting for
the steward's confirmation) and a closed lane, by signed commands to the gate's LAN API;
a second gate without a manifest shows "out of service", and the first one stopped shows
the screen's lost connection. Needs ``scripts/bootstrap test``
(Chromium and playwright). Run it again whenever the screen changes: docs/SCREEN.md
shows what it writes.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from gate_daemon.core.commands import Command, sign
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.times import format_instant
from gate_daemon.core.tokens import TicketClaims, encode_signed, event_tag
from gate_daemon.daemon.control import ask
from gate_daemon.provision.build import build_manifest
from gate_daemon.provision.event import load_event
from gate_daemon.provision.keyfiles import write_keypair
from gate_daemon.provision.tickets import load_tickets

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TICKETS = """\
ticket_id,order_id,seat,status,session,zone,entries,code,name
T-0001,A100,12,completed,tonight,floor,1,,Ada Lovelace
T-0002,A101,14,pending,tonight,floor,1,,Alan Turing
T-0003,A102,15,completed,tonight,floor,1,,Grace Hopper
T-0004,A103,16,completed,tonight,floor,1,,Katherine Johnson
"""
#: What each picture shows: (file, payload to scan or None, the body's data-state to wait for).
SHOTS = [
    ("ready", None, "ready"),
    ("allow", "A100-12", "allow"),
    ("already_used", "A100-12", "already_used"),
    ("deny", "A101-14", "deny"),
    ("too_early", "SIGNED-T-0003", "too_early"),
]


def event_toml(now: float) -> str:
    return f"""\
ticket_keys = ["issuer.pub"]

[event]
id = "demo-2026"
name = "Demo Night"

[[sessions]]
id = "tonight"
name = "Tonight"
starts_at = {format_instant(now - 1800)}
ends_at = {format_instant(now + 6 * 3600)}
entry_opens_minutes = 60

[[zones]]
id = "floor"
name = "Floor"

[[supervisors]]
id = "sam"
pub = "sam.pub"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gate_config(work: Path, name: str, port: int, manifest: Path, lan: int | None = None) -> Path:
    state = work / name
    state.mkdir()
    config = work / f"{name}.toml"
    config.write_text(
        f'[gate]\nid = "{name}"\nevent = "demo-2026"\nzone = "floor"\nstate_dir = "{state}"\n'
        f'[manifest]\npath = "{manifest}"\ntrusted_keys = ["{work / "signer.pub"}"]\n'
        '[input]\nkind = "none"\n[signals]\nkind = "none"\nhold_ms = 60000\n'
        f'[control]\nsocket = "{state / "control.sock"}"\n'
        f'[screen]\nlisten = "127.0.0.1:{port}"\n'
        + (f'[lan]\nlisten = "127.0.0.1:{lan}"\n' if lan is not None else "")
    )
    return config


def command(lan: int, supervisor: SecretKey, kind: str, value: str) -> None:
    """A supervisor's signed command, POSTed to the gate's LAN API (docs/COMMANDS.md)."""
    body = Command(
        event="demo-2026",
        gate="north-1",
        kind=kind,  # type: ignore[arg-type]
        value=value,
        supervisor="sam",
        issued_ms=int(time.time() * 1000),
        nonce=secrets.token_hex(16),
    )
    data = json.dumps(sign(body, supervisor).envelope()).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{lan}/v1/command", data=data, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 (an http URL made here)
        assert json.loads(answer.read())["applied"] is True


@contextlib.contextmanager
def gate(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "gate-daemon"), "--config", str(config)], stdout=out, stderr=out
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
                process.wait(30)


def wait_page(page: Page, url: str, state: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            page.goto(url)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    page.wait_for_function(f"() => document.body.dataset.state === '{state}'", timeout=30_000)


def shoot(page: Page, out: Path, name: str) -> None:
    page.wait_for_timeout(300)  # let the countdown and the strip draw their first tick
    page.screenshot(path=str(out / f"{name}.png"))
    print(f"wrote {out / name}.png")


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        work = Path(tmp)
        now = time.time()
        _, _, signer = write_keypair(work / "signer")
        _, _, issuer = write_keypair(work / "issuer")
        _, _, supervisor = write_keypair(work / "sam")
        (work / "event.toml").write_text(event_toml(now))
        (work / "tickets.csv").write_text(TICKETS)
        event = load_event(work / "event.toml")
        manifest = work / "manifest.gdm"
        tickets = load_tickets(work / "tickets.csv", event)
        manifest.write_bytes(build_manifest(event, tickets, signer, version=1, issued_at=int(now) - 600))
        claims = TicketClaims("T-0003", event_tag("demo-2026"), session="tonight", valid_from=int(now) + 5400)
        payloads = {"SIGNED-T-0003": encode_signed(claims, issuer)}
        chromium = shutil.which("chromium")
        assert chromium is not None, "chromium is not installed: run scripts/bootstrap test"
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(
            viewport={"width": 800, "height": 480}, locale="en-GB", timezone_id="Europe/Berlin"
        )
        page = context.new_page()
        port, empty_port, lan = free_port(), free_port(), free_port()
        url = f"http://127.0.0.1:{port}/screen"
        north = gate_config(work, "north-1", port, manifest, lan)
        control = work / "north-1" / "control.sock"
        with gate(north, work / "north-1.log") as process:
            wait_page(page, url, "ready")
            for name, payload, state in SHOTS:
                if payload is not None:
                    ask(control, {"op": "scan", "payload": payloads.get(payload, payload)})
                    page.wait_for_function(f"() => document.body.dataset.state === '{state}'", timeout=30_000)
                shoot(page, out, name)
            command(lan, supervisor, "message", "Wheelchair users: lane 3, on the left")
            command(lan, supervisor, "lane", "supervised")
            ask(control, {"op": "scan", "payload": "A103-16"})
            page.wait_for_function("() => !document.getElementById('confirm').hidden", timeout=30_000)
            shoot(page, out, "confirm")
            command(lan, supervisor, "lane", "closed")
            page.wait_for_function("() => document.body.dataset.state === 'out_of_service'", timeout=30_000)
            shoot(page, out, "lane_closed")
            process.terminate()
            process.wait(30)
            page.wait_for_function("() => document.body.dataset.state === 'disconnected'", timeout=30_000)
            shoot(page, out, "no_connection")
        south = gate_config(work, "south-1", empty_port, work / "none.gdm")
        with gate(south, work / "south-1.log"):
            wait_page(page, f"http://127.0.0.1:{empty_port}/screen", "out_of_service")
            shoot(page, out, "out_of_service")
        browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screen")
