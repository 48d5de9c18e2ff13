"""Capacity: how many people a venue or a zone holds, and whether one more may enter.

Pure: the limits come from the signed manifest's header (``capacity`` under the event
and on each zone, ``capacity_mode``), the counts from the ledger (``Tally``, one per
scope: the venue, ``VENUE``, and each zone id), and ``bounded`` turns an entry that
would overfill into ``venue_full``. docs/CAPACITY.md tells the whole design.

- ``count`` mode: refuse when the people inside, as this gate counts them from every
  record it holds (its own and those learned from peers and the central), reach the
  capacity. Best effort: gates cut off from each other each admit up to the limit.
- ``strict`` mode: the places are split into shares held by the gates. The initial split
  is signed in the manifest (``capacity_shares``: per scope, gate id to places), made
  once when the capacity is first set (``split``: ``capacity // n`` over the roster gates
  that admit, the remainder one each to the first ids in sorted order) and carried
  forward unchanged by later versions (``carried``), so a roster change never moves it;
  a gate it does not name starts at 0. A gate admits only from its own share: its share
  is its initial share, plus the exits it recorded, minus the entries it recorded, plus
  the places granted to it, minus the places it granted. A grant is persisted at the
  giver before it answers, and counts at the receiver only once the receiver holds it, so
  the shares of all gates never add up to more than the capacity minus the people
  inside, whatever the partition.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gate_daemon.core.decision import Decision, ScanKind
from gate_daemon.core.manifest_header import Header
from gate_daemon.core.reasons import Reason

#: The scope of the venue's own capacity (a zone id can never be "*": ids match ``IDENT``).
VENUE = "*"
STRICT, COUNT = "strict", "count"
#: What a grant is signed under.
GRANT_DOMAIN = b"gate-daemon/capacity-grant/v1\x00"
#: The largest number of places a grant may carry (a capacity's bound).
MAX_PLACES = 10_000_000
#: Roster gates that never admit and so hold no share: the pretix bridge's (it signs the
#: check-ins it learns from pretix as this gate; ``central.pretix.mapping.BRIDGE_GATE``).
NO_SHARES = frozenset({"pretix"})
#: A manifest's initial split: per scope (``VENUE`` or a zone id), each holder's places.
Shares = Mapping[str, Mapping[str, int]]


@dataclass(frozen=True, slots=True)
class Limit:
    """One capacity: of the venue (``scope`` is ``VENUE``) or of a zone."""

    scope: str
    name: str
    capacity: int

    @property
    def label(self) -> str:
        """How a refusal names it: "Venue" or "Zone Floor"."""
        return "Venue" if self.scope == VENUE else f"Zone {self.name}"


@dataclass(frozen=True, slots=True)
class Tally:
    """What a gate's ledger holds of one scope: people inside, its own moves, places granted."""

    #: Entries minus exits, of every origin held.
    inside: int = 0
    own_entries: int = 0
    own_exits: int = 0
    granted_in: int = 0
    granted_out: int = 0


@dataclass(frozen=True, slots=True)
class Limits:
    """The capacities a manifest sets, how they are kept, and the gates that hold shares."""

    mode: str
    limits: tuple[Limit, ...]
    #: The roster's gate ids that admit (not ``NO_SHARES``), sorted: who splits a capacity
    #: the manifest signs no split for (a manifest from before ``capacity_shares``).
    gates: tuple[str, ...]
    #: The initial split the manifest signs (``capacity_shares``), per scope.
    shares: Shares = field(default_factory=dict)

    @classmethod
    def of(cls, header: Header) -> Limits | None:
        """The manifest's capacities; None when it sets none."""
        found = [Limit(VENUE, header.event_name, header.capacity)] if header.capacity is not None else []
        found += [Limit(z.id, z.name, z.capacity) for z in header.zones if z.capacity is not None]
        if not found:
            return None
        return cls(
            header.capacity_mode, tuple(found), holders(g.id for g in header.gates), header.capacity_shares
        )

    @property
    def strict(self) -> bool:
        """Whether the gates keep the limit under any partition (shares), not only count."""
        return self.mode == STRICT

    def find(self, scope: str) -> Limit | None:
        """The limit of ``scope``, if the manifest sets one."""
        return next((limit for limit in self.limits if limit.scope == scope), None)

    def applying(self, zone: str | None) -> tuple[Limit, ...]:
        """The limits an entry to ``zone`` counts against: the venue's and the zone's."""
        return tuple(limit for limit in self.limits if limit.scope in (VENUE, zone))

    def initial(self, limit: Limit, gate_id: str) -> int:
        """``gate_id``'s share of ``limit`` before any move: as the manifest's split signs it.

        A gate the split does not name holds none (a gate enrolled later: it gets places
        by grants). A manifest without a split for the scope (older ones): an even split
        over the roster gates that admit; without a roster the one gate holds all (strict
        mode then needs every gate in the roster: docs/CAPACITY.md).
        """
        signed = self.shares.get(limit.scope)
        if signed is not None:
            return signed.get(gate_id, 0)
        if not self.gates:
            return limit.capacity
        return split(limit.capacity, self.gates).get(gate_id, 0)

    def share(self, limit: Limit, gate_id: str, tally: Tally) -> int:
        """The places ``gate_id`` may still admit to ``limit``'s scope on its own (strict mode)."""
        own = tally.own_exits - tally.own_entries + tally.granted_in - tally.granted_out
        return self.initial(limit, gate_id) + own

    def room(self, limit: Limit, gate_id: str, tally: Tally) -> int:
        """How many more may enter here: the gate's share (strict) or the capacity left (count)."""
        if self.strict:
            return self.share(limit, gate_id, tally)
        return limit.capacity - tally.inside

    def low_water(self, limit: Limit) -> int:
        """Below this share a strict gate asks its peers for places: a quarter of an even share."""
        signed = self.shares.get(limit.scope)
        count = len(signed) if signed is not None else len(self.gates)
        return max(1, limit.capacity // max(1, count) // 4)


def holders(gate_ids: Iterable[str]) -> tuple[str, ...]:
    """The roster gates that hold shares, sorted: all but those that never admit (``NO_SHARES``)."""
    return tuple(sorted(g for g in gate_ids if g not in NO_SHARES))


def split(capacity: int, gates: Sequence[str]) -> dict[str, int]:
    """``capacity`` split evenly over ``gates``: ``capacity // n`` each, one more each to the first ids."""
    ordered = sorted(gates)
    if not ordered:
        return {}
    each, extra = divmod(capacity, len(ordered))
    return {gate: each + (1 if n < extra else 0) for n, gate in enumerate(ordered)}


def carried(prior: Mapping[str, int] | None, capacity: int, gates: Sequence[str]) -> dict[str, int]:
    """The initial split of one scope in a new manifest version (docs/CAPACITY.md).

    - First set (no ``prior``): ``split`` over ``gates``, the roster gates that admit.
    - The capacity unchanged: ``prior`` exactly, whatever the roster now says (a gate
      enrolled since starts at 0; a gate removed keeps its entry, so the sum stays).
    - The capacity changed by ``d``: ``d`` spread over ``prior``'s holders as ``split``
      spreads places (each gets its part, all of one sign), so gates on either version
      hold no more, together, than the larger capacity.
    """
    if not prior:
        return split(capacity, gates)
    change = capacity - sum(prior.values())
    parts = _spread(change, sorted(prior))
    return {gate: places + parts[gate] for gate, places in sorted(prior.items())}


def _spread(change: int, gates: Sequence[str]) -> dict[str, int]:
    each, extra = divmod(change, len(gates))  # extra >= 0: every part has the sign of ``change``
    return {gate: each + (1 if n < extra else 0) for n, gate in enumerate(gates)}


#: The reasons that let someone in: an admission, and a supervisor's forced entry.
ADMITTING = (Reason.OK, Reason.OVERRIDDEN)


def passing(decision: Decision, gate_zone: str | None) -> Decision:
    """``decision`` with the zone the person walks into: the gate's own, when it has one.

    A gate with a zone admits (and lets out) through that zone's door, whatever zone the
    ticket names: a zoneless ticket, or a pretix product valid on several lists, admitted
    at the lounge's gate is one more in the lounge. The recorded decision's ``zone`` is
    what the counts read (``gate_daemon.store.occupancy``). A gate without a zone keeps
    the ticket's zone. Refusals pass unchanged.
    """
    moves = decision.ticket_id is not None and decision.reason in ADMITTING
    if not gate_zone or not moves or decision.zone == gate_zone:
        return decision
    return replace(decision, zone=gate_zone)


def bounded(
    decision: Decision, kind: ScanKind, limits: Limits | None, tallies: Mapping[str, Tally], gate_id: str
) -> Decision:
    """``decision``, or ``venue_full`` when it admits someone the venue or their zone has no room for.

    An admission (``ok`` on an entry) and a supervisor's forced entry (``overridden``) are
    weighed alike: capacity is the crowd's safety, so a badge does not overfill either.
    Exits and refusals pass unchanged.
    """
    if limits is None or kind is not ScanKind.ENTRY or decision.reason not in ADMITTING:
        return decision
    for limit in limits.applying(decision.zone):
        tally = tallies.get(limit.scope, Tally())
        if limits.room(limit, gate_id, tally) <= 0:
            return _full(decision, limit, tally, strict=limits.strict)
    return decision


def _full(decision: Decision, limit: Limit, tally: Tally, *, strict: bool) -> Decision:
    inside = max(0, tally.inside)
    message = f"{limit.label} full: {inside} of {limit.capacity} inside"
    if strict and inside < limit.capacity:
        message += " (this gate's places are taken; wait)"
    if decision.reason is Reason.OVERRIDDEN:
        message = f"Override refused: {message}"
    return Decision(
        Reason.VENUE_FULL,
        message,
        ticket_id=decision.ticket_id,
        format=decision.format,
        session=decision.session,
        zone=decision.zone,
        entries_used=decision.entries_used,
        entries_allowed=decision.entries_allowed,
        staff=decision.staff,
        staff_name=decision.staff_name,
        overrides=decision.overrides,
    )


def to_give(own: int, theirs: int, want: int, *, urgent: bool) -> int:
    """Places a gate holding ``own`` grants a peer holding ``theirs`` that asks for ``want``.

    Half the difference (shares even out and never swing back), or, when the peer has
    someone waiting (``urgent``), at least one while the giver has one.
    """
    amount = max((own - theirs) // 2, 1 if urgent else 0)
    return max(0, min(amount, want, own))


@dataclass(frozen=True, slots=True)
class Grant:
    """Places of one scope moved from ``giver`` to ``receiver``, named by the ask's uuid."""

    uuid: str
    event: str
    scope: str
    giver: str
    receiver: str
    places: int

    def signed_bytes(self) -> bytes:
        """The bytes the giver signs (under ``GRANT_DOMAIN``)."""
        return json.dumps(self.wire_body(), sort_keys=True, separators=(",", ":")).encode()

    def wire_body(self) -> dict[str, Any]:
        """The grant as JSON."""
        return {
            "uuid": self.uuid,
            "event": self.event,
            "scope": self.scope,
            "giver": self.giver,
            "receiver": self.receiver,
            "places": self.places,
        }

    @classmethod
    def parse(cls, data: object) -> Grant:
        """A grant from JSON; ``ValueError`` names the field that is wrong."""
        if not isinstance(data, dict):
            raise ValueError("grant: expected an object")
        fields: dict[str, Any] = {}
        for name in ("uuid", "event", "scope", "giver", "receiver"):
            value = data.get(name)
            if not isinstance(value, str) or not 0 < len(value) <= 128:
                raise ValueError(f"grant.{name}: expected a string of 1 to 128 characters")
            fields[name] = value
        places = data.get("places")
        if type(places) is not int or not 0 <= places <= MAX_PLACES:
            raise ValueError(f"grant.places: expected an integer 0..{MAX_PLACES}")
        if set(data) != {*fields, "places"}:
            raise ValueError("grant: unexpected fields")
        return cls(places=places, **fields)
