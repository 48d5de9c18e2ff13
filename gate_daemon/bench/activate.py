"""Verify, activate and search one manifest in a fresh process, so its peak RSS is its own.

Run by ``gatectl bench core`` as ``python -m gate_daemon.bench.activate FILE PUB COUNT ROUNDS``,
or ``... activate apply BASE DELTA PUB`` to time applying a delta; prints one JSON object.
"""

from __future__ import annotations

import json
import random
import resource
import sys
import time
from pathlib import Path

from gate_daemon.bench import fixtures
from gate_daemon.bench.stats import summary_us
from gate_daemon.provision.keyfiles import read_public
from gate_daemon.store.manifest_file import read_manifest, write_delta_result


def _peak_rss_mb() -> float:
    """This process's resident high-water mark.

    ``VmHWM`` belongs to the process image and starts afresh at exec; ``ru_maxrss`` on
    Linux carries the parent's peak across fork and exec, so it is only the fallback.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def apply(argv: list[str]) -> int:
    """Verify the base, apply the delta to it and verify the result: what a gate does."""
    base_path, delta_path, pub = Path(argv[0]), Path(argv[1]), Path(argv[2])
    key = read_public(pub)
    started = time.perf_counter()
    base = read_manifest(base_path, [key])
    out = delta_path.with_name(delta_path.name + ".applied")
    write_delta_result(base, delta_path, out, [key])
    result = read_manifest(out, [key])
    print(
        json.dumps(
            {
                "apply_s": round(time.perf_counter() - started, 3),
                "rss_peak_mb": _peak_rss_mb(),
                "version": result.version,
            }
        )
    )
    return 0


def main(argv: list[str]) -> int:
    """Measure and print."""
    if argv[:1] == ["apply"]:
        return apply(argv[1:])
    path, pub, count, rounds = Path(argv[0]), Path(argv[1]), int(argv[2]), int(argv[3])
    key = read_public(pub)
    baseline_mb = _peak_rss_mb()
    started = time.perf_counter()
    manifest = read_manifest(path, [key])
    activate_s = time.perf_counter() - started
    picks = random.Random(7)
    results: dict[str, object] = {"activate_s": round(activate_s, 3)}
    for name, find in (
        ("ticket_id", lambda i: manifest.find_ticket(fixtures.ticket_id(i))),
        ("reference", lambda i: manifest.find_code(fixtures.code(i - i % 2))),
        ("legacy", lambda i: manifest.find_code(fixtures.legacy(i | 1))),
        ("miss", lambda i: manifest.find_code(f"NOPE{i:020d}")),
    ):
        samples = []
        for _ in range(rounds):
            i = picks.randrange(count - 1)
            t0 = time.perf_counter_ns()
            found = find(i)
            samples.append(time.perf_counter_ns() - t0)
            if (found is None) != (name == "miss"):
                raise SystemExit(f"lookup {name} of ticket {i} gave {found!r}")
        results[f"lookup_{name}"] = summary_us(samples)
    results["rss_peak_mb"] = _peak_rss_mb()
    results["rss_interpreter_mb"] = baseline_mb
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
