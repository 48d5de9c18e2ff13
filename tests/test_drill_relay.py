"""The drill's latency relay (no netem on these kernels): real TCP on 127.0.0.1.

Apart from the page tests: Playwright's sync API runs an event loop of its own for the
module, and this test runs on pytest-asyncio's.
"""

from __future__ import annotations

import asyncio

from gate_daemon.drill.relay import Relay


async def test_the_latency_relay_carries_every_byte_in_order() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(1 << 16):
            writer.write(chunk)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    target = server.sockets[0].getsockname()[:2]
    relay = await Relay(("127.0.0.1", 0), target, delay_ms=20, jitter_ms=15).start()
    assert relay._server is not None
    port = relay._server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent = b"".join(f"chunk {n:05d};".encode() for n in range(2000))
        for n in range(0, len(sent), 700):
            writer.write(sent[n : n + 700])
            await writer.drain()
        writer.write_eof()
        received = await asyncio.wait_for(reader.read(), timeout=60)
        writer.close()
        assert received == sent
        assert relay.connections == 1 and relay.bytes == 2 * len(sent)
    finally:
        await relay.aclose()
        server.close()
        await server.wait_closed()
