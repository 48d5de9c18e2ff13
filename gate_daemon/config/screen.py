"""``[screen]``: where the gate screen listens, and what it may show and take there.

The screen shows holders' names and takes a steward's typed codes, so both are on by
default only when it listens on a loopback address (the kiosk on the gate's own
display); on any other address each must be asked for (``names``, ``manual_entry``).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from gate_daemon.config.sections import ScreenSection
from gate_daemon.config.toml import Checker, KeyPath

DEFAULT_LISTEN = "127.0.0.1:8080"
KEYS = {"listen", "names", "manual_entry"}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def screen_section(check: Checker, value: object, listen_pattern: re.Pattern[str]) -> ScreenSection:
    """The screen's section; off (``ScreenSection()``) when the config has no ``[screen]`` table."""
    if value is None:
        return ScreenSection()
    at: KeyPath = ("screen",)
    tbl: dict[str, Any] = check.table(value, at, KEYS)
    listen = check.string(tbl, at, "listen", default=DEFAULT_LISTEN, max_bytes=100)
    match = listen_pattern.fullmatch(listen)
    port = int(match.group("port")) if match else 0
    if match is None or not 0 <= port <= 65535:  # 0: a free port the system picks
        check.problem((*at, "listen"), f"{listen!r} must be HOST:PORT (127.0.0.1:8080, 0.0.0.0:8080)")
        return ScreenSection()
    host = match.group("v6") or match.group("host")
    local = is_loopback(host)
    return ScreenSection(
        host=host,
        port=port,
        names=check.boolean(tbl, at, "names", default=local),
        manual_entry=check.boolean(tbl, at, "manual_entry", default=local),
    )
