"""``[screen]``: where the gate screen listens, and what it may show and take there.

The screen shows holders' names, takes a steward's typed codes and confirms a supervised
lane's held allows, so each is on by default only when it listens on a loopback address
(the kiosk on the gate's own display); on any other address each must be asked for
(``names``, ``manual_entry``, ``confirm``), and then the screen needs a pairing token
(``token``, a file only the service can read) and the names its display asks for
(``hosts``). docs/SECURITY.md, "The gate screen", says why.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gate_daemon.config.sections import ScreenSection
from gate_daemon.config.toml import Checker, KeyPath

DEFAULT_LISTEN = "127.0.0.1:8080"
KEYS = {"listen", "names", "manual_entry", "confirm", "hosts", "token"}
#: A name the display may use for the gate (``gate-3.venue.lan``, ``192.168.1.20``, ``[fd00::3]`` bare).
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.:-]{0,251}[A-Za-z0-9])?")
MAX_HOSTS = 16


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    """Whether ``host`` is the any-address (``0.0.0.0``, ``::``), which no display can ask for."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _hosts(check: Checker, tbl: dict[str, Any], at: KeyPath, listen_host: str) -> tuple[str, ...]:
    """The names a request's ``Host`` may give: the listen address's and ``hosts``."""
    names = check.strings(tbl, at, "hosts")
    if len(names) > MAX_HOSTS:
        check.problem((*at, "hosts"), f"at most {MAX_HOSTS} names")
    for index, name in enumerate(names):
        if not _HOST.fullmatch(name):
            check.problem((*at, "hosts", index), f"{name!r} must be a host name or address, without a port")
    own = () if is_wildcard(listen_host) else (listen_host,)
    allowed = tuple(dict.fromkeys(name.lower() for name in (*own, *names)))
    if not allowed:
        check.problem(
            (*at, "hosts"),
            f"a listen on {listen_host} needs the names the display uses for this gate "
            '(hosts = ["gate-3.venue.lan"])',
        )
    return allowed


def screen_section(
    check: Checker,
    value: object,
    listen_pattern: re.Pattern[str],
    resolve: Callable[[str, KeyPath], Path],
) -> ScreenSection:
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
    manual_entry = check.boolean(tbl, at, "manual_entry", default=local)
    section = ScreenSection(
        host=host,
        port=port,
        names=check.boolean(tbl, at, "names", default=local),
        manual_entry=manual_entry,
        confirm=check.boolean(tbl, at, "confirm", default=local),
        hosts=() if local else _hosts(check, tbl, at, host),
        token=resolve(raw, (*at, "token"))
        if (raw := check.string(tbl, at, "token", max_bytes=4096))
        else None,
    )
    if not local and section.token is None and (section.names or section.manual_entry or section.confirm):
        on = [key for key in ("names", "manual_entry", "confirm") if getattr(section, key)]
        check.problem(
            (*at, "token"),
            f"a screen off loopback ({host}) with {' and '.join(on)} on needs a pairing token: "
            'token = "${CREDENTIALS_DIRECTORY}/screen-token" (docs/SCREEN.md)',
        )
    return section
