"""Enrolling a venue's gates one after another: what each token and enrollment costs.

    python -m gate_daemon.bench.enroll [--gates 30] [--tickets 10000] [--workdir DIR]

A real ``gate-central`` process (its event without ``[[gates]]``, ``--tickets`` tickets).
For each of ``--gates`` gates, in turn: ``gate-central token`` and ``gatectl enroll`` run
as the tech runs them (each a fresh interpreter: its start is in the figure), into a
folder of its own. Then as many more gates are enrolled by ``POST /v1/enroll`` alone,
timed in this process: the central's share (spend the token, build and sign the version
that lists the gate, answer). Figures: median and largest, in milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from gate_daemon.bench import fixtures
from gate_daemon.core.enrollment import make_request, parse_token
from gate_daemon.core.keys import SecretKey
from gate_daemon.errors import GateError, run_command
from gate_daemon.provision.keyfiles import write_keypair

_CENTRAL = "from gate_daemon.central.cli import main; raise SystemExit(main())"
_GATECTL = "from gate_daemon.cli.gatectl import main; raise SystemExit(main())"


def run(args: argparse.Namespace) -> int:
    """Run the suite and print its figures."""
    with tempfile.TemporaryDirectory(prefix="gate-bench-", dir=Path.cwd()) as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        with _central(work, args.tickets) as (config, url):
            cli_token, cli_enroll = [], []
            for n in range(args.gates):
                t0 = time.perf_counter()
                token = _run(_CENTRAL, "token", "--gate", f"g-{n}", "--url", url, "--config", str(config))
                t1 = time.perf_counter()
                etc, state = work / f"gate-{n}" / "etc", work / f"gate-{n}" / "state"
                _run(_GATECTL, "enroll", token, "--etc", str(etc), "--state", str(state), "--addr", _addr())
                cli_token.append(t1 - t0)
                cli_enroll.append(time.perf_counter() - t1)
            posts = _posts(config, url, args.gates)
    print(
        f"enroll bench: {args.gates} gates one after another, {args.tickets} tickets "
        f"(Python {sys.version.split()[0]})"
    )
    for name, samples in (
        ("gate-central token", cli_token),
        ("gatectl enroll", cli_enroll),
        (f"POST /v1/enroll (gates {args.gates + 1} to {2 * args.gates})", posts),
    ):
        print(
            f"{name:<44} median {1000 * statistics.median(samples):7.0f} ms, "
            f"largest {1000 * max(samples):7.0f} ms"
        )
    return 0


def _posts(config: Path, url: str, count: int) -> list[float]:
    samples = []
    with httpx.Client(base_url=url, trust_env=False, timeout=120) as http:
        for n in range(count, 2 * count):
            text = _run(_CENTRAL, "token", "--gate", f"g-{n}", "--url", url, "--config", str(config))
            request = make_request(parse_token(text), SecretKey.generate(), _addr())
            t0 = time.perf_counter()
            answer = http.post("/v1/enroll", content=json.dumps(request.wire()))
            samples.append(time.perf_counter() - t0)
            if answer.status_code != 200:
                raise GateError(f"POST /v1/enroll answered {answer.status_code}: {answer.text[:200]}")
    return samples


@contextlib.contextmanager
def _central(work: Path, tickets: int) -> Iterator[tuple[Path, str]]:
    """A running central with no gates in its event; its config and URL."""
    signer, _, _ = write_keypair(work / "signer", overwrite=True)
    _, _, issuer = write_keypair(work / "issuer", overwrite=True)
    fixtures.write_event(work / "event.toml", issuer, int(time.time()))
    fixtures.write_tickets(work / "tickets.csv", tickets)
    config = work / "central.toml"
    config.write_text(
        f'[central]\nlisten = "127.0.0.1:0"\nstate_dir = "{work / "central"}"\nevent = "event.toml"\n'
        f'tickets = "tickets.csv"\nkey = "{signer}"\nrate = 10000\n'
    )
    central = subprocess.Popen(
        [sys.executable, "-c", _CENTRAL, "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert central.stdout is not None
    try:
        line = central.stdout.readline()
        if "serving " not in line:
            raise GateError(f"gate-central did not start: {line.strip() or 'no output'}")
        yield config, line.split("serving ", 1)[1].split()[0]
    finally:
        central.terminate()
        central.wait(timeout=30)
        central.stdout.close()


def _run(code: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise GateError(f"{args[0]} failed: {done.stderr.strip()[:300]}")
    return done.stdout.strip()


def _addr() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def main() -> int:
    """``python -m gate_daemon.bench.enroll``."""
    p = argparse.ArgumentParser(prog="python -m gate_daemon.bench.enroll", description=__doc__)
    p.add_argument("--gates", type=int, default=30, help="gates enrolled through the commands (30)")
    p.add_argument("--tickets", type=int, default=10_000, help="tickets in the event (10000)")
    p.add_argument("--workdir", type=Path, help="keep generated files here (default: a temp dir)")
    args = p.parse_args()
    return run_command(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
