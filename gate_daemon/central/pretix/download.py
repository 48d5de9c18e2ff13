"""What the bridge reads from pretix: the event, its lists, orders (whole, then by changes), secrets.

Orders are read whole the first time and then by ``orders/?modified_since=T``, where T
is the ``X-Page-Generated`` header of the previous listing's first page (pretix's clock,
never ours): a cancellation, a block or another device's check-in marks the order
modified, so it comes back on the next delta. Revoked and blocked secrets come by
``created_since`` and ``updated_since`` the same way. Every answer is read defensively:
anything else than the documented shape is ``PretixError("garbage")`` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gate_daemon.core.pretix_sig import ticket_id_for
from gate_daemon.core.ticket_record import Status
from gate_daemon.store.central.pretix import PositionRow

from .client import PretixClient, PretixError
from .mapping import ORDER_STATUS, EventFacts, MappingError, instant

#: The header pretix stamps every listing with: the time the answer was made, pretix's clock.
GENERATED = "X-Page-Generated"


@dataclass(frozen=True, slots=True)
class PretixCheckin:
    """A check-in pretix holds for a position (made by any device, ours included)."""

    checkin_id: int
    ticket_id: str
    list_id: int
    kind: str
    at: float
    device: int | None


@dataclass(frozen=True, slots=True)
class OrdersPage:
    """Positions and check-ins from a listing of orders, and the cursor for the next delta."""

    positions: list[PositionRow]
    checkins: list[PretixCheckin]
    cursor: str | None


async def event_facts(client: PretixClient, event: str) -> EventFacts:
    """The event (detail view: it has the keys), its subevents and its check-in lists."""
    detail, _ = await client.get(f"events/{event}/")
    if not isinstance(detail, dict) or "date_from" not in detail:
        raise PretixError("garbage", f"GET events/{event}/: not an event")
    subevents: list[dict[str, Any]] = []
    if detail.get("has_subevents"):
        async for page, _ in client.pages(f"events/{event}/subevents/"):
            subevents.extend(page)
    lists: list[dict[str, Any]] = []
    async for page, _ in client.pages(f"events/{event}/checkinlists/"):
        lists.extend(page)
    items: list[dict[str, Any]] = []
    async for page, _ in client.pages(f"events/{event}/items/"):
        items.extend(page)
    return EventFacts(detail, subevents, lists, items)


async def orders(client: PretixClient, event: str, since: str | None, event_id: str) -> OrdersPage:
    """Every order (``since`` None) or those modified since the cursor ``since``.

    A position's ticket id is ``core.pretix_sig.ticket_id_for(event_id, secret)``, as the gates name it.
    """
    params: dict[str, Any] = {"include_canceled_positions": "true"}
    if since is not None:
        params["modified_since"] = since
    positions: list[PositionRow] = []
    checkins: list[PretixCheckin] = []
    cursor = None
    async for page, headers in client.pages(f"events/{event}/orders/", params):
        if cursor is None:
            cursor = headers.get(GENERATED)
        read_page(page, positions, checkins, event_id)
    return OrdersPage(positions, checkins, cursor)


def read_page(
    page: list[Any], positions: list[PositionRow], checkins: list[PretixCheckin], event_id: str
) -> None:
    """The positions and check-ins of a page of orders; ``PretixError("garbage")`` naming the order."""
    for order in page:
        try:
            if not isinstance(order, dict):
                raise TypeError("an order is not an object")
            _order(order, positions, checkins, event_id)
        except (KeyError, TypeError, ValueError, AttributeError, MappingError) as exc:
            code = order.get("code") if isinstance(order, dict) else None
            raise PretixError("garbage", f"order {str(code)[:20]!r}: {type(exc).__name__}: {exc}") from None


def _order(
    order: Mapping[str, Any], positions: list[PositionRow], checkins: list[PretixCheckin], event_id: str
) -> None:
    code = str(order["code"])
    status = ORDER_STATUS.get(str(order["status"]))
    if status is None:
        raise ValueError(f"status {order['status']!r} is not n, p, e or c")
    if status is Status.PENDING and order.get("valid_if_pending") is True:
        status = Status.COMPLETED
    for raw in order["positions"]:
        secret = raw["secret"]
        if not isinstance(secret, str) or not secret:
            raise ValueError("a position has no secret")
        ticket_id = ticket_id_for(event_id, secret)
        mine = status
        if raw.get("canceled"):
            mine = Status.CANCELED
        elif raw.get("blocked"):
            mine = Status.BLOCKED
        subevent = raw.get("subevent")
        positions.append(
            PositionRow(
                position_id=int(raw["id"]),
                ticket_id=ticket_id,
                secret=secret,
                order_code=code,
                status=mine.value,
                item=int(raw["item"]),
                subevent=None if subevent is None else int(subevent),
                name=str(raw.get("attendee_name") or ""),
            )
        )
        for checkin in raw.get("checkins") or ():
            device = checkin.get("device_id", checkin.get("device"))
            checkins.append(
                PretixCheckin(
                    checkin_id=int(checkin["id"]),
                    ticket_id=ticket_id,
                    list_id=int(checkin["list"]),
                    kind="exit" if checkin.get("type") == "exit" else "entry",
                    at=float(instant(checkin["datetime"], "check-in datetime")),
                    device=None if device is None else int(device),
                )
            )


async def secrets(
    client: PretixClient, event: str, since: Mapping[str, str]
) -> tuple[list[tuple[str, str, str, bool]], dict[str, str]]:
    """Revoked and blocked secrets changed since the cursors: ``(secret, state, ref, on)`` and new cursors."""
    found: list[tuple[str, str, str, bool]] = []
    cursors: dict[str, str] = {}
    for state, path, param in (
        ("revoked", "revokedsecrets", "created_since"),
        ("blocked", "blockedsecrets", "updated_since"),
    ):
        key = f"{state}_since"
        params = {param: since[key]} if key in since else {}
        async for page, headers in client.pages(f"events/{event}/{path}/", params):
            cursors.setdefault(key, headers.get(GENERATED, ""))
            for raw in page:
                secret = raw.get("secret")
                if not isinstance(secret, str) or not secret:
                    raise PretixError("garbage", f"GET {path}: an entry has no secret")
                on = True if state == "revoked" else bool(raw.get("blocked", True))
                found.append((secret, state, str(raw.get("id", "")), on))
    return found, {k: v for k, v in cursors.items() if v}
