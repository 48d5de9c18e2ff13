"""Online-first through pretix: a gate's ``/v1/validate`` answered by pretix's ``redeem``.

The payload is sent as the secret, with ``nonce`` = the scan's uuid (the same the gate's
record will carry, so its upload later is a nonce pretix knows: ``duplicate``), on the
check-in list of the gate's zone, without ``force`` and within ``[source] online_timeout_ms``
(400 ms by default: under the gate's own deadline, ``[upstream] validate_timeout_ms``, 500 ms
by default). pretix's
answer becomes the decision (``PRETIX_REASONS``); a pretix that does not answer in time,
or answers garbage, makes the central answer 503, and the gate decides locally, as it
does whenever the central is away.
"""

from __future__ import annotations

from typing import Any

from gate_daemon.core.decision import Decision
from gate_daemon.core.pretix_sig import ticket_id_for
from gate_daemon.core.reasons import Reason

from .client import PretixClient, PretixError

#: pretix's ``reason`` -> ours.
PRETIX_REASONS = {
    "already_redeemed": Reason.ALREADY_USED,
    "invalid": Reason.UNKNOWN_TICKET,
    "revoked": Reason.REVOKED,
    "canceled": Reason.CANCELED,
    "unpaid": Reason.UNPAID,
    "blocked": Reason.BLOCKED,
    "product": Reason.WRONG_ZONE,
    "invalid_time": Reason.TOO_LATE,
}


async def redeem(
    client: PretixClient,
    secret: str,
    list_id: int,
    kind: str,
    nonce: str,
    ticket_id: str | None,
    *,
    event_id: str,
    timeout: float,
) -> Decision:
    """pretix's decision on one scan; ``PretixError`` when it gives none in time."""
    body: dict[str, Any] = {
        "secret": secret,
        "lists": [list_id],
        "type": kind,
        "nonce": nonce,
        "datetime": None,
        "force": False,
        "ignore_unpaid": False,
        "questions_supported": False,
    }
    status, answer = await client.post(
        "checkinrpc/redeem/", body, answers=(200, 201, 400, 404), timeout=timeout
    )
    if not isinstance(answer, dict) or answer.get("status") not in ("ok", "error"):
        raise PretixError("garbage", f"POST checkinrpc/redeem/: {status} without a status")
    position = answer.get("position")
    if ticket_id is None and isinstance(position, dict) and isinstance(position.get("secret"), str):
        # A position the bridge has not downloaded yet: named as the manifest and the gates name it.
        ticket_id = ticket_id_for(event_id, position["secret"])
    if answer["status"] == "ok":
        return Decision(Reason.OK, "pretix: valid", ticket_id=ticket_id)
    said = str(answer.get("reason") or "error")
    reason = PRETIX_REASONS.get(said, Reason.UNKNOWN_TICKET)
    explained = answer.get("reason_explanation")
    message = f"pretix: {said}" + (f" ({explained})" if isinstance(explained, str) and explained else "")
    return Decision(reason, message[:200], ticket_id=ticket_id)
