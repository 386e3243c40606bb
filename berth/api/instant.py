"""Requests answered inside the protocol's ``data_received``, before any task runs (``/_ping``).

Under load each step of a request waits for a turn of the event loop behind every other
client's callbacks: the reader wakes the connection's task, the task parses the head and calls
the handler, the handler's answer is written. A health check should not queue behind a burst of
creates three times over. So a request head that arrives whole, on a connection that waits for
its next request (nothing buffered, nothing in flight), and that the server can answer at once
(``Server.instant``: no body, nothing to await) is answered in the callback that read it, with
the same bytes the usual path writes. Anything else (part of a head, a body, a connection
admitted past a bound, a peer that does not read what it is sent) goes to the StreamReader as
before, so the answers on a connection stay in the order of its requests.
"""

from __future__ import annotations

import asyncio
from typing import Callable, cast

from berth.api import conns
from berth.api.early import Answer as Answer, respond as respond  # noqa: F401  # the server's respond

MAX_HEAD = 8192  # an instant request is a request line and a few headers
HIGH_WATER = 64 * 1024  # asyncio's default: past it the peer is not reading its answers

Connected = Callable[[asyncio.StreamReader, asyncio.StreamWriter], object]


class Protocol(asyncio.StreamReaderProtocol):
    """asyncio's stream protocol, answering what ``answer`` can answer before the reader sees it."""

    def __init__(self, reader: asyncio.StreamReader, connected: Connected, answer: Answer):
        super().__init__(reader, connected)  # type: ignore[arg-type]  # typeshed wants a coroutine function
        self.answer = answer
        self.conn: conns.Conn | None = None  # set by the connection's task once admitted
        self.out: asyncio.WriteTransport | None = None
        # (unsent, unread) of a connection ``api.early``'s thread accepted: the first bytes out,
        # and the first bytes in, as if this protocol had read them
        self.adopted: tuple[bytes, bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.out = cast(asyncio.WriteTransport, transport)  # a socket's (uvloop's are not subclasses)
        super().connection_made(transport)
        if self.adopted is not None:  # before the transport reads anything (its reader starts later)
            unsent, unread = self.adopted
            if unsent:
                self.out.write(unsent)
            if unread:
                self.data_received(unread)

    def data_received(self, data: bytes) -> None:
        while data and self._waiting():
            end = data.find(b"\r\n\r\n", 0, MAX_HEAD)
            if end < 0:
                break
            got = self.answer(data[:end + 4])
            if got is None:
                break
            assert self.out is not None and self.conn is not None
            response, keep = got
            self.out.write(response)
            data = data[end + 4:]
            if not keep:
                self.out.close()  # after the buffered answer; the task sees EOF and leaves
                return
            self.conn.idle_since = asyncio.get_running_loop().time()
        if data:
            if self.conn is not None:
                self.conn.idle_since = None  # a request has begun: not a connection to shed
            super().data_received(data)

    def _waiting(self) -> bool:
        """The connection's task waits for a request's first byte (so nothing is buffered or in
        flight), and the peer reads what it is sent."""
        conn = self.conn
        return (conn is not None and conn.idle_since is not None and conn.refused is None
                and self.out is not None and self.out.get_write_buffer_size() < HIGH_WATER)


def factory(connected: Callable[[asyncio.StreamReader, asyncio.StreamWriter, Protocol], object],
            answer: Answer, limit: int = 2 ** 16) -> Callable[[], Protocol]:
    """What asyncio.start_server builds per connection, with Protocol; ``connected`` also gets
    the protocol, to set its ``conn``."""
    def make() -> Protocol:
        reader = asyncio.StreamReader(limit=limit)
        proto = Protocol(reader, lambda r, w: connected(r, w, proto), answer)
        return proto
    return make
