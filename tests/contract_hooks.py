"""Schemathesis hooks for running the upstream contract against a central: requests signed as a roster gate.

Loaded by ``schemathesis run`` through ``SCHEMATHESIS_HOOKS=tests.contract_hooks``. Without
``CONTRACT_SIGN_AS`` every request goes as generated (the unsigned run).
With ``CONTRACT_SIGN_AS=GATE_ID:KEY_FILE`` every signed route's request is signed with that
gate's key (``gate_daemon.net.peer_auth``), over the bytes exactly as sent: the signature
is schemathesis's auth, a ``requests`` auth that runs after the body and query are
serialized; schemathesis's probes that leave the auth out go unsigned. The
``Gate-*`` header parameters are then left out of generation, since the signature writes
them (a generated ``Gate-Time`` the signer replaced would pass for an accepted invalid
header).

Two "schema-valid request rejected" (ST202) failures are dropped, each only when the
answer proves it is not the server's:

- a ``zone`` or ``session`` the central's manifest lacks: the contract refuses it by
  name (``400``, detail ``zone: zone 'x' is not a zone of event ...``), since which
  labels exist is the central's data, not the document's;
- a query value the contract refuses: schemathesis approximates Unicode property
  classes (``\\p{C}``) when it generates from a pattern, so some values it calls valid
  break the declared pattern; and a character assigned in a Unicode version newer than
  the central's Python is unassigned (not printable) there, as the contract says. The
  value sent is checked with a real JSON Schema validator and this Python's Unicode
  data (the central's) before the failure is dropped.
"""

from __future__ import annotations

import json
import os
import re
import time
import unicodedata
import urllib.parse
from typing import Any

import jsonschema_rs
import requests
import schemathesis

from gate_daemon.core.keys import SecretKey
from gate_daemon.net.peer_auth import HEADER_CHALLENGE, sign_request
from gate_daemon.provision.keyfiles import read_secret

#: The request headers the signature writes.
SIGNATURE_HEADERS = frozenset({"Gate-Id", "Gate-Time", "Gate-Nonce", "Gate-Signature"})
#: Tries at ``GET /v1/challenge`` when it answers 429 before giving up.
CHALLENGE_TRIES = 50
#: The detail of a refused label the manifest lacks (``Checkpoint.problems``).
UNKNOWN_LABEL = re.compile(r"(zone|session): \1 '.*' is not a \1 of event ", re.DOTALL)
#: Each operation's declared query parameter schemas, by (METHOD, path), kept as the schema loads.
QUERY_SCHEMAS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}


class GateSignature(requests.auth.AuthBase):
    """Signs each request as ``gate_id``, with the challenge the previous answer carried."""

    def __init__(self, gate_id: str, key: SecretKey) -> None:
        self.gate_id = gate_id
        self.key = key
        self.challenge: str | None = None

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """Add the four ``Gate-*`` headers over the request's method, path with query and body."""
        assert request.method is not None and request.url is not None
        nonce = self.challenge or self._fresh(request.url)
        self.challenge = None
        body = request.body or b""
        data = body.encode() if isinstance(body, str) else body
        signed = sign_request(
            self.key, self.gate_id, request.method, request.path_url, data, nonce, int(time.time() * 1000)
        )
        request.headers.update(signed)
        request.register_hook("response", self._keep)
        return request

    def _keep(self, response: requests.Response, **_: Any) -> None:
        self.challenge = response.headers.get(HEADER_CHALLENGE)

    def _fresh(self, url: str) -> str:
        """A challenge from ``GET /v1/challenge`` (waiting out the rate limit if it must)."""
        parts = urllib.parse.urlsplit(url)
        for _ in range(CHALLENGE_TRIES):
            answer = requests.get(f"{parts.scheme}://{parts.netloc}/v1/challenge", timeout=30)
            if answer.status_code != 429:
                answer.raise_for_status()
                return str(answer.json()["challenge"])
            time.sleep(0.1)
        raise AssertionError("the central kept answering 429 to /v1/challenge")


def _signer() -> GateSignature | None:
    spec = os.environ.get("CONTRACT_SIGN_AS")
    if not spec:
        return None
    gate_id, _, key_file = spec.partition(":")
    return GateSignature(gate_id, read_secret(key_file))


SIGNER = _signer()
if SIGNER is not None:
    schemathesis.auth.set_from_requests(SIGNER).skip_for(path="/v1/challenge")


@schemathesis.hook
def before_load_schema(context: schemathesis.HookContext, raw_schema: dict[str, Any]) -> None:
    """Keep the query parameters' schemas; when signing, drop the ``Gate-*`` header parameters."""
    refs = {f"#/components/parameters/{name.replace('-', '')}" for name in SIGNATURE_HEADERS}
    for path, methods in raw_schema["paths"].items():
        for method, operation in methods.items():
            parameters = operation.get("parameters", [])
            QUERY_SCHEMAS[(method.upper(), path)] = {
                p["name"]: p["schema"] for p in parameters if p.get("in") == "query"
            }
            if SIGNER is not None:
                operation["parameters"] = [p for p in parameters if p.get("$ref") not in refs]


@schemathesis.hook
def filter_failure(
    context: schemathesis.HookContext,
    failure: Any,
    case: schemathesis.Case,
    response: schemathesis.Response,
) -> bool:
    """Keep every failure except the two ST202 kinds above that are not the server's."""
    if failure.code != "ST202":
        return True
    return not (_unknown_label(response) or _breaks_declared_query(case, response))


def _unknown_label(response: schemathesis.Response) -> bool:
    if response.status_code != 400:
        return False
    try:
        detail = json.loads(response.content)["detail"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(detail, str) and UNKNOWN_LABEL.match(detail) is not None


def _breaks_declared_query(case: schemathesis.Case, response: schemathesis.Response) -> bool:
    """Whether a query value sent is one the contract refuses (by its pattern, or by Unicode version)."""
    declared = QUERY_SCHEMAS.get((case.method.upper(), case.path), {})
    sent = urllib.parse.parse_qs(urllib.parse.urlsplit(response.request.url or "").query)
    for name, values in sent.items():
        schema = declared.get(name)
        if schema is None or schema.get("type") != "string":
            continue
        validator = jsonschema_rs.validator_for(schema)
        for value in values:
            # The validator knows a newer Unicode than the central's Python (this one): a
            # character assigned since is unassigned, so not printable, at the central.
            if not validator.is_valid(value) or any(unicodedata.category(c) == "Cn" for c in value):
                return True
    return False
