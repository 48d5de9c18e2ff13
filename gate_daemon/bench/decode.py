"""``gatectl bench decode``: every QR decoder on the same generated camera frames.

The frames come from ``gate_daemon.bench.frames`` (640x480 grey, seeded, one spoilt
way per variant). Each frame is made, then handed to every decoder in turn, first one
way round and then the other, so that a noisy neighbour hurts them alike; only the
``decode`` call is timed. A frame is read correctly when the decoder returns exactly
its code's text (nothing, for an empty frame); a wrong read is any other text, the
failure a gate can least afford. A decoder whose library does not load is reported as
unavailable and the others still run.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from gate_daemon.bench.frames import (
    DENSITIES,
    DENSITY_CODES,
    HEIGHT,
    VARIANTS,
    WIDTH,
    make_density_frame,
    make_frame,
)
from gate_daemon.bench.stats import percentile
from gate_daemon.config.sections import DecoderKind
from gate_daemon.errors import GateError
from gate_daemon.hardware.decoders import AUTO_ORDER, make_decoder
from gate_daemon.hardware.ports import Decoder

#: DESIGN.md: decoding one 640x480 frame takes at most this, judged at p99 over every frame.
BUDGET_MS = 5.0
DEFAULT_FRAMES = 50
#: Frames decoded before timing starts (first calls fault in code and tables).
WARMUP = 5
_LIBRARIES = {DecoderKind.ZXING: "zxing-cpp", DecoderKind.ZBAR: "pyzbar"}


@dataclass
class _Tally:
    """One decoder's results on one variant."""

    correct: int = 0
    wrong: int = 0
    times_ns: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        frames = len(self.times_ns)
        return {
            "frames": frames,
            "correct": self.correct,
            "wrong": self.wrong,
            "read_rate": round(self.correct / frames, 3),
            "p50_ms": round(percentile(self.times_ns, 0.50) / 1e6, 2),
            "p99_ms": round(percentile(self.times_ns, 0.99) / 1e6, 2),
        }


def run(args: argparse.Namespace) -> int:
    """Measure every decoder and print the table (or JSON)."""
    per_variant = args.frames or DEFAULT_FRAMES
    result = measure(per_variant)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_table(result)
    return 0


def measure(per_variant: int, seed: int = 0) -> dict[str, Any]:
    """Read rates and decode times of every decoder, per variant and overall."""
    decoders: dict[str, Decoder] = {}
    report: dict[str, dict[str, Any]] = {}
    for kind in (DecoderKind.ZXING, DecoderKind.ZBAR):
        try:
            decoders[kind.value] = make_decoder(kind)
        except GateError as exc:
            report[kind.value] = {"available": False, "error": str(exc)}
        else:
            report[kind.value] = {"available": True, "library": _version(_LIBRARIES[kind])}
    for index in range(WARMUP):
        warm = make_frame("clean", index, seed=seed + 1)
        for decoder in decoders.values():
            decoder.decode(warm.frame)

    tallies = {name: {variant: _Tally() for variant in VARIANTS} for name in decoders}
    turn = 0
    for variant in VARIANTS:
        for index in range(per_variant):
            sample = make_frame(variant, index, seed)
            expected = [] if sample.expected is None else [sample.expected]
            order = list(decoders.items())
            if turn % 2:
                order.reverse()
            turn += 1
            for name, decoder in order:
                t0 = time.perf_counter_ns()
                found = decoder.decode(sample.frame)
                elapsed = time.perf_counter_ns() - t0
                tally = tallies[name][variant]
                tally.times_ns.append(elapsed)
                tally.correct += found == expected
                tally.wrong += any(text != sample.expected for text in found)

    density = {code: _density(decoders, per_variant, seed, code) for code in DENSITY_CODES}
    for name, by_variant in tallies.items():
        report[name]["density"] = {f"{m:g}": t.summary() for m, t in density["signed"][name].items()}
        report[name]["rotating_density"] = {
            f"{m:g}": t.summary() for m, t in density["rotating"][name].items()
        }
        overall = _Tally()
        for tally in by_variant.values():
            overall.correct += tally.correct
            overall.wrong += tally.wrong
            overall.times_ns += tally.times_ns
        summary = overall.summary()
        report[name]["variants"] = {variant: tally.summary() for variant, tally in by_variant.items()}
        report[name]["overall"] = summary
        report[name]["budget_met"] = summary["p99_ms"] <= BUDGET_MS
    return {
        "command": f"gatectl bench decode --frames {per_variant}",
        "machine": f"{platform.machine()}, Python {sys.version.split()[0]}",
        "frame": f"{WIDTH}x{HEIGHT} grey",
        "frames_per_variant": per_variant,
        "seed": seed,
        "budget_p99_ms": BUDGET_MS,
        "auto": next((kind.value for kind in AUTO_ORDER if kind.value in decoders), None),
        "decoders": report,
    }


def _density(
    decoders: dict[str, Decoder], per_variant: int, seed: int, code: str
) -> dict[str, dict[float, _Tally]]:
    """Each decoder's reads of ``code`` (``DENSITY_CODES``) at every step of the pixels-per-module sweep."""
    density = {name: {module: _Tally() for module in DENSITIES} for name in decoders}
    for module in DENSITIES:
        for index in range(per_variant):
            sample = make_density_frame(module, index, seed, code)
            for name, decoder in decoders.items():
                t0 = time.perf_counter_ns()
                found = decoder.decode(sample.frame)
                tally = density[name][module]
                tally.times_ns.append(time.perf_counter_ns() - t0)
                tally.correct += found == [sample.expected]
                tally.wrong += any(text != sample.expected for text in found)
    return density


def _version(distribution: str) -> str:
    try:
        return f"{distribution} {metadata.version(distribution)}"
    except metadata.PackageNotFoundError:
        return distribution


def _print_table(result: dict[str, Any]) -> None:
    decoders: dict[str, dict[str, Any]] = result["decoders"]
    available = [name for name, d in decoders.items() if d["available"]]
    print(f"# {result['command']}")
    libraries = ", ".join(decoders[name]["library"] for name in available) or "no decoder"
    frames = f"{result['frame']} frames, {result['frames_per_variant']} a variant"
    print(f"# {result['machine']}, {libraries}; {frames}")
    print()
    header = ["variant"]
    for name in available:
        header += [f"{name} read", f"{name} p50", f"{name} p99"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for variant in (*VARIANTS, "overall"):
        cells = [f"**{variant}**" if variant == "overall" else variant]
        for name in available:
            d = decoders[name]
            s = d["overall"] if variant == "overall" else d["variants"][variant]
            read = f"{s['correct']}/{s['frames']}"
            if s["wrong"]:
                read += f" ({s['wrong']} wrong)"
            cells += [read, f"{s['p50_ms']:.2f} ms", f"{s['p99_ms']:.2f} ms"]
        print("| " + " | ".join(cells) + " |")
    for key, what in (
        ("density", "signed tickets, 41 modules across"),
        ("rotating_density", "rotating codes, 61 modules across; docs/ROTATING.md"),
    ):
        print()
        print(f"Pixels per module ({what}; hw/CAMERA.md):")
        print()
        header = ["px/module", *(f"{name} read" for name in available)]
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for module in DENSITIES:
            cells = [f"{module:g}"]
            for name in available:
                s = decoders[name][key][f"{module:g}"]
                cells.append(
                    f"{s['correct']}/{s['frames']}" + (f" ({s['wrong']} wrong)" if s["wrong"] else "")
                )
            print("| " + " | ".join(cells) + " |")
    print()
    for name, d in decoders.items():
        if not d["available"]:
            print(f"{name}: unavailable: {d['error']}")
        else:
            verdict = "met" if d["budget_met"] else "MISSED"
            print(f"{name}: budget p99 <= {result['budget_p99_ms']:.0f} ms a frame {verdict}")
    print(f"auto picks: {result['auto'] or 'nothing (no decoder loads)'}")
