"""The gate event a test pretix is seeded with: organizer, team token, event, lists, orders.

Two steps need pretix's Django shell (the team and its token; the event's
``ticket_secret_generator = "pretix_sig1"``, which the API cannot write); everything else
goes through the REST API as a venue's tools would.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gate_daemon.errors import GateError

if TYPE_CHECKING:
    from gate_daemon.bench.pretix_lab import PretixServer


@dataclass(frozen=True, slots=True)
class SeededPosition:
    """One order position the seed made, with what the tests need of it."""

    name: str
    order: str
    position_id: int
    item: str
    secret: str
    state: str
    current_secret: str = ""


_TEAM = """
from pretix.base.models import Organizer, Team
o = Organizer.objects.create(name="Gate Org", slug="{org}")
t = Team.objects.create(organizer=o, name="gate-daemon", all_events=True,
                        all_event_permissions=True, all_organizer_permissions=True)
print("TOKEN=" + t.tokens.create(name="gate-daemon tests").token)
"""

_SIGNED = """
from pretix.base.models import Event
e = Event.objects.get(organizer__slug="{org}", slug="{event}")
e.settings.ticket_secret_generator = "pretix_sig1"
print("SIGNED=" + e.settings.ticket_secret_generator)
"""


def _iso(moment: dt.datetime) -> str:
    return moment.replace(microsecond=0).isoformat()


def _make_event(server: PretixServer) -> None:
    now = dt.datetime.now(dt.UTC)
    answer = server.api(
        "POST",
        f"organizers/{server.organizer}/events/",
        {
            "name": {"en": "Gate 2026"},
            "slug": server.event,
            "currency": "EUR",
            "live": False,
            "date_from": _iso(now + dt.timedelta(hours=1)),
            "date_to": _iso(now + dt.timedelta(hours=8)),
            "date_admission": _iso(now - dt.timedelta(hours=1)),
            "has_subevents": False,
        },
    )
    if answer.status_code != 201:
        raise GateError(f"pretix seed: creating the event answered {answer.status_code} {answer.text[:500]}")


def _make_items(server: PretixServer) -> None:
    for key, name in (("ticket", "Day ticket"), ("vip", "VIP ticket")):
        item = server.event_api(
            "POST",
            "items/",
            {"name": {"en": name}, "default_price": "10.00", "admission": True, "active": True},
        )
        server.items[key] = int(item["id"])
    server.event_api("POST", "quotas/", {"name": "All", "size": None, "items": list(server.items.values())})


def _make_lists(server: PretixServer) -> None:
    for key, name, products in (
        ("main", "Main entrance", ["ticket", "vip"]),
        ("vip", "VIP lounge", ["vip"]),
    ):
        made = server.event_api(
            "POST",
            "checkinlists/",
            {
                "name": name,
                "all_products": False,
                "limit_products": [server.items[p] for p in products],
                "include_pending": False,
                "allow_multiple_entries": False,
                "allow_entry_after_exit": True,
            },
        )
        server.lists[key] = int(made["id"])


def _make_positions(server: PretixServer) -> dict[str, SeededPosition]:
    made = {name: server.make_order(name=f"Holder {name}") for name in ("paid", "paid2", "paid3")}
    made["vip"] = server.make_order("vip", name="Holder vip")
    made["pending"] = server.make_order(status="pending", name="Holder pending")
    canceled = server.make_order(name="Holder canceled")
    server.cancel_order(canceled.order)
    made["canceled"] = SeededPosition(
        "canceled", canceled.order, canceled.position_id, "ticket", canceled.secret, "canceled",
        server.position(canceled.position_id)["secret"],
    )  # fmt: skip
    blocked = server.make_order(name="Holder blocked")
    server.block(blocked.position_id)
    made["blocked"] = SeededPosition(
        "blocked", blocked.order, blocked.position_id, "ticket", blocked.secret, "blocked", blocked.secret
    )
    revoked = server.make_order(name="Holder revoked")
    made["revoked"] = SeededPosition(
        "revoked", revoked.order, revoked.position_id, "ticket", revoked.secret, "revoked",
        server.regenerate_secret(revoked.position_id),
    )  # fmt: skip
    return made


def seed_event(server: PretixServer) -> None:
    """Seed a fresh pretix with the gate event; fills in the server's tokens, ids and positions."""
    found = re.search(r"TOKEN=(\S+)", server.shell(_TEAM.format(org=server.organizer)))
    if found is None:
        raise GateError("pretix seed: the shell made no team token")
    server.team_token = found.group(1)
    _make_event(server)
    out = server.shell(_SIGNED.format(org=server.organizer, event=server.event))
    if "SIGNED=pretix_sig1" not in out:
        raise GateError(f"pretix seed: the event did not take pretix_sig1 secrets: {out[-300:]}")
    _make_items(server)
    _make_lists(server)
    server.positions.update(_make_positions(server))
    server.device_init_token = server.new_device_token()
    server.valid_keys = list(server.event_api("GET", "")["valid_keys"]["pretix_sig1"])
