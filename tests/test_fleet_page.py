"""The central's ``/fleet`` page in headless Chromium, with a real central and real gates.

A gate killed goes to the top of the table as unreachable with its SOP card, and comes
back well when it is started again; with the central gone, the page says so and shows
the central_down card from its last answer.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.central_process import CONVERGE
from tests.fleet_fixtures import Venue

pytestmark = pytest.mark.slow

#: Playwright waits in milliseconds; they end as soon as the page shows what is expected.
WAIT_MS = int(CONVERGE * 1000)


def test_the_fleet_page_shows_a_gate_going_down_and_back(venue: Venue, page: Page) -> None:
    page.set_viewport_size({"width": 1400, "height": 900})
    for gate_id in ("north-1", "south-1"):
        venue.start(gate_id)
    venue.wait_heard("north-1", "south-1")
    page.goto(f"{venue.central.url}/fleet")
    rows = page.locator("#gates tbody tr")
    south = page.locator('#gates tbody tr[data-gate="south-1"]')

    expect(page.locator("#summary")).to_have_text("all 2 gates well", timeout=WAIT_MS)
    expect(south).to_have_attribute("data-conditions", "")
    expect(south.locator("td").nth(1)).to_have_text("yes")
    expect(page.locator("#cards article")).to_have_count(0)

    venue.kill("south-1")

    expect(rows.first).to_have_attribute("data-gate", "south-1", timeout=WAIT_MS)
    expect(rows.first).to_have_attribute("data-conditions", "unreachable", timeout=WAIT_MS)
    expect(rows.first).to_have_class("attention")
    expect(rows.first.locator("td").nth(1)).to_have_text("NO")
    expect(page.locator("#summary")).to_have_text("1 of 2 gates need attention")
    card = page.locator('#cards article[data-condition="unreachable"]')
    expect(card.locator("strong").first).to_have_text("The gate does not answer.")
    expect(card.locator("ol li")).to_have_count(4)

    venue.start("south-1")

    expect(page.locator("#summary")).to_have_text("all 2 gates well", timeout=WAIT_MS)
    expect(south).to_have_attribute("data-conditions", "")
    expect(page.locator("#cards article")).to_have_count(0)

    venue.central.close()

    expect(page.locator("#link")).to_have_class("link-down", timeout=WAIT_MS)
    expect(page.locator("#link")).to_contain_text("central unreachable")
    expect(page.locator('#cards article[data-condition="central_down"] strong').first).to_have_text(
        "The central cannot be reached."
    )
    expect(rows).to_have_count(2)  # the last answer stays on screen
