"""A network link between two gates that a test can cut and heal: a TCP proxy on 127.0.0.1.

Gates in a test all run on one machine, so a partition is made in between them: each
gate's ``peers`` lists a ``Link`` per directed pair (A's link to B, B's link to A), each
forwarding to the other gate's listening port. ``cut`` closes the connections under way
at once and treats new ones one of two ways:

- ``refuse``: each new connection is reset as soon as it is accepted (a peer that is
  down: the caller learns at once);
- ``blackhole``: new connections are accepted and whatever is sent is swallowed, with
  no answer ever (a cable unplugged beyond the switch: the caller learns only from its
  own timeout). They are reset when the link heals or closes.

``heal`` lets new connections through again. Bytes are forwarded as they come, both
ways, with half-closes passed on; nothing is parsed or changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Literal

from tests.waiting import settle

Mode = Literal["refuse", "blackhole"]

_CHUNK = 1 << 16


class Link:
    """A cuttable TCP proxy from ``127.0.0.1:port`` to ``target``."""

    def __init__(self, target: tuple[str, int] | None = None, *, name: str = "link") -> None:
        #: Where connections go; None refuses them (unless blackholed).
        self.target = target
        self.name = name
        self.cut_mode: Mode | None = None
        #: Connections accepted, forwarded, and turned away while cut (or without target).
        self.accepted = 0
        self.forwarded = 0
        self.turned_away = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._healed = asyncio.Event()
        self._closing = False

    async def start(self, port: int = 0) -> Link:
        """Listen on ``127.0.0.1:port`` (0: any free port)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port, reuse_address=True)
        return self

    @property
    def port(self) -> int:
        """The port listened on."""
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, as a gate's ``peers`` lists it."""
        return f"127.0.0.1:{self.port}"

    @property
    def is_cut(self) -> bool:
        """Whether the link is cut now."""
        return self.cut_mode is not None

    async def cut(self, mode: Mode = "refuse") -> None:
        """Close every connection under way; refuse or blackhole new ones until ``heal``."""
        self.cut_mode = mode
        self._healed.clear()
        self._reset_all()

    async def heal(self) -> None:
        """Forward new connections again (blackholed ones are reset: their callers retry)."""
        self.cut_mode = None
        self._healed.set()

    async def aclose(self) -> None:
        """Stop listening and close every connection."""
        self._closing = True
        self._healed.set()
        if self._server is not None:
            await close_server(self._server)  # what it accepted last reaches _accept, and is reset there
        self._reset_all()
        if self._handlers:  # the resets end them; a handler still connecting upstream is cancelled
            _, pending = await asyncio.wait(set(self._handlers), timeout=2)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.accepted += 1
        try:
            await self._handle(reader, writer)
        except (OSError, asyncio.CancelledError):
            # Not re-raised: Python 3.11's stream server logs a cancelled handler as an error.
            _reset(writer)
        finally:
            writer.close()  # after a reset: nothing more
            self._handlers.discard(task)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_mode == "blackhole" and not self._closing:
            self.turned_away += 1
            await self._swallow(reader)
            _reset(writer)
            return
        if self._closing or self.target is None or self.cut_mode == "refuse":
            self.turned_away += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self.turned_away += 1
            _reset(writer)
            return
        if self.is_cut or self._closing:  # cut while connecting
            _reset(up_writer)
            _reset(writer)
            self.turned_away += 1
            return
        self.forwarded += 1
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            self._writers.difference_update((writer, up_writer))
            up_writer.close()  # both ways ended (or were reset): nothing is left to send

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        """Read and drop whatever comes until the caller gives up or the link heals."""
        healed = asyncio.ensure_future(self._healed.wait())
        try:
            while True:
                read = asyncio.ensure_future(reader.read(_CHUNK))
                await asyncio.wait({read, healed}, return_when=asyncio.FIRST_COMPLETED)
                if healed.done():
                    read.cancel()
                    with contextlib.suppress(asyncio.CancelledError, OSError):
                        await read
                    return
                if not read.result():
                    return
        finally:
            healed.cancel()

    def _reset_all(self) -> None:
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()


async def close_server(server: asyncio.Server) -> None:
    """Close a server that clients may still be calling, without leaking what it accepted last.

    ``Server.close`` right after the loop accepted a connection, before that connection's
    transport is made, leaks the connection's socket (CPython gh-109564: the transport's
    ``_attach`` fails its assertion on the closed server, silently), and its ResourceWarning
    then fails whichever test the garbage collector happens to run in. So: stop accepting,
    let what was accepted become transports and reach its handler, then close.
    """
    loop = asyncio.get_running_loop()
    for sock in server.sockets:
        loop.remove_reader(sock.fileno())
    await settle()
    server.close()
    await server.wait_closed()
    await settle()  # the handlers' transports close their sockets


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until end of stream, then half-close the writer."""
    try:
        while chunk := await reader.read(_CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        _reset(writer)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close a connection at once with a reset (RST), not a polite FIN."""
    transport = writer.transport
    if transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
