"""The API's connections and the limits that keep one client from starving the others.

dockerd leans on Go's net/http: headers up to 1 MiB (then 431), a header read that may take
five minutes, and no bound on connections, so 1,000 idle sockets or a client that trickles
its headers a byte a second hold descriptors until berthd's run out. berth keeps Go's header
size, bounds the time from a request's first byte to its blank line (slowloris), bounds the
connections one client holds (a process on the Unix socket, an address on TCP), and keeps
descriptors free for the engine: when the connections reach ``max_connections`` the one idle
the longest (a keep-alive connection waiting for its next request) is closed to admit the new
one, as nginx and Go's idle pool do. A connection past a bound is not dropped unanswered: it
gets one error response (429, or 503) once its request head arrives, then is closed. A JSON
body past MAX_BODY is a 413, and the connection closes without reading the rest.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from dataclasses import dataclass, field


# A JSON body is read whole before it is decoded. dockerd's ReadJSON decodes a stream with no
# bound at all; berth bounds what it holds in memory (build contexts, image loads and archive
# uploads are streamed, never read whole, and have no bound).
MAX_BODY = 64 * 1024 * 1024
LINGER = 0.5  # seconds input is read and dropped after an answer that leaves a body unread


@dataclass(frozen=True)
class Limits:
    max_header: int = 1 << 20  # request line + headers: Go's DefaultMaxHeaderBytes (dockerd's)
    header_timeout: float = 30.0  # from a request's first byte to its head's end (dockerd: 5 min)
    per_client: int = 512  # connections one client may hold at once
    max_connections: int = 4096  # all clients; set from RLIMIT_NOFILE by the daemon
    starts_per_turn: int = 4  # handlers that begin in one turn of the loop (berth.api.turns); 0: all

    @classmethod
    def for_fds(cls, nofile: int, reserve: int = 256) -> Limits:
        """Limits for a process allowed ``nofile`` descriptors, ``reserve`` of them kept for the
        engine (layers, logs, shims' sockets, the store); ``BERTH_API_HEADER_TIMEOUT``,
        ``BERTH_API_CONNS_PER_CLIENT`` and ``BERTH_API_STARTS_PER_TURN`` override the defaults."""
        if nofile < 0:  # RLIM_INFINITY
            nofile = 1 << 20
        timeout = os.environ.get("BERTH_API_HEADER_TIMEOUT")
        per_client = os.environ.get("BERTH_API_CONNS_PER_CLIENT")
        per_turn = os.environ.get("BERTH_API_STARTS_PER_TURN")
        return cls(header_timeout=float(timeout) if timeout else cls.header_timeout,
                   per_client=int(per_client) if per_client else cls.per_client,
                   max_connections=max(16, nofile - reserve),
                   starts_per_turn=int(per_turn) if per_turn else cls.starts_per_turn)


@dataclass(eq=False)
class Conn:
    """One accepted connection: who holds it, and since when it waits for a request (idle)."""

    peer: str
    writer: asyncio.StreamWriter
    refused: tuple[int, str] | None = None  # (status, message) when admitted past a bound
    idle_since: float | None = field(default=None)


class Connections:
    """Admits connections under ``Limits`` and finds the idle ones to shed."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.open: set[Conn] = set()
        self.per_peer: dict[str, int] = {}

    def admit(self, peer: str, writer: asyncio.StreamWriter) -> Conn:
        conn = Conn(peer, writer)
        held = self.per_peer.get(conn.peer, 0)
        if held >= self.limits.per_client:
            conn.refused = (429, f"too many connections from this client (limit {self.limits.per_client})")
        elif len(self.open) >= self.limits.max_connections and not self._shed_idle():
            conn.refused = (503, f"too many connections (limit {self.limits.max_connections})")
        self.open.add(conn)
        self.per_peer[conn.peer] = held + 1
        return conn

    def leave(self, conn: Conn) -> None:
        if conn in self.open:
            self.open.discard(conn)
            left = self.per_peer.get(conn.peer, 1) - 1
            if left > 0:
                self.per_peer[conn.peer] = left
            else:
                self.per_peer.pop(conn.peer, None)

    def _shed_idle(self) -> bool:
        """Close the connection idle the longest; False when none is idle."""
        idle = [c for c in self.open if c.idle_since is not None]
        if not idle:
            return False
        victim = min(idle, key=lambda c: c.idle_since or 0.0)
        victim.idle_since = None
        victim.writer.close()  # its reader sees EOF: its loop ends and it leaves
        self.leave(victim)
        return True



async def read_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Conn | None,
                    limits: Limits) -> bytes | None:
    """A request's head, or None when the connection ends (its answer written if one is due).

    Waiting for a request's first byte has no time limit (an idle keep-alive connection, shed
    under fd pressure); from that byte on, the head must be whole within the header time and
    the header size. A connection admitted past a bound gets its error instead."""
    if conn is not None and conn.refused:
        await refuse(reader, writer, limits.header_timeout, *conn.refused)
        return None
    if conn is not None:
        conn.idle_since = asyncio.get_running_loop().time()
    try:
        first = await reader.readexactly(1)
    except asyncio.IncompleteReadError:
        return None
    finally:
        if conn is not None:
            conn.idle_since = None
    try:
        async with asyncio.timeout(limits.header_timeout):
            return first + await _head(reader, limits.max_header - 1)
    except asyncio.IncompleteReadError:
        return None
    except TimeoutError:
        error(writer, 408, "timeout reading the request header")
    except HeaderTooLarge:  # Go's net/http: errTooLarge
        error(writer, 431, "request header fields too large")
    return None


class HeaderTooLarge(Exception):
    pass


async def _head(reader: asyncio.StreamReader, most: int) -> bytes:
    """Up to the blank line that ends a head, at most ``most`` bytes. The reader's own limit
    (64 KiB) stays what bodies are buffered by; a head longer than that is taken in pieces."""
    parts: list[bytes] = []
    size = 0
    while True:
        try:
            last = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError as e:  # not in the buffer's first 64 KiB: take them
            last = await reader.readexactly(e.consumed)
            if size + len(last) > most:
                raise HeaderTooLarge() from None
            parts.append(last)
            size += len(last)
            continue
        if size + len(last) > most:
            raise HeaderTooLarge()
        return b"".join(parts) + last


async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float,
                 status: int, message: str) -> None:
    """A connection past a bound: its request head (within the header time, from the accept)
    gets one error, then the connection is closed."""
    try:
        async with asyncio.timeout(timeout):
            await reader.readuntil(b"\r\n\r\n")
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return
    error(writer, status, message)
    await writer.drain()


_REASONS = {408: "Request Timeout", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
            503: "Service Unavailable"}


def error(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    """An answer written before any request was parsed; the connection closes after it."""
    body = json.dumps({"message": message}).encode() + b"\n"
    writer.write(f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)


def peer_of(writer: asyncio.StreamWriter) -> str:
    """A client's name for the per-client bound: its address on TCP; on a Unix socket the pid
    that connected it (SO_PEERCRED: struct ucred, pid first)."""
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return f"ip:{peer[0]}"
    sock = writer.get_extra_info("socket")
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return f"pid:{struct.unpack('3i', creds)[0]}"
    except (OSError, AttributeError):
        return "unknown"


async def close_write_and_wait(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Closing a socket with unread input resets it, and the peer loses the answer: end the
    writing side, then discard what still comes for a moment (Go's closeWriteAndWait)."""
    if writer.can_write_eof():
        writer.write_eof()
    loop = asyncio.get_running_loop()
    end = loop.time() + LINGER
    try:
        while loop.time() < end:
            if not await asyncio.wait_for(reader.read(1 << 20), end - loop.time()):
                break
    except (TimeoutError, ConnectionError):
        pass
