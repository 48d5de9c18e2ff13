"""The holder's page of a rotating ticket in a real browser, its screenshots decoded, a real gate deciding.

Headless Chromium opens the page ``issue_rotating`` writes (the file ``gatectl ticket issue
--rotating --html`` writes) from disk with no network, its clock fixed by Playwright. Each
screenshot is decoded with zxing-cpp, as the gate's camera decodes a frame, and the text
goes to a gate on a real ledger file.
"""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page

from gate_daemon.cli.gatectl import main as gatectl
from gate_daemon.core.decision import Checkpoint, evaluate
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.reasons import Reason
from gate_daemon.core.rotating import RotatingCode, encode_code, step_of
from gate_daemon.core.tokens import TicketClaims, event_tag, parse_payload
from gate_daemon.hardware.decoders import ZxingDecoder, frame_from_image
from gate_daemon.provision.holder import HolderPage, issue_rotating
from tests.gate_fixtures import gate_rig
from tests.loop_thread import LoopThread
from tests.support import EVENT_ID, ISSUED, SAT_START, World
from tests.test_rotating import page_ticket

FLOOR = Checkpoint(zone="floor")
PERIOD = 15
#: Three moments the page is shown at: two steps in a row, then a minute after the first.
FIRST, SECOND, LATER = SAT_START + 2, SAT_START + 17, SAT_START + 62
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def ticket_page(shared_world: World, tmp_path: Path) -> Path:
    path = tmp_path / "ticket.html"
    claims = TicketClaims("T-ROT-7", event_tag(EVENT_ID), session="sat", zone="floor")
    page = HolderPage("Demo Night", seat="Row 4 Seat 12", session="sat", zone="floor", issued_at=ISSUED)
    issue_rotating(claims, shared_world.issuer, PERIOD, page, path)
    return path


def show_at(page: Page, moment: float) -> str:
    """Move the page's clock to ``moment``, wait for that step's code, and decode a screenshot of the page."""
    page.clock.pause_at(moment)
    page.clock.run_for(300)  # the page's 250 ms tick
    page.wait_for_selector(f'#code[data-step="{step_of(moment, PERIOD)}"]', timeout=10_000)
    shot = Image.open(io.BytesIO(page.screenshot(full_page=True)))
    found = ZxingDecoder().decode(frame_from_image(shot))
    assert len(found) == 1, found
    return found[0]


def open_page(page: Page, path: Path, moment: float) -> list[str]:
    """Open the page as a phone offline, its clock just before ``moment``; the requests it makes."""
    page.set_viewport_size(PHONE)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if not r.url.startswith("file:") else None)
    page.context.set_offline(True)
    page.clock.install(time=moment - 10)
    page.goto(path.as_uri())
    return requests


def test_two_moments_two_codes_each_admitted_in_its_step(
    page: Page, ticket_page: Path, shared_world: World
) -> None:
    requests = open_page(page, ticket_page, FIRST)
    first = show_at(page, FIRST)
    second = show_at(page, SECOND)
    assert first != second
    assert first.startswith("GDR1:") and second.startswith("GDR1:")
    for payload, moment in ((first, FIRST), (second, SECOND)):
        decision = evaluate(payload, shared_world.manifest, FLOOR, moment)
        assert decision.reason is Reason.OK, decision
        assert decision.ticket_id == "T-ROT-7"
    # The first screenshot shown again a minute later, ticket unused: expired.
    again = evaluate(first, shared_world.manifest, FLOOR, LATER)
    assert again.reason is Reason.EXPIRED_CODE
    # A code made a minute ahead (a phone clock a minute fast) is refused too, by name.
    ahead = evaluate(show_at(page, LATER), shared_world.manifest, FLOOR, FIRST)
    assert ahead.reason is Reason.EXPIRED_CODE
    assert "in the future" in ahead.message
    # The page shows the event, the seat, its clock and the seconds left.
    text = page.inner_text("main")
    assert "Demo Night" in text and "Row 4 Seat 12" in text
    assert "19:01:02 UTC" in text
    assert "New code in" in text
    assert page.is_hidden("#warning")
    assert requests == []  # one file, nothing fetched


def test_the_gate_admits_the_live_code_once_then_refuses_a_screenshot_and_a_second_entry(
    page: Page, ticket_page: Path, shared_world: World, tmp_path: Path, loop: LoopThread
) -> None:
    open_page(page, ticket_page, FIRST)
    live = show_at(page, FIRST)
    later_live = show_at(page, LATER)

    async def at_the_gate() -> list[Reason]:
        async with gate_rig(shared_world, tmp_path / "gate", now=FIRST) as rig:
            admitted = await rig.gate.scan(live, device="camera")
            rig.clock.now = LATER
            screenshot = await rig.gate.scan(live, device="camera")
            second = await rig.gate.scan(later_live, device="camera")
            # The ledger keys the ticket by its id: both codes are one ticket.
            ids = rig.rows("SELECT DISTINCT ticket_id FROM scans")
            assert ids == [("T-ROT-7",)]
            return [admitted.decision.reason, screenshot.decision.reason, second.decision.reason]

    reasons = loop.run(at_the_gate())
    assert reasons == [Reason.OK, Reason.EXPIRED_CODE, Reason.ALREADY_USED]
    # Nothing the gate holds can mint a code: no file of it (the manifest, its private copy,
    # the ledger) and no file the venue builds it from holds the holder's key, in any spelling.
    seed = base64.b64decode(str(page_ticket(ticket_page)["holder_seed"]))
    spellings = [seed, base64.b64encode(seed), seed.hex().encode(), base64.b32encode(seed).rstrip(b"=")]
    held = [f for f in (tmp_path / "gate").rglob("*") if f.is_file()]
    held += [shared_world.manifest_path, shared_world.event_path, shared_world.tickets_path]
    assert any(f.name == "manifest.active" for f in held) and any(f.suffix == ".sqlite" for f in held)
    for path in held:
        data = path.read_bytes()
        assert not any(s in data for s in spellings), path


def test_a_phone_clock_before_the_ticket_was_issued_is_warned_about(page: Page, ticket_page: Path) -> None:
    behind = ISSUED - 86400
    open_page(page, ticket_page, behind)
    show_at(page, behind)
    assert page.is_visible("#warning")
    assert "clock is behind" in page.inner_text("#warning")


def test_the_code_is_the_holders_key_over_the_certificate_in_the_page(page: Page, ticket_page: Path) -> None:
    open_page(page, ticket_page, FIRST)
    code = parse_payload(show_at(page, FIRST))
    assert isinstance(code, RotatingCode)
    ticket = page_ticket(ticket_page)
    assert code.certificate == base64.b64decode(str(ticket["certificate"]))
    assert code.step == step_of(FIRST, PERIOD)


def test_a_page_issued_from_the_event_file_states_its_tolerance_and_clock(
    page: Page, shared_world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = shared_world.event_path.read_text()
    event = tmp_path / "event.toml"
    event.write_text(text.replace('name = "Demo Night"', 'name = "Demo Night"\nrotating_tolerance = 2'))
    for pub in shared_world.dir.glob("*.pub"):
        (tmp_path / pub.name).write_bytes(pub.read_bytes())
    html = tmp_path / "ticket.html"
    args = ["ticket", "issue", "--key", str(shared_world.issuer_key), "--event", EVENT_ID]
    args += ["--ticket-id", "T-ROT-11", "--zone", "floor", "--rotating", "--html", str(html)]
    assert gatectl([*args, "--event-file", str(event)]) == 0, capsys.readouterr().err
    ticket = page_ticket(html)
    assert (ticket["tolerance"], ticket["event"]) == (2, "Demo Night")
    # The options cannot contradict the file the gates' manifest is built from, nor its event.
    assert gatectl([*args, "--event-file", str(event), "--tolerance", "3"]) == 1
    assert "differs from rotating_tolerance = 2" in capsys.readouterr().err
    assert gatectl([*args, "--event", "other-2026", "--event-file", str(event)]) == 1
    assert "not --event 'other-2026'" in capsys.readouterr().err
    assert gatectl([*args, "--tolerance", "0"]) == 0 and page_ticket(html)["tolerance"] == 0
    assert gatectl(args) == 0 and page_ticket(html)["tolerance"] == 1
    assert "assumes the default tolerance" in capsys.readouterr().err
    gatectl([*args, "--event-file", str(event)])
    open_page(page, html, FIRST)
    show_at(page, FIRST)
    # The phone's UTC clock, to the second, large: what a steward compares with the gate screen's.
    assert page.inner_text("#utc") == "19:00:02 UTC"
    accepts = page.inner_text("#accepts")
    assert "within 30 s of the gate's clock" in accepts  # 2 steps of 15 s
    issued = time.strftime("%Y-%m-%d %H:%M", time.gmtime(int(str(ticket["issued_at"]))))
    assert f"Ticket issued {issued} UTC" in accepts


#: A browser without Ed25519 in WebCrypto (before Chrome 137, Safari 17, Firefox 129): importing
#: an Ed25519 key is refused as such a browser refuses it.
NO_WEBCRYPTO_ED25519 = """
(() => {
  const subtle = crypto.subtle;
  const importKey = subtle.importKey.bind(subtle);
  subtle.importKey = (format, data, algorithm, ...rest) => {
    const name = typeof algorithm === "string" ? algorithm : algorithm && algorithm.name;
    if (String(name).toLowerCase() === "ed25519") {
      return Promise.reject(new DOMException("Unrecognized algorithm name", "NotSupportedError"));
    }
    return importKey(format, data, algorithm, ...rest);
  };
})();
"""


def test_without_ed25519_in_webcrypto_the_bundled_library_signs_the_same_code(
    page: Page, ticket_page: Path, shared_world: World
) -> None:
    page.add_init_script(NO_WEBCRYPTO_ED25519)
    requests = open_page(page, ticket_page, FIRST)
    payload = show_at(page, FIRST)
    assert page.get_attribute("body", "data-signer") == "noble"
    assert page.is_hidden("#problem")
    decision = evaluate(payload, shared_world.manifest, FLOOR, FIRST)
    assert decision.reason is Reason.OK, decision
    # Ed25519 is deterministic: the library's code is the one WebCrypto (and the gate's own
    # encoder) makes from the same key, certificate and step.
    ticket = page_ticket(ticket_page)
    holder = SecretKey(base64.b64decode(str(ticket["holder_seed"])))
    certificate = base64.b64decode(str(ticket["certificate"]))
    assert payload == encode_code(certificate, step_of(FIRST, PERIOD), holder)
    assert requests == []


def test_with_ed25519_in_webcrypto_the_page_signs_with_it(page: Page, ticket_page: Path) -> None:
    open_page(page, ticket_page, FIRST)
    show_at(page, FIRST)
    assert page.get_attribute("body", "data-signer") == "webcrypto"
