"""The browser harness itself: Chromium starts, renders a page from 127.0.0.1 and runs its script."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Page

HTML = b"""<!doctype html><title>probe</title><p id="out">waiting</p>
<script>document.getElementById("out").textContent = String(6 * 7);</script>"""


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(HTML)))
        self.end_headers()
        self.wfile.write(HTML)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_chromium_runs_a_page_script(page: Page, site: str) -> None:
    page.goto(site)
    assert page.locator("#out").text_content() == "42"
    assert page.viewport_size == {"width": 800, "height": 480}
