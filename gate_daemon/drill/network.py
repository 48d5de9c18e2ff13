"""The venue's LAN on one Linux machine: a bridge, a network namespace per machine, and faults.

Every name the drill makes starts with ``PREFIX`` so that ``sweep`` can find what a drill
that crashed (or was killed) left behind: namespaces (and the processes in them), veth
pairs and the bridge. Machine ``n`` (the central is ``central``, gates ``g1``...) lives in
namespace ``drl-n``, its side of the veth pair is ``eth0``, the bridge's side ``drl-vn``.

Faults are made inside a machine's namespace, on its own interface, so a rule never
touches the host: nftables drop rules (islands: traffic to or from the other islands'
addresses; loss: ``numgen random mod 100 < N drop``), ``tc`` tbf for bandwidth, and an
nftables DNAT that sends the machine's connections to the central through the drill's
latency relay (``gate_daemon.drill.relay``): these kernels have no ``netem``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from gate_daemon.errors import GateError

PREFIX = "drl-"
BRIDGE = f"{PREFIX}br"
#: The venue's subnet; the bridge (the host side, where the relay listens) is .1.
SUBNET = "10.77.0"
HOST_ADDRESS = f"{SUBNET}.1"
CENTRAL_ADDRESS = f"{SUBNET}.2"
#: Gates take .10 onwards, so a venue holds at most this many.
MAX_GATES = 240
#: The nftables table the drill owns in each namespace.
TABLE = "drill"
#: The central's port, the gates' LAN port, and the ports of the latency relays.
CENTRAL_PORT = 8700
LAN_PORT = 8443
RELAY_PORTS = "9100-9399"
RELAY_BASE_PORT = 9100


class NetworkError(GateError):
    """A network command of the drill failed; the message names the command and what it said."""


def gate_address(number: int) -> str:
    """The LAN address of gate ``number`` (1-based)."""
    if not 1 <= number <= MAX_GATES:
        raise NetworkError(f"gate number {number} is outside 1..{MAX_GATES}")
    return f"{SUBNET}.{9 + number}"


def run(*argv: str, check: bool = True) -> str:
    """Run one command (``ip``, ``nft``, ``tc``); its stdout, or ``NetworkError`` saying why."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetworkError(f"{' '.join(argv)}: {exc}") from None
    if check and done.returncode != 0:
        raise NetworkError(f"{' '.join(argv)}: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done.stdout


def in_namespace(namespace: str, *argv: str, check: bool = True) -> str:
    """Run a command inside ``namespace``."""
    return run("ip", "netns", "exec", namespace, *argv, check=check)


@dataclass(frozen=True)
class Machine:
    """One machine on the venue LAN: its namespace, address and interface names."""

    name: str
    address: str

    @property
    def namespace(self) -> str:
        """Its network namespace."""
        return f"{PREFIX}{self.name}"

    @property
    def host_link(self) -> str:
        """The bridge's end of its veth pair (at most 15 characters)."""
        return f"{PREFIX}v{self.name}"[:15]

    def exec_prefix(self) -> tuple[str, ...]:
        """The argv prefix that runs a program on this machine."""
        return ("ip", "netns", "exec", self.namespace)


def check_host() -> None:
    """Refuse early, with the reason, where the drill cannot build a venue."""
    if os.geteuid() != 0:
        raise NetworkError("gate-drill builds network namespaces: run it as root")
    for tool in ("ip", "nft", "tc"):
        try:
            subprocess.run([tool, "-V"], capture_output=True, timeout=10, check=False)
        except OSError:
            raise NetworkError(f"{tool} is missing: install Debian's iproute2 and nftables") from None


def build_lan() -> None:
    """The bridge, with the host's address on it (the relay listens there)."""
    run("ip", "link", "add", BRIDGE, "type", "bridge")
    run("ip", "addr", "add", f"{HOST_ADDRESS}/24", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")


def plug(machine: Machine) -> None:
    """Make the machine's namespace and wire it to the bridge, with loopback and its address up."""
    ns = machine.namespace
    run("ip", "netns", "add", ns)
    run("ip", "link", "add", machine.host_link, "type", "veth", "peer", "name", "eth0", "netns", ns)
    run("ip", "link", "set", machine.host_link, "master", BRIDGE, "up")
    in_namespace(ns, "ip", "addr", "add", f"{machine.address}/24", "dev", "eth0")
    in_namespace(ns, "ip", "link", "set", "eth0", "up")
    in_namespace(ns, "ip", "link", "set", "lo", "up")
    in_namespace(ns, "nft", f"add table inet {TABLE}")
    for chain, hook in (("in", "input"), ("out", "output")):
        in_namespace(ns, "nft", f"add chain inet {TABLE} {chain} {{ type filter hook {hook} priority 0; }}")
    in_namespace(ns, "nft", f"add chain inet {TABLE} relay {{ type nat hook output priority -100; }}")
    for chain, rule, name in COUNTERS:
        in_namespace(ns, "nft", f'add rule inet {TABLE} {chain} {rule} counter comment "{name}"')


#: What each machine counts of its own traffic (drops are inserted before these: a dropped
#: packet is not counted). A request is counted as a client segment carrying data with PSH:
#: the gate's HTTP clients write each request in one go.
COUNTERS = (
    ("out", f"tcp dport {{ {CENTRAL_PORT}, {RELAY_PORTS} }} tcp flags & psh == psh", "requests-central"),
    ("out", f"tcp dport {LAN_PORT} tcp flags & psh == psh", "requests-peers"),
    ("out", 'oifname "eth0"', "bytes-out"),
    ("in", 'iifname "eth0"', "bytes-in"),
)


def counters(machine: Machine) -> dict[str, tuple[int, int]]:
    """The machine's traffic counters: name -> (packets, bytes)."""
    listing = in_namespace(machine.namespace, "nft", "-j", "list", "table", "inet", TABLE)
    found: dict[str, tuple[int, int]] = {}
    for item in json.loads(listing).get("nftables", []):
        rule = item.get("rule") if isinstance(item, dict) else None
        if not rule or "comment" not in rule:
            continue
        for expr in rule.get("expr", []):
            if "counter" in expr:
                found[rule["comment"]] = (int(expr["counter"]["packets"]), int(expr["counter"]["bytes"]))
    return found


def isolate(machine: Machine, others: Iterable[str], tag: str) -> None:
    """Drop every packet between the machine and ``others`` (addresses), under the comment ``tag``."""
    ns = machine.namespace
    for address in others:
        in_namespace(ns, "nft", f'insert rule inet {TABLE} out ip daddr {address} drop comment "{tag}"')
        in_namespace(ns, "nft", f'insert rule inet {TABLE} in ip saddr {address} drop comment "{tag}"')


def lose(machine: Machine, percent: int, tag: str) -> None:
    """Drop ``percent`` % of the machine's LAN packets each way, at random."""
    ns = machine.namespace
    for chain, side in (("out", "oifname"), ("in", "iifname")):
        in_namespace(
            ns,
            "nft",
            f'insert rule inet {TABLE} {chain} {side} "eth0" '
            f'numgen random mod 100 < {percent} drop comment "{tag}"',
        )


def through_relay(machine: Machine, target: tuple[str, int], relay_port: int, tag: str) -> None:
    """New connections of the machine to ``target`` go to the host's relay on ``relay_port``."""
    host, port = target
    in_namespace(
        machine.namespace,
        "nft",
        f"add rule inet {TABLE} relay ip daddr {host} tcp dport {port} "
        f'dnat ip to {HOST_ADDRESS}:{relay_port} comment "{tag}"',
    )


def clear(machine: Machine, tag: str) -> None:
    """Remove every rule the fault ``tag`` added in the machine's namespace."""
    listing = in_namespace(machine.namespace, "nft", "-a", "list", "table", "inet", TABLE)
    chain = ""
    for line in listing.splitlines():
        words = line.split()
        if words[:1] == ["chain"]:
            chain = words[1]
        if f'comment "{tag}"' in line and "# handle" in line:
            handle = words[-1]
            in_namespace(machine.namespace, "nft", f"delete rule inet {TABLE} {chain} handle {handle}")


def throttle(machine: Machine, rate_kbit: int) -> None:
    """Limit what the machine sends to ``rate_kbit`` (a token bucket on its interface)."""
    burst = max(rate_kbit // 8, 4)
    in_namespace(
        machine.namespace,
        "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf",
        "rate", f"{rate_kbit}kbit", "burst", f"{burst}kb", "latency", "400ms",
    )  # fmt: skip


def unthrottle(machine: Machine) -> None:
    """Take the token bucket away again."""
    in_namespace(machine.namespace, "tc", "qdisc", "del", "dev", "eth0", "root", check=False)


def namespaces() -> list[str]:
    """The drill's namespaces that exist now."""
    listing = run("ip", "netns", "list", check=False)
    names = [line.split()[0] for line in listing.splitlines() if line.strip()]
    return [name for name in names if name.startswith(PREFIX)]


def links() -> list[str]:
    """The drill's network interfaces in the host's namespace (veth ends and the bridge)."""
    listing = run("ip", "-o", "link", "show", check=False)
    found = []
    for line in listing.splitlines():
        parts = line.split(": ")
        if len(parts) > 1:
            name = parts[1].split("@")[0]
            if name.startswith(PREFIX):
                found.append(name)
    return found


def namespace_pids(namespace: str) -> list[int]:
    """The processes running in ``namespace``."""
    listing = run("ip", "netns", "pids", namespace, check=False)
    return [int(word) for word in listing.split() if word.isdigit()]


def sweep() -> list[str]:
    """Kill and remove whatever a drill left behind; what was removed, for the log."""
    removed = []
    for ns in namespaces():
        for pid in namespace_pids(ns):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
            removed.append(f"process {pid} in {ns}")
        run("ip", "netns", "del", ns, check=False)
        removed.append(f"namespace {ns}")
    for link in links():
        run("ip", "link", "del", link, check=False)
        removed.append(f"link {link}")
    return removed


def leftovers() -> list[str]:
    """What of a drill still exists (namespaces and links); empty after a clean teardown."""
    return [f"namespace {ns}" for ns in namespaces()] + [f"link {link}" for link in links()]
