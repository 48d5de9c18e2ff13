"""Rotating tickets issued: a fresh holder key, the issuer's certificate, the holder's page.

The page is one self-contained HTML file (``holder_page/``: the template, its style and
script, the bundled ``qrcode-generator`` library and ``@noble/ed25519``, the signer for
browsers without Ed25519 in WebCrypto) with the certificate and the holder
key inside. It works offline and is the only place the holder key is ever written: the
issuer keeps the certificate id (to revoke it when the ticket is issued again), never
the key.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from gate_daemon.core.keys import SecretKey
from gate_daemon.core.rotating import DEFAULT_TOLERANCE, certificate_id, issue_certificate
from gate_daemon.core.tokens import TicketClaims
from gate_daemon.errors import GateError
from gate_daemon.files import write_atomic

#: The parts inlined into the page, by the marker in holder.html that each replaces.
_PARTS = {
    "@@STYLE@@": "holder.css",
    "@@QRCODE@@": "qrcode.js",
    "@@ED25519@@": "ed25519.js",
    "@@PAGE@@": "holder.js",
}


@dataclass(frozen=True, slots=True)
class HolderPage:
    """What the page shows beside the code."""

    event_name: str
    seat: str = ""
    session: str = ""
    zone: str = ""
    issued_at: int = 0
    tolerance: int = DEFAULT_TOLERANCE


@dataclass(frozen=True, slots=True)
class IssuedHolder:
    """A rotating ticket just issued: its certificate and its id (the holder key is in the page only)."""

    certificate: bytes
    certificate_id: str


def issue_rotating(
    claims: TicketClaims, key: SecretKey, period: int, page: HolderPage, path: Path
) -> IssuedHolder:
    """Make a holder key, certify it with ``key`` and write the holder's page to ``path`` (0600)."""
    holder = SecretKey.generate()
    try:
        certificate = issue_certificate(claims, holder.public, key, period)
    except ValueError as exc:
        raise GateError(str(exc)) from None
    ticket = {
        "v": 1,
        "certificate": base64.b64encode(certificate).decode(),
        "holder_seed": base64.b64encode(holder.seed).decode(),
        "period": period,
        "tolerance": page.tolerance,
        "event": page.event_name,
        "ticket_id": claims.ticket_id,
        "seat": page.seat,
        "session": page.session,
        "zone": page.zone,
        "issued_at": page.issued_at,
        "valid_from": claims.valid_from,
        "valid_until": claims.valid_until,
    }
    write_atomic(path, render_page(ticket).encode(), mode=0o600)
    return IssuedHolder(certificate, certificate_id(certificate))


def render_page(ticket: dict[str, object]) -> str:
    """The page's HTML with ``ticket`` (JSON) and every part inlined."""
    folder = resources.files(__package__) / "holder_page"
    html = (folder / "holder.html").read_text(encoding="utf-8")
    for marker, name in _PARTS.items():
        part = (folder / name).read_text(encoding="utf-8")
        if "</" + ("script" if name.endswith(".js") else "style") in part.lower():
            raise GateError(f"{name} cannot be inlined: it closes its own element")
        html = html.replace(marker, part)
    # "<" escaped, so no text in the ticket (an event name) can end the script element.
    data = json.dumps(ticket, ensure_ascii=False).replace("<", "\\u003c")
    title = str(ticket["event"]).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return html.replace("@@TITLE@@", f"Ticket: {title}").replace("@@TICKET@@", data)
