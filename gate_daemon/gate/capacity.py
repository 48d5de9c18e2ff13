"""The capacity check of a gate's scans, and what it tells the part that fetches places.

``Capacity.bound`` runs inside the scan's unit of work (the ledger's lock held), on the
ledger's counts in memory (``gate_daemon.store.occupancy``) and the active manifest's
limits (``gate_daemon.core.capacity``). In strict mode it also raises ``wanted`` when
this gate's share runs low or someone was refused for want of a place here, so the
LAN side (``gate_daemon.net.capacity``) asks the peers for places at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gate_daemon.core.capacity import ADMITTING, Limits, Tally, bounded, passing
from gate_daemon.core.decision import Decision, ScanKind
from gate_daemon.core.manifest import Manifest
from gate_daemon.core.reasons import Reason
from gate_daemon.core.snapshot import CapacityStatus
from gate_daemon.store.ledger import Ledger
from gate_daemon.store.occupancy import zone_of


class Capacity:
    """Weighs a gate's admissions against the venue's and the zones' capacities."""

    def __init__(
        self, ledger: Ledger, gate_id: str, current: Callable[[], Manifest | None], zone: str | None = None
    ) -> None:
        self._ledger = ledger
        #: The gate's own zone (``Checkpoint.zone``): who passes here counts against it.
        self.zone = zone
        # Records learned from elsewhere count for their ticket's zone in the active manifest.
        ledger.occupancy.zone_of = lambda ticket_id: zone_of(current(), ticket_id)
        self.gate_id = gate_id
        self._limits: tuple[Manifest | None, Limits | None] = (None, None)
        #: Set when a strict gate's share runs low: the LAN side asks its peers for places.
        self.wanted = asyncio.Event()
        #: Whether someone was refused for want of a place here since the last ask.
        self.urgent = False

    def limits(self, manifest: Manifest | None) -> Limits | None:
        """``manifest``'s limits (read once per manifest); None without any."""
        cached, limits = self._limits
        if manifest is not cached:
            limits = None if manifest is None else Limits.of(manifest.header)
            self._limits = (manifest, limits)
        return limits

    def bound(self, decision: Decision, manifest: Manifest | None, kind: ScanKind) -> Decision:
        """``decision``, or ``venue_full`` when the scope it admits to has no room (here).

        An admission or a supervisor's forced entry is weighed; either, and an exit, is
        counted in this gate's zone when it has one (``core.capacity.passing``).
        """
        limits = self.limits(manifest)
        tallies = self._ledger.occupancy.tallies
        out = bounded(passing(decision, self.zone), kind, limits, tallies, self.gate_id)
        if limits is not None and limits.strict and kind is ScanKind.ENTRY:
            if out.reason is Reason.VENUE_FULL:
                self.urgent = True
                self.wanted.set()
            elif out.reason in ADMITTING:
                for limit in limits.applying(out.zone):
                    left = limits.share(limit, self.gate_id, tallies.get(limit.scope, Tally())) - 1
                    if left < limits.low_water(limit):
                        self.wanted.set()
        return out

    def status(self, manifest: Manifest | None) -> list[CapacityStatus]:
        """Each capacity: people inside as this gate counts them and, in strict mode, its share."""
        limits = self.limits(manifest)
        if limits is None:
            return []
        out: list[CapacityStatus] = []
        for limit in limits.limits:
            tally = self._ledger.occupancy.tallies.get(limit.scope, Tally())
            share = limits.share(limit, self.gate_id, tally) if limits.strict else None
            out.append(
                {
                    "scope": limit.scope,
                    "capacity": limit.capacity,
                    "mode": limits.mode,
                    "inside": tally.inside,
                    "share": share,
                }
            )
        return out
