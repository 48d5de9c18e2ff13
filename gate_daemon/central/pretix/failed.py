"""Scans the gates refused, reported to pretix as failed check-ins, so pretix's own reports see them.

The gates upload every scan's evidence row to the central (denials too, never the
payload); a refused scan of a ticket the bridge knows (its position's secret, or a revoked
secret) goes to ``checkinlists/{list}/failed_checkins/`` with the secret as
``raw_barcode``, the scan's time and type, and pretix's name for the reason
(``ERROR_REASONS``). A scan of a code the manifest does not know has no ticket and no
secret the central could send: it stays in the central's evidence only. The evidence's
row number is the cursor; an answer of 400 is logged and passed over (pretix would refuse
it again), a transport failure stops the run. Like uploads, a run has a time budget and
leaves the rest for the next round.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from gate_daemon.store.central.pretix import PretixState

from .client import PretixClient, PretixError
from .mapping import CheckinList
from .upload import iso

log = logging.getLogger(__name__)

#: Our reason -> pretix's ``error_reason`` of a failed check-in.
ERROR_REASONS = {
    "already_used": "already_redeemed",
    "canceled": "canceled",
    "refunded": "canceled",
    "revoked": "revoked",
    "blocked": "blocked",
    "unpaid": "unpaid",
    "wrong_zone": "product",
    "too_early": "invalid_time",
    "too_late": "invalid_time",
    "wrong_session": "invalid_time",
}
BATCH = 200


async def report_refusals(
    client: PretixClient,
    event: str,
    state: PretixState,
    lists: Mapping[str, CheckinList],
    secret_of: Callable[[str], str | None],
    budget_s: float | None = None,
) -> tuple[int, bool]:
    """Send the refusals not sent yet; (how many pretix took, whether more are left).

    With ``budget_s`` it stops at the first row after that many seconds (one row at least),
    as an upload run does. ``PretixError`` (transport, 5xx) stops it.
    """
    cursor = int((await state.meta()).get("failed_cursor", "0"))
    ends = None if budget_s is None else time.monotonic() + budget_s
    sent = 0
    moved = False
    while True:
        rows = await state.refusals(cursor, BATCH)
        if not rows:
            return sent, False
        try:
            for row, gate, ticket_id, kind, reason, wall in rows:
                if moved and ends is not None and time.monotonic() >= ends:
                    return sent, True
                secret = secret_of(ticket_id)
                list_id = await _list(state, lists, gate)
                if secret is not None and list_id is not None:
                    body = {
                        "raw_barcode": secret,
                        "error_reason": ERROR_REASONS.get(reason, "error"),
                        "datetime": iso(wall),
                        "type": kind,
                    }
                    try:
                        await client.post(f"events/{event}/checkinlists/{list_id}/failed_checkins/", body)
                        sent += 1
                    except PretixError as exc:
                        if exc.name != "refused":
                            raise
                        log.warning("pretix refused a failed check-in of ticket %s: %s", ticket_id, exc.name)
                cursor = row
                moved = True
        finally:
            await state.put_meta({"failed_cursor": str(cursor)})


async def _list(state: PretixState, lists: Mapping[str, CheckinList], gate: str) -> int | None:
    zone = await state.gate_zone(gate)
    if zone is not None and zone in lists:
        return lists[zone].id
    return next(iter(lists.values())).id if lists else None
