"""Summaries of timing samples: medians and tails, never means alone."""

from __future__ import annotations

from collections.abc import Sequence


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
