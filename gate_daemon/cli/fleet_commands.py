"""``gatectl fleet``: every gate's state, from the central or straight from the gates.

``--central URL`` reads the central's ``GET /v1/fleet`` (the gates' last heartbeats);
``--gates FILE`` asks each gate's ``GET /v1/status`` on the LAN, for when the central is
down. Both are judged by ``gate_daemon.core.fleet`` against the thresholds given here.
Exit status 1 when a gate needs attention, the reasons printed (docs/FLEET.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

from gate_daemon.cli.command_line import positive
from gate_daemon.core.fleet import Attention, GateView, Thresholds, assemble, observe, rank, span
from gate_daemon.core.times import format_span
from gate_daemon.errors import GateError

#: Seconds to wait for one gate or the central.
TIMEOUT = 3.0
#: A line of ``--gates``: HOST:PORT or http(s)://HOST:PORT.
_ADDRESS = re.compile(r"(?:https?://)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}/?")
MAX_GATES = 1000
COLUMNS = (
    "gate", "reachable", "lane", "mode", "manifest", "scans", "offline", "pending", "peer lag", "conflicts",
    "clock", "last heard", "capacity",
)  # fmt: skip


def read_gates(path: Path) -> list[str]:
    """The gates' base URLs from ``path``: one address a line; blank lines and ``#`` comments skipped."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise GateError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise GateError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    urls = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not _ADDRESS.fullmatch(line) or not 0 < int(line.rstrip("/").rsplit(":", 1)[1]) < 65536:
            raise GateError(f"{path}, line {number}: {line[:80]!r} is not HOST:PORT (10.0.0.21:8710)")
        urls.append((line if "://" in line else f"http://{line}").rstrip("/"))
    if not urls:
        raise GateError(f"{path}: no gate addresses (one HOST:PORT a line)")
    if len(urls) > MAX_GATES:
        raise GateError(f"{path}: more than {MAX_GATES} gates")
    return urls


async def _ask_gate(client: httpx.AsyncClient, url: str) -> GateView:
    address = url.split("://", 1)[1]
    try:
        answer = await client.get(f"{url}/v1/status")
        answer.raise_for_status()
        status = answer.json()
    except httpx.HTTPStatusError as exc:
        return GateView(address, reachable=False, error=f"HTTP {exc.response.status_code} from /v1/status")
    except httpx.HTTPError as exc:
        return GateView(
            address, reachable=False, error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        )
    except ValueError:
        return GateView(address, reachable=False, error="its /v1/status is not JSON")
    if not isinstance(status, dict) or not isinstance(status.get("gate"), str):
        return GateView(address, reachable=False, error="its /v1/status is not a gate's status")
    return observe(status["gate"], status)


async def from_gates(urls: list[str], limits: Thresholds) -> list[Attention]:
    """Every gate asked at once; one that does not answer in ``TIMEOUT`` is unreachable."""
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
        views = await asyncio.gather(*(_ask_gate(client, url) for url in urls))
    return rank(views, limits)


def from_central(url: str, limits: Thresholds) -> list[Attention]:
    """The gates as the central at ``url`` holds them (``GET /v1/fleet``)."""
    base = url.rstrip("/")
    hint = "when the central is down, ask the gates: gatectl fleet --gates FILE"
    try:
        answer = httpx.get(f"{base}/v1/fleet", timeout=TIMEOUT, trust_env=False)
    except httpx.HTTPError as exc:
        raise GateError(f"the central at {base} did not answer ({type(exc).__name__}); {hint}") from None
    try:
        state = answer.json()
    except ValueError:
        state = None
    if answer.status_code != 200 or not isinstance(state, dict):
        said = state if isinstance(state, dict) else {}
        raise GateError(
            f"the central at {base} refused: HTTP {answer.status_code} {said.get('error', '')} "
            f"{said.get('detail', '')}".rstrip()
        )
    now, roster, heard = state.get("now"), state.get("roster"), state.get("heartbeats")
    if not isinstance(now, int | float) or not isinstance(roster, list) or not isinstance(heard, list):
        raise GateError(f"the central at {base} answered /v1/fleet without now, roster and heartbeats")
    return assemble(
        [g for g in roster if isinstance(g, str)],
        [h for h in heard if isinstance(h, dict)],
        float(now),
        limits,
    )


def _cells(view: GateView) -> list[str]:
    def some(value: Any, shown: Any = str) -> str:
        return "-" if value is None else str(shown(value))

    manifest = "-"
    if view.manifest_version is not None:
        manifest = f"v{view.manifest_version}" + (
            "" if view.manifest_age_s is None else f", {format_span(view.manifest_age_s)}"
        )
    return [
        view.gate,
        "yes" if view.reachable else "NO",
        some(view.lane),
        some(view.mode),
        manifest,
        some(view.scans),
        some(view.offline_scans),
        some(view.pending_upstream),
        some(view.peer_lag_s, span),
        some(view.conflicts),
        some(view.clock_offset_s, lambda s: f"{round(s, 1) + 0.0:+.1f} s"),  # + 0.0: no "-0.0"
        some(view.last_heard_s, lambda s: f"{span(s)} ago"),
        some(view.capacity),
    ]


def print_table(ranked: list[Attention]) -> None:
    """The fleet as a table, then the gates needing attention with the reasons."""
    rows = [list(COLUMNS), *(_cells(item.view) for item in ranked)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    needing = [item for item in ranked if item.needed]
    print()
    if not needing:
        print(f"all {len(ranked)} gates well")
        return
    print(f"{len(needing)} of {len(ranked)} gates need attention:")
    for item in needing:
        for condition, reason in zip(item.conditions, item.reasons, strict=True):
            print(f"  {item.view.gate}: {condition}: {reason}")


def cmd_fleet(args: argparse.Namespace) -> int:
    """Print every gate's state; exit 1 when one needs attention."""
    limits = Thresholds(
        manifest_age_s=args.manifest_age_s,
        clock_s=args.clock_s,
        lag_s=args.lag_s,
        silent_s=args.silent_s,
        backlog=args.backlog,
    )
    if args.central:
        ranked, source = from_central(args.central, limits), "central"
    else:
        ranked, source = asyncio.run(from_gates(read_gates(Path(args.gates)), limits)), "gates"
    if args.json:
        needing = sum(1 for item in ranked if item.needed)
        shown = {"source": source, "thresholds": asdict(limits), "attention": needing}
        print(
            json.dumps({**shown, "gates": [item.as_dict() for item in ranked]}, indent=2, ensure_ascii=False)
        )
    else:
        print_table(ranked)
    return 1 if any(item.needed for item in ranked) else 0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of seconds") from None
    if not 0 < value < 1e9:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of seconds above 0")
    return value


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``fleet`` to gatectl's commands."""
    default = Thresholds()
    p = sub.add_parser("fleet", help="every gate's state, from the central or straight from the gates")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--central", metavar="URL", help="the central (its GET /v1/fleet)")
    source.add_argument("--gates", metavar="FILE", help="a file of gate addresses, HOST:PORT a line")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.add_argument(
        "--manifest-age-s",
        type=_seconds,
        default=default.manifest_age_s,
        metavar="N",
        help=f"a manifest older than N seconds needs attention (default {default.manifest_age_s:g})",
    )
    p.add_argument(
        "--clock-s",
        type=_seconds,
        default=default.clock_s,
        metavar="N",
        help=f"a clock off by more than N seconds needs attention (default {default.clock_s:g})",
    )
    p.add_argument(
        "--lag-s",
        type=_seconds,
        default=default.lag_s,
        metavar="N",
        help=f"a peer lag over N seconds needs attention (default {default.lag_s:g})",
    )
    p.add_argument(
        "--silent-s",
        type=_seconds,
        default=default.silent_s,
        metavar="N",
        help=f"--central: no heartbeat for N seconds is unreachable (default {default.silent_s:g})",
    )
    p.add_argument(
        "--backlog",
        type=positive,
        default=default.backlog,
        metavar="N",
        help=f"more than N records waiting for the central need attention (default {default.backlog})",
    )
    p.set_defaults(func=cmd_fleet)  # fmt: skip
