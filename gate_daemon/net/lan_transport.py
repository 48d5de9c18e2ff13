"""httpx over aiohttp's client: how the peer links' requests travel.

The peer links are ``httpx.AsyncClient`` calls, so they sign through the one signed-request
flow (``gate_daemon.net.signing``) as the upstream client does; their bytes go through
aiohttp's client, whose HTTP parser is compiled: a request costs about half the CPU of
httpx's own transport (h11, pure Python), and a push to every peer at every commit is the
hot path of propagation (``gatectl bench peers``). aiohttp serves the LAN API already.

aiohttp's errors become httpx's here (``httpx.ConnectError``, ``httpx.ReadTimeout``,
``httpx.RemoteProtocolError``, ``httpx.ReadError``), so callers name them as for any
httpx client. Only what the peer links use is carried: whole request bodies, no redirects,
no proxies from the environment, answers streamed undecoded. (The ``httpx-aiohttp``
package is as fast but names a refused connection a timeout and lets an answer that is
not HTTP through untranslated: docs/CHOICES.md.)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import aiohttp
import httpx

#: Seconds a peer's name stays resolved (peers are mostly listed by address).
DNS_CACHE = 60


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx's requests on one aiohttp session: ``per_host`` connections to a host at most, kept alive.

    Make it in the running event loop (aiohttp's session belongs to one); ``aclose`` closes
    the connections.
    """

    def __init__(self, *, per_host: int, keepalive: float) -> None:
        connector = aiohttp.TCPConnector(
            limit_per_host=per_host, keepalive_timeout=keepalive, ttl_dns_cache=DNS_CACHE
        )
        # Undecoded: httpx decodes, and the callers' limits count the bytes that came.
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False, trust_env=False)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; the answer with its body still to be read."""
        body = await request.aread()
        limits = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(sock_connect=limits.get("connect"), sock_read=limits.get("read"))
        with _translated():
            response = await self._session.request(
                request.method,
                str(request.url),
                data=body or None,
                headers=list(request.headers.multi_items()),
                allow_redirects=False,
                timeout=timeout,
            )
        return httpx.Response(
            response.status,
            headers=list(response.raw_headers),
            stream=_Body(response),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        """Close every connection."""
        await self._session.close()


class _Body(httpx.AsyncByteStream):
    """An aiohttp answer's body as httpx reads it."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _translated():
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # Back to the pool when read to the end; closed otherwise (aiohttp decides).
        self._response.release()


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """aiohttp's errors as the httpx errors of the same failure."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc)) from exc
    except aiohttp.ServerTimeoutError as exc:
        raise httpx.ReadTimeout(str(exc)) from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(str(exc)) from exc
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientResponseError, aiohttp.ClientPayloadError) as exc:
        raise httpx.RemoteProtocolError(str(exc)) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
