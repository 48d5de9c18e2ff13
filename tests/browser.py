"""Pages in a real browser: Debian's Chromium, driven by pip's playwright.

``playwright install`` cannot download browsers here, so the launch names Debian's
binary by path. As root Chromium needs ``--no-sandbox``; the background-networking
flags keep it from calling out of a closed network. ``tests/conftest.py`` makes the
fixtures ``chromium`` and ``page`` available to every test module.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def chromium_path() -> str:
    """Debian's Chromium; ``scripts/bootstrap test`` installs it."""
    path = shutil.which("chromium")
    if path is None:
        raise RuntimeError("chromium is not installed: run scripts/bootstrap test")
    return path


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """One headless Chromium per test module (a start costs about a second)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    """A fresh context and page (no cookies or storage from another test), 800x480 like the gate's display."""
    context = chromium.new_context(viewport={"width": 800, "height": 480})
    try:
        yield context.new_page()
    finally:
        context.close()
