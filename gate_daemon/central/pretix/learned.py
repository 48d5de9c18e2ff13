"""Check-ins other pretix devices made, as records the gates learn like any gate's.

A check-in in pretix that the bridge did not upload (another device's: a phone at the box
office, pretix's web check-in) on a check-in list a zone serves (``[source.lists]``: a
check-in on any other list, a parking lot's, says nothing about entry here) becomes a
record of the roster gate ``pretix``, signed with the central's key (which the manifest
lists for that gate): its uuid is made from the pretix check-in id, so learning it twice
stores it once; ``operator`` names the pretix device; ``wall`` is the check-in's time in
pretix; the slot is the next of that ticket's ``pretix`` records. The gates pull it from
the central as any record, so the ticket is ``already_used`` there, at gate ``pretix``.
"""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Sequence

from gate_daemon.core.keys import SecretKey
from gate_daemon.core.records import Redemption
from gate_daemon.store.central.checkin_book import CentralStore
from gate_daemon.store.central.pretix import PretixState
from gate_daemon.store.conflicts import EntriesAllowed

from .download import PretixCheckin
from .mapping import BRIDGE_GATE

_NAMESPACE = uuidlib.UUID("0d9c2b52-7c1e-4a57-9d8e-5f3f8f0b6a11")
#: The bridge's log of learned records (one origin, one epoch).
EPOCH = "pretix"


def record_uuid(url: str, organizer: str, event: str, checkin_id: int) -> str:
    """The uuid of the record a pretix check-in becomes: the same every time it is learned."""
    return str(uuidlib.uuid5(_NAMESPACE, f"{url}/{organizer}/{event}/{checkin_id}"))


async def learn(
    store: CentralStore,
    state: PretixState,
    key: SecretKey,
    checkins: Sequence[PretixCheckin],
    *,
    our_device: int,
    where: tuple[str, str, str],
    held: set[str],
    served: set[int],
    entries_allowed: EntriesAllowed,
    seq: int,
) -> int:
    """Store the check-ins of other devices (of tickets in ``held``, on lists in ``served``) not
    learned yet; how many were new."""
    others = [c for c in checkins if c.device != our_device and c.ticket_id in held and c.list_id in served]
    if not others:
        return 0
    known = await state.learned_ids([c.checkin_id for c in others])
    fresh = sorted((c for c in others if c.checkin_id not in known), key=lambda c: (c.at, c.checkin_id))
    if not fresh:
        return 0
    slots: dict[tuple[str, str], int] = {}
    records: list[tuple[Redemption, str]] = []
    for checkin in fresh:
        mark = (checkin.ticket_id, checkin.kind)
        if mark not in slots:
            slots[mark] = (await state.slots(checkin.ticket_id, BRIDGE_GATE)).get(checkin.kind, 0)
        slots[mark] += 1
        seq += 1
        now_ms = int(time.time() * 1000)
        record = Redemption(
            uuid=record_uuid(*where, checkin.checkin_id),
            ticket_id=checkin.ticket_id,
            kind=checkin.kind,
            slot=slots[mark],
            origin=BRIDGE_GATE,
            epoch=EPOCH,
            seq=seq,
            hlc=store.clock.tick(now_ms),
            wall=checkin.at,
            operator=_device_name(checkin.device),
            mode="online",
        )
        records.append((record, record.sign(key)))
    await store.push(records, entries_allowed, time.time())
    await state.learned([(c.checkin_id, r.uuid) for c, (r, _) in zip(fresh, records, strict=True)], seq)
    return len(records)


def _device_name(device: int | None) -> str:
    return "pretix" if device is None else f"pretix device {device}"
