"""The running gate's status: one typed snapshot for every reader, and a line for systemd.

``GateStatus.snapshot`` gathers the gate's parts into a ``GateSnapshot``
(``gate_daemon.core.snapshot``), a JSON-ready object served as it is by the control
socket (``gatectl status``) and ``GET /v1/status``, rendered by ``/metrics`` and cut
down for the heartbeat to the central. The service loop keeps ``problem`` up to date.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gate_daemon.config.sections import GateConfig
from gate_daemon.core.snapshot import (
    CallerStatus,
    GateSnapshot,
    InputStatus,
    ManifestStatus,
    ReplicationStatus,
    TurnstileStatus,
)
from gate_daemon.core.times import format_instant, format_span
from gate_daemon.gate.clock import GateClock
from gate_daemon.gate.manifest_watch import ManifestWatch
from gate_daemon.gate.scan import Gate
from gate_daemon.hardware.ports import ScanInput
from gate_daemon.store.ledger import Ledger

if TYPE_CHECKING:
    from gate_daemon.net.capacity import CapacityDesk
    from gate_daemon.net.online import OnlineDecider
    from gate_daemon.net.peers import Replicator
    from gate_daemon.net.replication import Replication
    from gate_daemon.net.sync import UpstreamSync


@dataclass
class GateStatus:
    """What ``gatectl status`` and ``systemctl status`` show of a running gate."""

    config: GateConfig
    ledger: Ledger
    manifests: ManifestWatch
    gate: Gate
    source: ScanInput | None = None
    started_at: float = field(default_factory=time.time)
    #: Why the gate is out of service (kept by the service loop), or None.
    problem: str | None = None
    replication: Replication | None = None
    replicator: Replicator | None = None
    clock: GateClock = field(default_factory=GateClock)
    sync: UpstreamSync | None = None
    online: OnlineDecider | None = None
    #: The port the gate screen listens on (``[screen]``), once it does.
    screen_port: int | None = None
    #: Strict capacity's places between gates (``gate_daemon.net.capacity``), with peers.
    capacity_desk: CapacityDesk | None = None

    async def snapshot(self) -> GateSnapshot:
        """The full status, JSON-ready."""
        cfg = self.config
        now = time.time()
        return {
            "gate": cfg.gate.id,
            "event": cfg.gate.event,
            "zone": cfg.gate.zone,
            "session": cfg.gate.session,
            "mode": cfg.gate.kind.value,
            "decision": cfg.gate.decision,
            "input": cfg.input.kind.value,
            "signals": cfg.signals.kind.value,
            "uptime_seconds": int(now - self.started_at),
            "in_service": self.problem is None,
            "problem": self.problem,
            "turnstile": self._turnstile(),
            "input_state": self._input(),
            "manifest": self._manifest(self.clock.now()),  # expired by the time decisions use
            "ledger": {"path": str(self.ledger.path), "epoch": self.ledger.epoch},
            "counters": await self.ledger.counters(),
            "since_start": dict(self.gate.volatile),
            "replication": await self._replication(now),
            "upstream": None if self.sync is None else self.sync.status(),
            "online": None if self.online is None else self.online.status(),
            "clock": self.clock.status(),
            "lane": self.gate.lane.status(),
            "staff": self.gate.shift.status(),
            "capacity": self.gate.capacity.status(self.manifests.current),
        }

    def _manifest(self, now: float) -> ManifestStatus:
        manifest = self.manifests.current
        info: ManifestStatus = {"active": manifest is not None}
        if manifest is not None:
            header = manifest.header
            info["version"] = manifest.version
            info["event"] = manifest.event_id
            info["tickets"] = len(manifest)
            info["issued_at"] = format_instant(header.issued_at)
            info["age_seconds"] = int(now - header.issued_at)
            info["expires_at"] = format_instant(header.expires_at)
            info["expired"] = now > header.expires_at
        refusal = self.manifests.refusal
        if refusal is not None:
            info["last_refusal"] = {
                "reason": refusal.reason,
                "detail": refusal.detail,
                "at": format_instant(refusal.at),
            }
        return info

    async def _replication(self, now: float) -> ReplicationStatus | None:
        replication = self.replication
        if replication is None:
            return None
        callers: dict[str, CallerStatus] = {
            seen.gate_id: {
                "requests": seen.requests,
                "last_seconds_ago": round(now - seen.last_at, 3),
                "clock_offset_ms": seen.clock_offset_ms,
            }
            for seen in replication.callers.values()
        }
        return {
            "problem": replication.problem,
            "key": replication.key.public.kid,
            "peers": self.replicator.snapshot() if self.replicator is not None else [],
            "callers": callers,
            "refused_requests": dict(replication.refusals),
            "logs": len(self.ledger.known()),
            "conflicts": await self.ledger.conflict_count(),
        }

    def _input(self) -> InputStatus | None:
        source = self.source
        if source is None:
            return None
        state: InputStatus = {"name": source.name, "problem": source.problem}
        stats = getattr(source, "stats", None)  # the camera counts frames and decode times
        if stats is not None:
            state["stats"] = stats.as_dict()
        return state

    def _turnstile(self) -> TurnstileStatus | None:
        turnstile = self.gate.turnstile
        if turnstile is None:
            return None
        return {
            "relay": True,
            "passage_sensor": turnstile.passage is not None,
            "pending": turnstile.pending,
            "problem": turnstile.problem,
        }

    def line(self) -> str:
        """One line for ``systemctl status``."""
        manifest = self.manifests.current
        gate = self.config.gate
        if manifest is None:
            return f"gate {gate.id}: OUT OF SERVICE, no valid manifest"
        if self.problem is not None:
            return f"gate {gate.id}: OUT OF SERVICE, {self.problem}"
        age = format_span(max(0.0, self.clock.now() - manifest.header.issued_at))
        return f"gate {gate.id} ({gate.kind.value}): manifest v{manifest.version}, {age} old"
