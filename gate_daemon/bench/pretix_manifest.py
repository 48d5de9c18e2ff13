"""A signed gate manifest of a running test pretix's event, read through its API in one go.

What the bench and the tests decide pretix tickets against, built with the same functions
the bridge uses (``provision.pretix_manifest``); not the bridge itself: no deltas, no
cursors, the team token instead of a device.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from gate_daemon.bench.pretix_lab import PretixServer
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.manifest import Manifest, open_manifest
from gate_daemon.core.manifest_header import Session, Zone
from gate_daemon.core.pretix_sig import parse_pretix_header
from gate_daemon.provision.build import build_manifest
from gate_daemon.provision.event import EventSpec
from gate_daemon.provision.pretix_manifest import position_entry, pretix_header

ZONES = {"main": "Main entrance", "vip": "VIP lounge"}


def _pages(server: PretixServer, path: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    page = 1
    while True:
        sep = "&" if "?" in path else "?"
        answer = server.event_api("GET", f"{path}{sep}page={page}&page_size=50")
        found.extend(answer["results"])
        if not answer["next"]:
            return found
        page += 1


def _instant(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).timestamp())


def gate_event(server: PretixServer, detail: dict[str, Any]) -> EventSpec:
    """The venue's side: one session from the event's dates, a zone per seeded list."""
    opens = _instant(detail["date_admission"] or detail["date_from"])
    starts = _instant(detail["date_from"])
    ends = _instant(detail["date_to"]) if detail["date_to"] else starts + 86400
    minutes = max(0, (starts - opens) // 60)
    session = Session("day", "Gate day", starts, ends, minutes)
    zones = tuple(Zone(z, name) for z, name in ZONES.items())
    return EventSpec(server.event, "Gate 2026", (session,), zones, (), False, (), ())


def gate_manifest(server: PretixServer, key: SecretKey, *, version: int = 1) -> Manifest:
    """The event's manifest as of now, signed by ``key``: every position, revoked and blocked secret."""
    detail = server.event_api("GET", "")
    lists = {z: server.event_api("GET", f"checkinlists/{server.lists[z]}/") for z in ZONES}
    header = pretix_header(
        server.event,
        detail["valid_keys"]["pretix_sig1"],
        lists,
        _pages(server, "items/"),
        {},
        [r["secret"] for r in _pages(server, "revokedsecrets/")],
        [b["secret"] for b in _pages(server, "blockedsecrets/") if b["blocked"]],
    )
    rules = parse_pretix_header(header)
    assert rules is not None  # pretix_header always writes pretix_keys
    tickets = [
        entry
        for order in _pages(server, "orders/?include_canceled_positions=true")
        for position in order["positions"]
        if (entry := position_entry(server.event, position, order, rules, {})) is not None
    ]
    now = int(dt.datetime.now(dt.UTC).timestamp())
    data = build_manifest(
        gate_event(server, detail), tickets, key, version=version, issued_at=now, extra_header=header
    )
    return open_manifest(data, [key.public])
