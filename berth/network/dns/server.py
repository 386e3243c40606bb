"""The embedded DNS server: one UDP socket per container, at 127.0.0.11:53 in its namespace.

The socket is made in the container's network namespace (a socket belongs to the namespace
it was created in) and then served from berthd's event loop, so a lookup costs no process and
no thread. Names the engine knows (container names, aliases, short IDs on the container's
networks) are answered here; everything else is forwarded, from the host's namespace, to the
host's resolvers (``upstreams``), as dockerd does.

    srv = DnsServer(lookup, upstreams=["10.0.0.53"])
    await srv.serve(cid, "/proc/4242/ns/net")      # on start
    srv.close(cid)                                 # on exit (the socket pins the namespace)
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from berth.linux.netns import run_in_netns
from berth.network.dns import message as msg

log = logging.getLogger("berth.dns")

ADDRESS = "127.0.0.11"
FORWARD_TIMEOUT = 3.0

# (container id, name) -> addresses; None: not a name berth knows (forward it);
# [] known but no address. Second value: may this container's queries leave the host?
Lookup = Callable[[str, str], tuple[list[IPv4Address | IPv6Address] | None, bool]]
_FAMILY = {msg.TYPE_A: 4, msg.TYPE_AAAA: 6}


def host_upstreams(resolv_conf: str = "/etc/resolv.conf") -> list[str]:
    out = []
    try:
        for line in Path(resolv_conf).read_text().splitlines():
            parts = line.split()
            if parts[:1] == ["nameserver"] and len(parts) > 1 and ":" not in parts[1]:
                out.append(parts[1])
    except OSError:
        pass
    return out


class _Forward(asyncio.DatagramProtocol):
    def __init__(self, fut: asyncio.Future[bytes]):
        self.fut = fut

    def datagram_received(self, data: bytes, addr: object) -> None:
        if not self.fut.done():
            self.fut.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.fut.done():
            self.fut.set_exception(exc)


class _Serve(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer, cid: str):
        self.server, self.cid = server, cid
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.server.answer_local(self.cid, data)
        if reply is not None:
            if self.transport is not None:
                self.transport.sendto(reply, addr)
            return
        task = asyncio.get_running_loop().create_task(self._forward(data, addr))
        self.server.tasks.add(task)
        task.add_done_callback(self.server.tasks.discard)

    async def _forward(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = await self.server.forward(data, self.server.per_container.get(self.cid))
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)


class DnsServer:
    def __init__(self, lookup: Lookup, upstreams: list[str] | None = None):
        self.lookup = lookup
        self.upstreams = upstreams if upstreams is not None else host_upstreams()
        self.transports: dict[str, asyncio.DatagramTransport] = {}
        self.per_container: dict[str, list[str]] = {}   # --dns on a user network
        self.tasks: set[asyncio.Task[None]] = set()

    async def serve(self, cid: str, ns_path: str, upstreams: list[str] | None = None) -> None:
        """Listen at 127.0.0.11:53 inside the namespace. Raises OSError."""
        self.close(cid)
        if upstreams:
            self.per_container[cid] = list(upstreams)
        loop = asyncio.get_running_loop()

        def make() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            try:
                s.bind((ADDRESS, 53))
            except BaseException:
                s.close()
                raise
            s.setblocking(False)
            return s

        sock = await loop.run_in_executor(None, run_in_netns, ns_path, make)
        transport, _ = await loop.create_datagram_endpoint(lambda: _Serve(self, cid), sock=sock)
        self.transports[cid] = transport

    def close(self, cid: str) -> None:
        self.per_container.pop(cid, None)
        t = self.transports.pop(cid, None)
        if t is not None:
            t.close()

    def close_all(self) -> None:
        for cid in list(self.transports):
            self.close(cid)

    def answer_local(self, cid: str, data: bytes) -> bytes | None:
        """The reply for a name berth knows, an error reply, or None to forward."""
        try:
            q = msg.parse_query(data)
        except msg.BadMessage:
            return msg.error(data, msg.FORMERR)
        if q.qclass != msg.CLASS_IN:
            return msg.answer(data, q, [], msg.NOTIMP)
        addrs, may_forward = self.lookup(cid, q.name)
        if addrs is not None:
            return msg.answer(data, q, [a for a in addrs if a.version == _FAMILY.get(q.qtype)])
        if not may_forward or not self.per_container.get(cid, self.upstreams):
            return msg.answer(data, q, [], msg.SERVFAIL if may_forward else msg.NXDOMAIN)
        return None

    async def forward(self, data: bytes, upstreams: list[str] | None = None) -> bytes:
        loop = asyncio.get_running_loop()
        for server in upstreams or self.upstreams:
            fut: asyncio.Future[bytes] = loop.create_future()
            transport = None
            try:
                transport, _ = await loop.create_datagram_endpoint(lambda: _Forward(fut),
                                                                   remote_addr=(server, 53))
                transport.sendto(data)
                return await asyncio.wait_for(fut, FORWARD_TIMEOUT)
            except (OSError, asyncio.TimeoutError):
                continue
            finally:
                if transport is not None:
                    transport.close()
        try:
            return msg.answer(data, msg.parse_query(data), [], msg.SERVFAIL)
        except msg.BadMessage:
            return msg.error(data, msg.SERVFAIL)
