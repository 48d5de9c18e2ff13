"""Summaries of timing samples (medians and tails, never means alone), and a bench's folder."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from gate_daemon.errors import GateError


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) by nearest rank."""
    ordered = sorted(samples)
    rank = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[rank]


def summary_us(samples_ns: Sequence[int]) -> dict[str, float]:
    """p50, p99 and max in microseconds."""
    return {
        "p50_us": round(percentile(samples_ns, 0.50) / 1000, 1),
        "p99_us": round(percentile(samples_ns, 0.99) / 1000, 1),
        "max_us": round(max(samples_ns) / 1000, 1),
    }


def summary_ms(samples_ns: Sequence[int]) -> dict[str, float]:
    """How many, p50, p99 and max in milliseconds (zeros without samples)."""
    if not samples_ns:
        return {"count": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    return {
        "count": len(samples_ns),
        "p50_ms": round(percentile(samples_ns, 0.50) / 1e6, 2),
        "p99_ms": round(percentile(samples_ns, 0.99) / 1e6, 2),
        "max_ms": round(max(samples_ns) / 1e6, 2),
    }


@contextlib.contextmanager
def workdir(kept: Path | None) -> Iterator[Path]:
    """``--workdir`` made if missing and kept afterwards, else a temporary folder here, removed after."""
    if kept is not None:
        try:
            kept.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GateError(f"--workdir {kept}: {exc.strerror}") from None
        yield kept
        return
    with tempfile.TemporaryDirectory(prefix="gate-bench-", dir=Path.cwd()) as tmp:
        yield Path(tmp)
