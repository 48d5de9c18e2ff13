"""Every check-in the gates record, sent to pretix once, at the scan's time.

Records are read from the central's ``checkins`` in cursor order (those the bridge
learned from pretix left out) and sent with ``checkinrpc/redeem``: ``nonce`` is the
record's uuid, so a resend (after a crash, a timeout) stores nothing new in pretix;
``datetime`` is the scan's wall time at its gate; ``type`` entry or exit; ``force`` for
what a gate decided offline (pretix then stores it whatever it would say now, as it
does for its own offline scanners). A void is ``checkinrpc/annul`` of the record it
takes back, sent only after the answers to every record before it (its entry's among
them) are stored, never beside its redeem. Each answer is kept by uuid:

- ``applied``: pretix stored it (``ok``);
- ``duplicate``: pretix had it already (the online validation asked pretix with this nonce);
- ``conflict``: the central judged it a double entry's losing entry (pretix stores both:
  it does not detect offline double entry), or pretix answered ``already_redeemed``;
- ``rejected``: pretix refused it by name (``invalid``, ``product``, an annulment too late...).

A transport failure or a 5xx stops the run where it is; the next run resumes by the
cursor (and a record sent before a crash is a nonce pretix knows). A run has a time
budget (the bridge's ``interval_s``): a backlog is sent over several rounds, with a sync
of pretix's changes between them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gate_daemon.core.records import Redemption
from gate_daemon.store.central.pretix import PositionRow, PretixState

from .client import PretixClient, PretixError
from .mapping import BRIDGE_GATE, CheckinList

log = logging.getLogger(__name__)

#: Records read per batch; pretix is asked for up to ``PARALLEL`` of them at once.
BATCH = 200
PARALLEL = 4


@dataclass(frozen=True, slots=True)
class Answer:
    """What became of one record in pretix."""

    uuid: str
    status: str
    reason: str | None = None


def iso(wall: float) -> str:
    """A time as pretix takes it."""
    return datetime.fromtimestamp(wall, UTC).isoformat()


def groups(batch: Sequence[tuple[int, Redemption]]) -> Iterator[list[tuple[int, Redemption]]]:
    """A batch in the groups sent at once: up to ``PARALLEL`` records, a void always alone.

    A void starts a group of its own, so it is sent only once every record before it (its
    entry among them) has pretix's answer stored: an annulment never overtakes its redeem.
    """
    part: list[tuple[int, Redemption]] = []
    for row in batch:
        if row[1].kind == "void":
            if part:
                yield part
                part = []
            yield [row]
            continue
        part.append(row)
        if len(part) == PARALLEL:
            yield part
            part = []
    if part:
        yield part


class Uploader:
    """Sends the stored records to pretix, in cursor order."""

    def __init__(
        self,
        client: PretixClient,
        state: PretixState,
        *,
        lists: Callable[[], Mapping[str, CheckinList]],
        positions: Callable[[], Mapping[str, PositionRow]],
        secret_of: Callable[[str], str | None],
    ) -> None:
        self._client = client
        self._state = state
        self._lists = lists
        self._positions = positions
        self._secret_of = secret_of

    async def run(self, budget_s: float | None = None) -> tuple[int, bool]:
        """Send the records not sent yet, in cursor order; (how many were answered, whether more are left).

        With ``budget_s`` the run stops at the first group that would start after that many
        seconds (one group at least), so a backlog never holds up the next sync. Each group's
        answers are stored before the next group is sent. ``PretixError`` stops it.
        """
        meta = await self._state.meta()
        cursor = int(meta.get("upload_cursor", "0"))
        ends = None if budget_s is None else time.monotonic() + budget_s
        done = 0
        while True:
            batch = await self._state.to_upload(cursor, BRIDGE_GATE, BATCH)
            if not batch:
                return done, False
            losers = await self._state.losers([r.uuid for _, r in batch if r.kind == "entry"])
            for part in groups(batch):
                if done and ends is not None and time.monotonic() >= ends:
                    return done, True
                sent = await asyncio.gather(*(self._send(r, r.uuid in losers) for _, r in part))
                cursor = part[-1][0]
                await self._state.uploaded([(a.uuid, a.status, a.reason) for a in sent], time.time(), cursor)
                done += len(sent)

    async def _send(self, record: Redemption, loser: bool) -> Answer:
        held = await self._state.upload_of(record.uuid)
        if held is not None:
            return Answer(record.uuid, "duplicate" if held[0] == "applied" else held[0], held[1])
        list_id = await self._list_for(record)
        if list_id is None:
            return Answer(record.uuid, "rejected", "no_list")
        if record.kind == "void":
            return await self._annul(record, list_id)
        secret = self._secret_of(record.ticket_id)
        if secret is None:
            return Answer(record.uuid, "rejected", "unknown_ticket")
        body: dict[str, Any] = {
            "secret": secret,
            "lists": [list_id],
            "type": record.kind,
            "nonce": record.uuid,
            "datetime": iso(record.wall),
            "force": record.mode == "offline" or record.forced,
            "ignore_unpaid": False,
            "questions_supported": False,
        }
        status, answer = await self._client.post("checkinrpc/redeem/", body, answers=(200, 201, 400, 404))
        said = answer.get("status") if isinstance(answer, dict) else None
        if said == "ok":
            return Answer(record.uuid, "conflict" if loser else "applied", "double_entry" if loser else None)
        if said != "error" or not isinstance(answer, dict):
            raise PretixError("garbage", f"POST checkinrpc/redeem/: {status} without a status")
        reason = str(answer.get("reason") or "error")
        if reason == "already_redeemed":
            return Answer(record.uuid, "conflict", reason)
        log.warning("pretix refused record %s of ticket %s: %s", record.uuid, record.ticket_id, reason)
        return Answer(record.uuid, "rejected", reason)

    async def _annul(self, record: Redemption, list_id: int) -> Answer:
        body = {"lists": [list_id], "nonce": record.voids}
        try:
            await self._client.post("checkinrpc/annul/", body, answers=(200, 201))
        except PretixError as exc:
            if exc.name in ("refused", "not_found"):
                return Answer(record.uuid, "rejected", f"annul_{exc.name}")
            raise
        return Answer(record.uuid, "applied")

    async def _list_for(self, record: Redemption) -> int | None:
        """The check-in list of the record's gate's zone, else of the ticket's zone, else its first list."""
        lists = self._lists()
        zone = await self._state.gate_zone(record.origin)
        if zone is not None and zone in lists:
            return lists[zone].id
        position = self._positions().get(record.ticket_id)
        if position is None:
            return next(iter(lists.values())).id if lists else None
        for found in lists.values():
            if found.takes(position.item, position.subevent):
                return found.id
        return None
