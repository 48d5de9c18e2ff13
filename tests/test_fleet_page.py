"""The central's ``/fleet`` page in headless Chromium, with a real central and real gates.

A gate killed goes to the top of the table as unreachable with its SOP card, and comes
back well when it is started again; with the central gone, the page says so and shows
the central_down card from its last answer. A supervisor's key file, loaded into the
page, signs a lane command in the browser; the central hands it to the gate in its
heartbeat answer and the gate refuses scans with ``lane_closed`` until it is reopened.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.central_process import CONVERGE
from tests.fleet_fixtures import SUPERVISOR, Venue
from tests.gate_process import wait_until
from tests.live import payload

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
    expect(rows.first.locator(".reason")).to_contain_text("not heard from for")
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


def lane(venue: Venue, gate_id: str) -> str:
    state: str = venue.gates[gate_id].status()["lane"]["state"]
    return state


def command(page: Page, kind: str, value: str) -> None:
    """Press the command's button and wait for the central's answer on the page."""
    page.locator("#command-result").evaluate("node => { node.textContent = ''; node.className = ''; }")
    page.locator(f'#commands button[data-kind="{kind}"][data-value="{value}"]').click()
    expect(page.locator("#command-result")).to_have_class("sent", timeout=WAIT_MS)


def test_a_lane_closed_from_the_fleet_page_makes_the_gate_answer_lane_closed(
    venue: Venue, page: Page
) -> None:
    page.set_viewport_size({"width": 1400, "height": 900})
    venue.start("north-1")
    venue.wait_heard("north-1")
    page.goto(f"{venue.central.url}/fleet")
    north = page.locator('#gates tbody tr[data-gate="north-1"]')
    expect(north).to_have_attribute("data-conditions", "", timeout=WAIT_MS)

    # No key yet: nothing is signed, nothing is sent.
    page.locator('#commands button[data-value="closed"]').click()
    expect(page.locator("#command-result")).to_have_text("Load your key file first.")
    page.locator("#keyfile").set_input_files(venue.world.live.gate_keys["north-1"].with_suffix(".pub"))
    expect(page.locator("#key-state")).to_contain_text("key refused: not a supervisor key file")

    page.locator("#supervisor").fill(SUPERVISOR)
    page.locator("#keyfile").set_input_files(venue.world.live.supervisor_keys[SUPERVISOR])
    expect(page.locator("#key-state")).to_contain_text("key loaded from sam.key")
    page.locator("#command-gate").select_option("north-1")
    command(page, "lane", "closed")

    wait_until(lambda: lane(venue, "north-1") == "closed", CONVERGE, "the gate to apply the closed lane")
    refused = venue.gates["north-1"].scan(payload(1))
    assert (refused["outcome"], refused["reason"]) == ("deny", "lane_closed")
    expect(north).to_have_attribute("data-conditions", "lane_closed", timeout=WAIT_MS)
    expect(north.locator("td").nth(2)).to_contain_text(f"closed by {SUPERVISOR}")
    expect(page.locator('#cards article[data-condition="lane_closed"] strong').first).to_have_text(
        "A supervisor closed this lane."
    )

    # The closed lane holds across a restart of the gate.
    venue.kill("north-1")
    venue.start("north-1")
    assert lane(venue, "north-1") == "closed"
    assert venue.gates["north-1"].scan(payload(2))["reason"] == "lane_closed"

    page.locator("#message").fill("Use lane 2 – back at 20:15")
    page.locator("#send-message").click()
    expect(page.locator("#command-result")).to_have_class("sent", timeout=WAIT_MS)
    command(page, "lane", "open")
    wait_until(lambda: lane(venue, "north-1") == "open", CONVERGE, "the gate to reopen")
    assert venue.gates["north-1"].status()["lane"]["message"] == "Use lane 2 – back at 20:15"
    allowed = venue.gates["north-1"].scan(payload(3))
    assert allowed["outcome"] == "allow", allowed
    expect(north).to_have_attribute("data-conditions", "", timeout=WAIT_MS)
