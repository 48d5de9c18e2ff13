"""A running gate's test material: an event around the real clock, and gate configs.

A daemon decides with the real clock, so its event cannot use the fixed timeline of
``tests.support``: here session ``now`` is open from an hour ago to six hours ahead and
session ``later`` opens in two days. Built through the package's own writers.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gate_daemon.core.commands import Command, sign
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.times import format_instant
from gate_daemon.core.tokens import TicketClaims, encode_signed, event_tag
from gate_daemon.provision.build import build_manifest
from gate_daemon.provision.event import EventSpec, load_event
from gate_daemon.provision.keyfiles import read_secret, write_keypair
from gate_daemon.provision.tickets import load_tickets

EVENT_ID = "live-2026"

#: One ticket per situation; the payload to scan for each is in ``LiveWorld.payloads``.
TICKETS_CSV = """\
ticket_id,order_id,seat,status,session,zone,entries,code
L-0001,A100,1,completed,now,floor,1,REF-LIVE-FLOOR-000001
L-0002,A100,2,completed,now,floor,1,
L-0003,A101,1,pending,now,floor,1,
L-0004,A102,1,canceled,now,floor,1,
L-0005,A103,1,completed,now,balcony,1,
L-0006,A104,1,completed,later,floor,1,
L-0007,A105,1,completed,,,3,
L-0008,A106,1,completed,,,reentry,
L-0009,A107,1,completed,now,floor,1,
L-0010,A108,1,completed,now,floor,1,
"""


def tickets_csv(count: int) -> str:
    """``count`` single-entry tickets of session ``now``, zone ``floor``: ``payload(n)`` is ``ticket(n)``."""
    rows = ["ticket_id,order_id,seat,status,session,zone,entries,code"]
    rows += [f"{ticket(n)},P{n},1,completed,now,floor,1," for n in range(1, count + 1)]
    return "\n".join(rows) + "\n"


def payload(n: int) -> str:
    """The legacy payload (order ``P<n>``, seat 1) of ticket ``ticket(n)`` of ``tickets_csv``."""
    return f"P{n}-1"


def ticket(n: int) -> str:
    """The id of the ``n``-th ticket of ``tickets_csv``."""
    return f"P-{n:03d}"


def event_toml(now: float, gates: tuple[str, ...] = (), supervisors: tuple[str, ...] = ()) -> str:
    """The live event, session ``now`` open at ``now``, with ``gates`` and ``supervisors`` in its rosters."""
    roster = "".join(f'\n[[gates]]\nid = "{gate}"\npub = "{gate}.pub"\n' for gate in gates)
    roster += "".join(f'\n[[supervisors]]\nid = "{who}"\npub = "{who}.pub"\n' for who in supervisors)
    return f"""\
ticket_keys = ["issuer.pub"]

[event]
id = "{EVENT_ID}"
name = "Live Night"

[[sessions]]
id = "now"
name = "Tonight"
starts_at = {format_instant(now - 1800)}
ends_at = {format_instant(now + 6 * 3600)}
entry_opens_minutes = 60

[[sessions]]
id = "later"
name = "Later"
starts_at = {format_instant(now + 2 * 86400)}
ends_at = {format_instant(now + 2 * 86400 + 4 * 3600)}

[[zones]]
id = "floor"
name = "Floor"

[[zones]]
id = "balcony"
name = "Balcony"
{roster}"""


@dataclass
class LiveWorld:
    """Keys, event and tickets around the real clock, and manifests built from them."""

    dir: Path
    signer: SecretKey
    signer_pub: Path
    issuer: SecretKey
    event: EventSpec
    now: float
    #: Each roster gate's secret key file.
    gate_keys: dict[str, Path]
    #: Each roster supervisor's secret key file.
    supervisor_keys: dict[str, Path] = field(default_factory=dict)

    def manifest(
        self,
        version: int = 1,
        *,
        tickets_csv: str = TICKETS_CSV,
        expires_in: float = 7 * 86400,
        key: SecretKey | None = None,
        event: EventSpec | None = None,
    ) -> bytes:
        """A signed full manifest of the live event (or of ``event``, another version of it)."""
        path = self.dir / f"tickets-v{version}.csv"
        path.write_text(tickets_csv)
        tickets = load_tickets(path, self.event)
        return build_manifest(
            event or self.event,
            tickets,
            key or self.signer,
            version=version,
            issued_at=int(self.now) - 60,
            expires_at=int(self.now + expires_in),
        )

    def command(
        self,
        kind: str,
        value: str,
        *,
        gate: str = "north-1",
        supervisor: str | None = None,
        issued_ms: int | None = None,
        nonce: str | None = None,
        event: str = EVENT_ID,
        key: SecretKey | None = None,
    ) -> dict[str, Any]:
        """A supervisor's signed command envelope (the first supervisor's, by default)."""
        who = supervisor or next(iter(self.supervisor_keys))
        body = Command(
            event=event,
            gate=gate,
            kind=kind,  # type: ignore[arg-type]
            value=value,
            supervisor=who,
            issued_ms=int(time.time() * 1000) if issued_ms is None else issued_ms,
            nonce=nonce or secrets.token_hex(16),
        )
        return sign(body, key or read_secret(self.supervisor_keys[who])).envelope()

    def sign(self, ticket_id: str, **claims: object) -> str:
        """A signed ticket payload from the event's issuer."""
        body = TicketClaims(ticket_id=ticket_id, event_tag=event_tag(EVENT_ID), **claims)  # type: ignore[arg-type]
        return encode_signed(body, self.issuer)


def make_live_world(root: Path, gates: tuple[str, ...] = (), supervisors: tuple[str, ...] = ()) -> LiveWorld:
    """Write keys and event.toml into ``root``, with a key for each of ``gates`` and ``supervisors``."""
    root.mkdir(parents=True, exist_ok=True)
    _, signer_pub, signer = write_keypair(root / "signer")
    _, _, issuer = write_keypair(root / "issuer")
    gate_keys = {gate: write_keypair(root / gate)[0] for gate in gates}
    supervisor_keys = {who: write_keypair(root / who)[0] for who in supervisors}
    now = time.time()
    event_path = root / "event.toml"
    event_path.write_text(event_toml(now, gates, supervisors))
    event = load_event(event_path)
    return LiveWorld(root, signer, signer_pub, issuer, event, now, gate_keys, supervisor_keys)


def write_gate_config(
    path: Path,
    world: LiveWorld,
    *,
    gate_id: str = "north-1",
    state_dir: Path | None = None,
    manifest_path: Path | None = None,
    input_kind: str = "none",
    images: Path | None = None,
    signals: str = "console",
    mode: str = "entry",
    zone: str | None = "floor",
    repeat_window_ms: int = 3000,
    poll_ms: int = 200,
    socket: Path | None = None,
    decision: str | None = None,
    confirm_timeout_ms: int | None = None,
    extra: str = "",
) -> Path:
    """A gate config for the live event; absolute paths throughout."""
    state = state_dir or path.parent / "state"
    lines = [
        "[gate]",
        f'id = "{gate_id}"',
        f'event = "{EVENT_ID}"',
        f'state_dir = "{state}"',
        f'mode = "{mode}"',
        f"repeat_window_ms = {repeat_window_ms}",
    ]
    if zone:
        lines.append(f'zone = "{zone}"')
    if decision:
        lines.append(f'decision = "{decision}"')
    if confirm_timeout_ms is not None:
        lines.append(f"confirm_timeout_ms = {confirm_timeout_ms}")
    lines += [
        "[manifest]",
        f'path = "{manifest_path or path.parent / "drop.gdm"}"',
        f'trusted_keys = ["{world.signer_pub}"]',
        f"poll_ms = {poll_ms}",
        "[input]",
        f'kind = "{input_kind}"',
    ]
    if images is not None:
        lines.append(f'path = "{images}"')
    lines += ["[signals]", f'kind = "{signals}"', 'color = "never"']
    lines += ["[control]", f'socket = "{socket or state / "control.sock"}"']
    path.write_text("\n".join(lines) + "\n" + extra)
    return path
