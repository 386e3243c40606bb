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
from typing import Callable, TypeVar, cast

from berth.api import conns, framing

MAX_HEAD = 8192  # an instant request is a request line and a few headers
HIGH_WATER = 64 * 1024  # asyncio's default: past it the peer is not reading its answers

# A request head (up to its blank line) -> (the whole response, keep the connection open), or
# None when the request takes the usual path.
Answer = Callable[[bytes], "tuple[bytes, bool] | None"]
Connected = Callable[[asyncio.StreamReader, asyncio.StreamWriter], object]
R = TypeVar("R")  # the server's Response


class Protocol(asyncio.StreamReaderProtocol):
    """asyncio's stream protocol, answering what ``answer`` can answer before the reader sees it."""

    def __init__(self, reader: asyncio.StreamReader, connected: Connected, answer: Answer):
        super().__init__(reader, connected)  # type: ignore[arg-type]  # typeshed wants a coroutine function
        self.answer = answer
        self.conn: conns.Conn | None = None  # set by the connection's task once admitted
        self.out: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.out = cast(asyncio.WriteTransport, transport)  # a socket's (uvloop's are not subclasses)
        super().connection_made(transport)

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


def respond(head: bytes, instant: Callable[[str, str], R | None], versions: tuple[str, str] | None,
            render: Callable[[R, str, bool], bytes]) -> tuple[bytes, bool] | None:
    """The whole answer to a request ``head`` that ``instant`` answers (no body, an API version
    in ``versions``), and whether the connection stays open; None: the usual path."""
    try:
        method, target, proto = head[:head.index(b"\r\n")].decode("latin-1").split(" ", 2)
    except ValueError:
        return None
    path = target.partition("?")[0]
    m = framing.VERSION_PREFIX.match(path)
    if m:
        try:
            if versions is not None:
                framing.check_version(m.group(1), *versions)
        except framing.BadRequest:
            return None
        path = m.group(2)
    resp = instant(method, path)
    parsed = framing.parse_head(head) if resp is not None else None
    if resp is None or parsed is None:
        return None
    headers = parsed[3]
    if "transfer-encoding" in headers or headers.get("content-length", "0") not in ("", "0"):
        return None
    keep_alive = proto == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    return render(resp, method, keep_alive), keep_alive
