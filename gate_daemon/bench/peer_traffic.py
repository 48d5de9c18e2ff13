"""What the bench gates' LAN servers answered: requests, bytes and records, by route.

Counted at the server (an ``on_response_prepare`` hook), so each request is seen once
whichever gate sent it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

#: How a record starts in a push body or a pull answer.
_RECORD = b'"uuid":'


@dataclass
class RouteCount:
    """What one LAN route carried."""

    requests: int = 0
    #: Request bytes: request line, headers and body.
    sent: int = 0
    #: Answer body bytes.
    answered: int = 0
    #: Records in push bodies and pull answers.
    records: int = 0


@dataclass
class Traffic:
    """Every request a gate's LAN server answered, by route (an ``on_response_prepare`` hook)."""

    paths: dict[str, RouteCount] = field(default_factory=dict)

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        """Count one answered request."""
        seen = self.paths.setdefault(request.path, RouteCount())
        seen.requests += 1
        line = len(request.method) + len(request.raw_path) + 12  # "GET /path HTTP/1.1\r\n"
        headers = sum(len(k) + len(v) + 4 for k, v in request.raw_headers) + 2
        seen.sent += line + headers + (request.content_length or 0)
        body = response.body if isinstance(response, web.Response) else None
        if isinstance(body, bytes):
            seen.answered += len(body)
            if request.path == "/v1/redemptions/pull":
                seen.records += body.count(_RECORD)
        if request.path == "/v1/redemptions" and response.status == 200:
            seen.records += (await request.read()).count(_RECORD)


def messages(before: dict[str, RouteCount], after: dict[str, RouteCount], redemptions: int) -> dict[str, Any]:
    """Requests and bytes between two traffic snapshots, by route and per redemption."""
    routes: dict[str, dict[str, int]] = {}
    for path, seen in sorted(after.items()):
        old = before.get(path, RouteCount())
        routes[path] = {
            "requests": seen.requests - old.requests,
            "sent_bytes": seen.sent - old.sent,
            "answer_bytes": seen.answered - old.answered,
            "records": seen.records - old.records,
        }
    requests = sum(r["requests"] for r in routes.values())
    moved = sum(r["sent_bytes"] + r["answer_bytes"] for r in routes.values())
    records = sum(r["records"] for r in routes.values())
    return {
        "routes": routes,
        "requests": requests,
        "requests_per_redemption": round(requests / redemptions, 2),
        "bytes_per_redemption": round(moved / redemptions),
        "records_carried": records,
        "bytes_per_record_carried": round(moved / records) if records else None,
    }
