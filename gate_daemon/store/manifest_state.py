"""What the ledger remembers of the last manifest activated: ``meta`` keys ``manifest_*``.

The manifest watch refuses a manifest older than this one after any restart, and a
same-version manifest with another body (``gate_daemon.gate.manifest_watch``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiosqlite


@dataclass(frozen=True, slots=True)
class ManifestState:
    """What the ledger remembers of the last manifest activated."""

    version: int = 0
    body_sha256: str | None = None
    issued_at: int | None = None
    activated_at: float | None = None


async def read_manifest_state(db: aiosqlite.Connection) -> ManifestState:
    """The last manifest activated, as recorded (a version 0 state before any)."""
    rows = await db.execute_fetchall("SELECT key, value FROM meta WHERE key LIKE 'manifest_%'")
    meta = {str(k): str(v) for k, v in rows}
    if "manifest_version" not in meta:
        return ManifestState()
    return ManifestState(
        version=int(meta["manifest_version"]),
        body_sha256=meta.get("manifest_sha256"),
        issued_at=int(meta["manifest_issued_at"]) if "manifest_issued_at" in meta else None,
        activated_at=float(meta["manifest_activated_at"]) if "manifest_activated_at" in meta else None,
    )


def manifest_meta(state: ManifestState) -> list[tuple[str, str]]:
    """The ``meta`` rows that record ``state``."""
    return [
        ("manifest_version", str(state.version)),
        ("manifest_sha256", state.body_sha256 or ""),
        ("manifest_issued_at", str(state.issued_at or 0)),
        ("manifest_activated_at", repr(state.activated_at or time.time())),
    ]
