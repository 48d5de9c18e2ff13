"""Synthetic events and ticket files for benchmarks, reproducible from a ticket number."""

from __future__ import annotations

import hashlib
from pathlib import Path

from gate_daemon.core.keys import SecretKey
from gate_daemon.core.manifest import Manifest
from gate_daemon.core.times import format_instant

EVENT_ID = "bench-2026"
SESSIONS = ("fri", "sat", "sun")
ZONES = ("floor", "balcony", "vip")
STATUSES = ("completed",) * 16 + ("pending", "canceled", "refunded", "blocked")


def ticket_id(i: int) -> str:
    """The id of synthetic ticket ``i``."""
    return f"T-{i:08d}"


def has_code(i: int) -> bool:
    """Even tickets carry a reference code; odd ones open by their order-seat text."""
    return i % 2 == 0


def code(i: int) -> str:
    """The reference code of synthetic ticket ``i`` (128 bits, upper-case hex)."""
    return hashlib.sha256(f"bench-code-{i}".encode()).hexdigest()[:32].upper()


def legacy(i: int) -> str:
    """The ``ORDER-SEAT`` payload of synthetic ticket ``i``."""
    return f"O{i // 4:07d}-S{i % 4}"


def write_event(path: Path, issuer: SecretKey, now: int, capacity: int | None = None) -> None:
    """An event.toml with three sessions, the middle one open at ``now``; ``capacity``: strict, venue-wide."""
    lines = [
        f'ticket_keys = ["{issuer.public.text()}"]',
        "",
        "[event]",
        f'id = "{EVENT_ID}"',
        'name = "Benchmark Festival"',
        *([f"capacity = {capacity}", 'capacity_mode = "strict"'] if capacity is not None else []),
        "",
    ]
    for n, sid in enumerate(SESSIONS):
        start = now + (n - 1) * 86400 - 1800
        lines += [
            "[[sessions]]",
            f'id = "{sid}"',
            f'name = "{sid.title()}"',
            f"starts_at = {format_instant(start)}",
            f"ends_at = {format_instant(start + 5 * 3600)}",
            "",
        ]
    for zid in ZONES:
        lines += ["[[zones]]", f'id = "{zid}"', f'name = "{zid.title()}"', ""]
    path.write_text("\n".join(lines))


def write_tickets(path: Path, count: int) -> None:
    """A tickets.csv of ``count`` rows using every column."""
    with path.open("w") as out:
        out.write("ticket_id,order_id,seat,status,session,zone,entries,code\n")
        for i in range(count):
            order, seat = legacy(i).split("-")
            out.write(
                f"{ticket_id(i)},{order},{seat},{STATUSES[i % len(STATUSES)]},{SESSIONS[i % 3]},"
                f"{ZONES[i % 3]},{1 + (i % 7 == 0)},{code(i) if has_code(i) else ''}\n"
            )


class HeldManifest:
    """Holds one manifest for a benchmarked gate (the daemon's ManifestWatch does this at run time)."""

    def __init__(self, manifest: Manifest) -> None:
        self.current: Manifest | None = manifest
