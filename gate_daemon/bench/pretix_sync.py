"""``gatectl bench pretix``, the bridge's half: sync lag both ways and a backlog's upload.

A real venue on loopback beside the bench's pretix: ``gate-central`` bridging it
(``[source] kind = "pretix"``, a fresh device, ``interval_s`` as given) and one
``gate-daemon`` of zone ``main`` syncing with that central, each a process of its own.

- **pretix -> gate**: an order canceled in pretix, until the gate's active manifest
  refuses its secret (read from the gate's state, decided with ``core.decision``, so the
  wait records nothing);
- **gate -> pretix**: an entry scanned at the gate (its control socket), until pretix
  lists the check-in;
- **backlog**: ``count`` entries scanned while the central is stopped (SIGSTOP: the gate
  is offline), then the central continues; from then until pretix's list counts them all.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gate_daemon.bench.pretix_lab import PretixServer
from gate_daemon.bench.solo_venue import Daemon
from gate_daemon.core.decision import Checkpoint, LedgerFacts, evaluate
from gate_daemon.core.keys import PublicKey
from gate_daemon.core.reasons import Reason
from gate_daemon.errors import GateError, ManifestRefused
from gate_daemon.provision.keyfiles import write_keypair
from gate_daemon.store.manifest_file import read_manifest

GATE = "bench-gate-1"
VENUE_EVENT = "pretix-bench"
#: Only bounds a failure: a condition not met by then ends the bench with an error.
DEADLINE_S = 900.0
SYNC = "push_interval_ms = 100\npull_interval_ms = 200\nmanifest_interval_s = 5\nheartbeat_interval_s = 1\n"


@dataclass
class BridgeVenue:
    """The central and the gate the bench started, and where to ask them."""

    work: Path
    central: Daemon
    gate: Daemon
    signer: PublicKey

    @property
    def socket(self) -> Path:
        """The gate's control socket."""
        return self.work / "gate" / "control.sock"

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        """One request on the gate's control socket, its answer."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(30)
            sock.connect(str(self.socket))
            sock.sendall(json.dumps(body).encode() + b"\n")
            answer: dict[str, Any] = json.loads(sock.makefile("rb").readline())
        if not answer.get("ok"):
            raise GateError(f"the bench gate refused a request: {answer.get('error')}")
        return answer

    def decide(self, secret: str) -> Reason:
        """What the gate's active manifest says of ``secret`` now, recording nothing."""
        try:
            manifest = read_manifest(self.work / "gate" / "state" / "manifest.active", [self.signer])
        except (ManifestRefused, OSError):
            return Reason.MANIFEST_MISSING
        try:
            return evaluate(secret, manifest, Checkpoint(zone="main"), time.time(), LedgerFacts()).reason
        finally:
            manifest.release()


def _until(condition: Callable[[], bool], what: str, venue: BridgeVenue) -> float:
    """Poll ``condition`` until true; the moment (monotonic) it was seen true."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        venue.central.alive()
        venue.gate.alive()
        if time.monotonic() > deadline:
            raise GateError(f"bench pretix: {what} did not happen within {DEADLINE_S:.0f} s")
        time.sleep(0.05)
    return time.monotonic()


def _argv(module: str, config: Path) -> list[str]:
    return [
        sys.executable,
        "-c",
        f"from {module} import main; raise SystemExit(main())",
        "--config",
        str(config),
    ]


def _write_files(work: Path, server: PretixServer, interval_s: float) -> tuple[Path, Path, PublicKey]:
    _, signer_pub, signer = write_keypair(work / "signer")
    gate_key, gate_pub, _ = write_keypair(work / GATE)
    (work / "venue.toml").write_text(
        f'[event]\nid = "{VENUE_EVENT}"\n[[zones]]\nid = "main"\nname = "Main entrance"\n'
        f'[[zones]]\nid = "vip"\nname = "VIP lounge"\n[[gates]]\nid = "{GATE}"\npub = "{gate_pub.name}"\n'
    )
    token = work / "pretix-init-token"
    token.write_text(server.new_device_token("gate-central bench") + "\n")
    token.chmod(0o600)
    central = work / "central.toml"
    central.write_text(
        f'[central]\nid = "bench-central"\nlisten = "127.0.0.1:0"\nstate_dir = "central-state"\n'
        f'event = "venue.toml"\nkey = "signer.key"\n'
        f'[source]\nkind = "pretix"\nurl = "{server.url}"\norganizer = "{server.organizer}"\n'
        f'event = "{server.event}"\ninit_token = "pretix-init-token"\ninterval_s = {interval_s}\n'
        f"[source.lists]\nmain = {server.lists['main']}\nvip = {server.lists['vip']}\n"
    )
    home = work / "gate"
    home.mkdir()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    gate = home / "gate.toml"
    gate.write_text(
        f'[gate]\nid = "{GATE}"\nevent = "{VENUE_EVENT}"\nstate_dir = "{home / "state"}"\nmode = "entry"\n'
        f'zone = "main"\n[manifest]\npath = "{home / "drop.gdm"}"\ntrusted_keys = ["{signer_pub}"]\n'
        f'poll_ms = 200\n[input]\nkind = "none"\n[signals]\nkind = "none"\n'
        f'[control]\nsocket = "{home / "control.sock"}"\n'
        f'[lan]\nlisten = "127.0.0.1:{port}"\nkey = "{gate_key}"\n'
        f'[upstream]\nurl = "CENTRAL_URL"\n{SYNC}'
    )
    return central, gate, signer.public


@contextlib.contextmanager
def bridge_venue(work: Path, server: PretixServer, interval_s: float) -> Iterator[BridgeVenue]:
    """Start the bridging central and its gate in ``work``; stop both on exit."""
    central_config, gate_config, signer = _write_files(work, server, interval_s)
    central = Daemon("central", _argv("gate_daemon.central.cli", central_config), work)
    gate = Daemon("gate", _argv("gate_daemon.cli.daemon", gate_config), work)
    venue = BridgeVenue(work, central, gate, signer)
    try:
        central.start()
        url = central.wait_line("serving ", DEADLINE_S).split()[0]
        gate_config.write_text(gate_config.read_text().replace("CENTRAL_URL", url))
        gate.start()
        _until(lambda: venue.socket.exists() and _answers(venue), "the bench gate's start", venue)
        yield venue
    finally:
        gate.stop()
        central.stop()


def _answers(venue: BridgeVenue) -> bool:
    try:
        venue.request({"op": "status"})
    except (OSError, ValueError, GateError):
        return False
    return True


def cancel_lag(server: PretixServer, venue: BridgeVenue) -> float:
    """Seconds from a cancellation in pretix to the gate refusing the buyer's code."""
    order = server.make_order(name="Bench cancel")
    _until(lambda: venue.decide(order.secret) is Reason.OK, "the new order at the gate", venue)
    began = time.monotonic()
    server.cancel_order(order.order)
    return _until(lambda: venue.decide(order.secret) is not Reason.OK, "the cancellation", venue) - began


def checkin_lag(server: PretixServer, venue: BridgeVenue) -> float:
    """Seconds from an entry at the gate to the check-in listed by pretix."""
    order = server.make_order(name="Bench entry")
    _until(lambda: venue.decide(order.secret) is Reason.OK, "the new order at the gate", venue)
    began = time.monotonic()
    _scan_ok(venue, order.secret)
    return (
        _until(lambda: bool(server.checkins_of(order.position_id)), "the check-in in pretix", venue) - began
    )


def _scan_ok(venue: BridgeVenue, secret: str) -> None:
    decision = venue.request({"op": "scan", "payload": secret})["decision"]
    if decision["reason"] != "ok":
        raise GateError(f"the bench gate refused a bench ticket: {decision['reason']}")


def _checked_in(server: PretixServer) -> int:
    return int(server.event_api("GET", f"checkinlists/{server.lists['main']}/status/")["checkin_count"])


def backlog_upload(server: PretixServer, venue: BridgeVenue, count: int) -> dict[str, float]:
    """``count`` entries made offline, then the seconds until pretix has them all, and the rate."""
    secrets = server.make_positions(count, name="Bench backlog")
    _until(lambda: venue.decide(secrets[-1]) is Reason.OK, "the backlog's tickets at the gate", venue)
    before = _checked_in(server)
    venue.central.signal(signal.SIGSTOP)
    try:
        for secret in secrets:
            _scan_ok(venue, secret)
    finally:
        venue.central.signal(signal.SIGCONT)
    began = time.monotonic()
    done = _until(lambda: _checked_in(server) >= before + count, "the backlog in pretix", venue)
    seconds = done - began
    return {"count": count, "seconds": round(seconds, 1), "per_s": round(count / max(seconds, 0.001), 1)}
