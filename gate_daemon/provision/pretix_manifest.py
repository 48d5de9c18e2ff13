"""A pretix event as a manifest's input: its header keys and its positions as ticket entries.

The bridge (``central/``) asks pretix and hands the answers here as the plain dicts
pretix's REST API gives; what comes back goes to ``provision.build.build_manifest``::

    header = pretix_header(event_id, event["valid_keys"]["pretix_sig1"],
                           {"main": main_list, "vip": vip_list}, items, {}, revoked, blocked)
    rules = parse_pretix_header(header)            # core.pretix_sig.PretixEvent
    tickets = [e for order in orders for p in order["positions"]
               if (e := position_entry(event_id, p, order, rules, {})) is not None]
    build_manifest(venue, tickets, key, version=..., issued_at=..., extra_header=header)

Zones are check-in lists (``lists`` maps a zone id to its list as ``checkinlists/``
answers it); sessions are subevents (``subevents`` maps a subevent id to the session id
the venue gives it; empty for an event without dates). A position's ticket id is
``core.pretix_sig.ticket_id_for(event_id, secret)`` and its reference code is its
secret, so a gate finds it by either, and an unlisted signed secret admitted offline
is the same ticket once a manifest lists its position.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gate_daemon.core.pretix_sig import PretixEvent, key_from_pem, ticket_id_for
from gate_daemon.core.ticket_record import Status, TicketEntry
from gate_daemon.core.tokens import REENTRY, code_hash
from gate_daemon.errors import GateError

#: The most entries the gate counts for a list with ``allow_multiple_entries`` (pretix has no limit).
MULTIPLE_ENTRIES = 255
#: pretix's order status codes.
_ORDER_STATUS = {"p": Status.COMPLETED, "n": Status.PENDING, "c": Status.CANCELED, "e": Status.CANCELED}


class PretixMappingError(GateError):
    """A pretix answer cannot be mapped onto a manifest; the message names the field."""


def list_entries(checkin_list: Mapping[str, Any]) -> int:
    """The gate's entry policy for a check-in list: 255 (multiple), re-entry after exit, or 1."""
    if checkin_list.get("allow_multiple_entries"):
        return MULTIPLE_ENTRIES
    if checkin_list.get("allow_entry_after_exit", True):
        return REENTRY
    return 1


def _name(item: Mapping[str, Any]) -> str:
    name = item.get("name")
    if isinstance(name, dict):
        return str(name.get("en") or next(iter(name.values()), "") or item.get("id"))
    return str(name or item.get("id"))


def pretix_header(
    event_id: str,
    valid_keys: Sequence[str],
    lists: Mapping[str, Mapping[str, Any]],
    items: Iterable[Mapping[str, Any]],
    subevents: Mapping[int, str],
    revoked_secrets: Iterable[str],
    blocked_secrets: Iterable[str],
) -> dict[str, Any]:
    """The manifest header keys of a pretix event (``core.pretix_sig``'s docstring lists them).

    ``valid_keys`` is the event's ``valid_keys.pretix_sig1``; ``revoked_secrets`` are the
    secrets of ``revokedsecrets/``; ``blocked_secrets`` those of ``blockedsecrets/`` still
    ``blocked``. Secrets are listed as keyed hashes, never as text.
    """
    try:
        keys = [key_from_pem(k).text() for k in valid_keys]
    except ValueError as exc:
        raise PretixMappingError(f"valid_keys.pretix_sig1: {exc}") from None
    rules: dict[str, Any] = {}
    for zone, found in lists.items():
        if found.get("rules"):
            raise PretixMappingError(
                f"check-in list {found.get('id')} (zone {zone}) has custom rules, which the gates cannot "
                "evaluate offline: remove them in pretix or serve that zone from another list"
            )
        rules[zone] = {
            "list": int(found["id"]),
            "all_products": bool(found.get("all_products", False)),
            "products": sorted(int(p) for p in found.get("limit_products", ())),
            "subevent": found.get("subevent"),
            "entries": list_entries(found),
        }
    return {
        "pretix_keys": keys,
        "pretix_lists": rules,
        "pretix_subevents": {str(k): v for k, v in sorted(subevents.items())},
        "pretix_items": {str(int(i["id"])): _name(i) for i in items},
        "pretix_revoked": sorted({code_hash(event_id, s).hex() for s in revoked_secrets}),
        "pretix_blocked": sorted({code_hash(event_id, s).hex() for s in blocked_secrets}),
    }


def _short(text: str) -> str:
    """At most the 255 bytes a record holds, cut on a character boundary."""
    return text.encode()[:255].decode(errors="ignore")


def _status(position: Mapping[str, Any], order: Mapping[str, Any]) -> Status:
    if position.get("canceled"):
        return Status.CANCELED
    if position.get("blocked"):
        return Status.BLOCKED
    code = str(order.get("status", ""))
    if code not in _ORDER_STATUS:
        raise PretixMappingError(f"order {order.get('code')}: unknown status {code!r}")
    if code == "n" and order.get("valid_if_pending"):
        return Status.COMPLETED
    return _ORDER_STATUS[code]


def position_entry(
    event_id: str,
    position: Mapping[str, Any],
    order: Mapping[str, Any],
    rules: PretixEvent,
    subevents: Mapping[int, str],
) -> TicketEntry | None:
    """The manifest entry of one pretix position (as ``orders/`` embeds it) of ``order``.

    None when no zone's list admits the position's product: it opens no entrance, and a
    gate answers ``unknown_ticket`` for it (a signed one, ``wrong_zone``).

    Its zone is the one list that admits its product, or empty (any entrance) when several
    do: a gate reads a signed secret's lists from its claims, but a random secret carries
    none, so such a position is admitted at every entrance of a list that admits it.
    """
    secret = str(position["secret"])
    item = int(position["item"])
    subevent = int(position.get("subevent") or 0)
    zones = rules.zones_for(item, subevent)
    if not zones:
        return None
    return TicketEntry(
        ticket_id=ticket_id_for(event_id, secret),
        status=_status(position, order),
        order_id=str(order.get("code", "")),
        seat=str(position.get("positionid", "")),
        session=subevents.get(subevent, "") if subevent else "",
        zone=zones[0] if len(zones) == 1 else "",
        entries=rules.entries_for(zones),
        code_hash=code_hash(event_id, secret),
        name=_short(str(position.get("attendee_name") or "")),
    )
