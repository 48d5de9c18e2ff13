"""Staff badges on the gate screen, in a real browser: a real gate-daemon, Debian's Chromium reading it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from playwright.sync_api import Page, expect

from gate_daemon.core.badges import BadgeClaims, Role, encode_badge
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.tokens import event_tag
from tests.gate_process import Launcher
from tests.live import EVENT_ID, LiveWorld
from tests.test_screen_page import GREEN, SHOWN, TICKETS, ready, screen_gate, wait_colour

#: The staff colour (``--staff`` in screen.css).
STAFF = "rgb(91, 42, 134)"


def test_a_badge_signs_in_on_the_screen_and_an_override_shows_who(
    tmp_path: Path, live: LiveWorld, launch: Launcher, page: Page
) -> None:
    key = SecretKey.generate()
    event = dataclasses.replace(live.event, staff_keys=(key.public,))
    gate, url = screen_gate(
        tmp_path, live, launch, manifest=live.manifest(1, tickets_csv=TICKETS, event=event)
    )
    ready(page, url)
    expect(page.locator("#s-staff")).to_have_text("Nobody signed in", timeout=SHOWN)

    def badge(operator: str, name: str, role: Role) -> str:
        return encode_badge(BadgeClaims(operator, name, role, event_tag(EVENT_ID)), key)

    assert gate.scan(badge("ann", "Ann Steward", Role.STEWARD))["reason"] == "staff_signed_in"
    wait_colour(page, STAFF)
    expect(page.locator("#headline")).to_have_text("Staff badge")
    expect(page.locator("#text")).to_have_text("Signed in: Ann Steward")
    expect(page.locator("#s-staff")).to_have_text("Signed in: Ann Steward (steward)", timeout=SHOWN)

    assert gate.scan("REF-LIVE-FLOOR-000001")["outcome"] == "allow"
    assert gate.scan("REF-LIVE-FLOOR-000001")["outcome"] == "already_used"
    assert gate.scan(badge("sam", "Sam Super", Role.SUPERVISOR))["reason"] == "overridden"
    wait_colour(page, GREEN)
    expect(page.locator("#headline")).to_have_text("Go ahead")
    expect(page.locator("#text")).to_have_text("Admitted by supervisor Sam Super (was already_used)")
    expect(page.locator("#name")).to_have_text("Ada Lovelace")
    # The override signed nobody in: the steward is still on duty.
    expect(page.locator("#s-staff")).to_have_text("Signed in: Ann Steward (steward)")
