"""The gate's side of enrollment on the wire (docs/ENROLL.md): ask the central, check what it says.

Synchronous (``gatectl enroll`` runs once, by hand). Every failure is an ``EnrollRefused``
with a name: the central's own refusal (``token_used`` ...), ``central_unreachable``,
``signer_mismatch`` or ``bad_answer``.
"""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import urlsplit

import httpx

from gate_daemon.core.enrollment import EnrollRefused, Request, Token, fingerprint, fingerprint_text
from gate_daemon.core.keys import KeyFormatError, PublicKey

#: The largest answer read from the central.
MAX_ANSWER = 64 * 1024


class EnrollClient:
    """One central, at the token's URL."""

    def __init__(self, token: Token, *, timeout: float = 10.0, client: httpx.Client | None = None) -> None:
        self.token = token
        self._client = client or httpx.Client(timeout=timeout, trust_env=False)

    def close(self) -> None:
        """Close the connections."""
        self._client.close()

    def pinned_signer(self) -> PublicKey:
        """The central's manifest key, checked against the token's fingerprint before anything else."""
        doc = self._call("GET", "/v1/enroll")
        try:
            signer = PublicKey.parse(str(doc["signer"]))
        except (KeyError, KeyFormatError) as exc:
            raise EnrollRefused("bad_answer", f"the central named no manifest key ({exc})") from None
        if fingerprint(signer) != self.token.fingerprint:
            raise EnrollRefused(
                "signer_mismatch",
                f"the central's manifest key has fingerprint {fingerprint_text(fingerprint(signer))}, "
                f"the token pins {fingerprint_text(self.token.fingerprint)}: "
                "not the central that made the token",
            )
        return signer

    def enroll(self, request: Request) -> dict[str, Any]:
        """Send the signed request; the central's answer, not yet verified."""
        return self._call("POST", "/v1/enroll", json.dumps(request.wire()).encode())

    def _call(self, method: str, path: str, body: bytes | None = None) -> dict[str, Any]:
        url = self.token.url + path
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            response = self._client.request(method, url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise EnrollRefused(
                "central_unreachable", f"{self.token.url}: {type(exc).__name__}: {exc}"
            ) from None
        raw = response.content[:MAX_ANSWER]
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise EnrollRefused(
                "bad_answer",
                f"{self.token.url} answered {response.status_code} without JSON: is it a gate-central?",
            )
        if response.status_code != 200:
            name, detail = str(doc.get("error", "refused"))[:64], str(doc.get("detail", ""))[:300]
            raise EnrollRefused(name, detail or f"HTTP {response.status_code}")
        return doc


def route_address(url: str) -> str:
    """The address of this machine's interface that routes to ``url``'s host (no packet is sent)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise EnrollRefused("central_unreachable", f"cannot resolve {host}: {exc}") from None
    family, _, _, _, sockaddr = infos[0]
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(sockaddr)
        except OSError as exc:
            raise EnrollRefused("central_unreachable", f"no route to {host}: {exc.strerror}") from None
        address = str(probe.getsockname()[0])
    return f"[{address}]" if ":" in address else address
