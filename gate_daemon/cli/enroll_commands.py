"""``gatectl enroll TOKEN``: join this machine's gate to the event with a one-time token (docs/ENROLL.md).

    sudo gatectl enroll GDE1:... [--etc DIR] [--state DIR] [--addr HOST:PORT]

In order, and nothing is written before the last step: read the token; ask the central for
its manifest key and check it against the token's fingerprint; make the gate's key (in
memory); check that the config it would write loads; send the public key and the LAN
address, signed with the token key and the new key; verify the answer with the pinned key;
then write the key (0600), the pinned key and the config, and print the config's path. It
restarts nothing: start (or restart) the gate-daemon service next.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gate_daemon.core.enrollment import DEFAULT_LAN_PORT, check_answer, make_request, parse_addr, parse_token
from gate_daemon.core.keys import SecretKey
from gate_daemon.errors import GateError
from gate_daemon.net.enroll_client import EnrollClient, route_address
from gate_daemon.provision.gate_files import (
    DEFAULT_ETC,
    DEFAULT_STATE,
    Enrolled,
    Placement,
    base_config,
    check_config,
    config_text,
    write_gate_files,
)


def cmd_enroll(args: argparse.Namespace) -> int:
    """Enroll the gate; print the config's path."""
    token = parse_token(args.token)
    placement = Placement(args.etc.absolute(), args.state.absolute())
    existing = base_config(placement)
    addr = _addr(args.addr, token.url)
    client = EnrollClient(token, timeout=args.timeout)
    try:
        signer = client.pinned_signer()
        key = SecretKey.generate()
        # The config must load before the token is spent: a kept [input] that does not is said now.
        check_config(
            placement,
            config_text(placement, Enrolled(token.gate_id, "event", None, addr, token.url), existing),
        )
        request = make_request(token, key, addr)
        answer = check_answer(client.enroll(request), request, signer)
    finally:
        client.close()
    text = config_text(
        placement, Enrolled(answer.gate_id, answer.event_id, answer.zone, addr, token.url), existing
    )
    check_config(placement, text)
    path = write_gate_files(placement, key, signer, text)
    print(path)
    print(
        f"enrolled gate {answer.gate_id} in event {answer.event_id} at {answer.central} (manifest version "
        f"{answer.version}); its peers reach it at {addr}. Start it: sudo systemctl restart gate-daemon",
        file=sys.stderr,
    )
    return 0


def _addr(given: str | None, url: str) -> str:
    text = given if given is not None else f"{route_address(url)}:{DEFAULT_LAN_PORT}"
    try:
        return parse_addr(text)
    except ValueError as exc:
        raise GateError(f"--addr: {exc}") from None


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``enroll``."""
    e = sub.add_parser(
        "enroll",
        help="join this gate to the event with a one-time token from gate-central token",
        description=__doc__.split("\n", 1)[1].replace("``", "") if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("token", metavar="TOKEN", help="the GDE1:... token gate-central token printed")
    e.add_argument(
        "--etc", type=Path, default=DEFAULT_ETC, help=f"where gate.toml and keys/ go ({DEFAULT_ETC})"
    )
    e.add_argument(
        "--state", type=Path, default=DEFAULT_STATE, help=f"the gate's state directory ({DEFAULT_STATE})"
    )
    e.add_argument(
        "--addr",
        metavar="HOST:PORT",
        help="where the other gates reach this one's LAN API (default: the address that routes "
        f"to the central, port {DEFAULT_LAN_PORT})",
    )
    e.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the central (10)")
    e.set_defaults(func=cmd_enroll)
