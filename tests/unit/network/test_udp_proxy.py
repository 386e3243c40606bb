"""ports.udp_proxy on loopback sockets: replies go back to each client; idle flows are closed."""

from __future__ import annotations

import asyncio
import os
import socket

from berth.network import ports


async def _echo_server() -> tuple[asyncio.DatagramTransport, int]:
    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport

        def datagram_received(self, data: bytes, addr: object) -> None:
            self.t.sendto(b"echo:" + data, addr)  # type: ignore[attr-defined]

    t, _ = await asyncio.get_running_loop().create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    return t, t.get_extra_info("sockname")[1]  # type: ignore[return-value]


async def _ask(port: int, data: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
    try:
        await loop.sock_sendto(c, data, ("127.0.0.1", port))
        return await asyncio.wait_for(loop.sock_recv(c, 2048), 2)
    finally:
        c.close()


def test_udp_proxy_relays_per_client_and_expires_idle_flows() -> None:
    async def main() -> None:
        server, target = await _echo_server()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        proxy = await ports.udp_proxy(sock, ("127.0.0.1", target), idle=0.2)
        port = sock.getsockname()[1]
        got = await asyncio.gather(*(_ask(port, b"ping%d" % i) for i in range(3)))
        assert sorted(got) == [b"echo:ping0", b"echo:ping1", b"echo:ping2"]
        assert len(proxy.flows) == 3
        await asyncio.sleep(0.5)
        assert proxy.flows == {}                       # idle flows closed
        assert await _ask(port, b"again") == b"echo:again"
        server.close()
        proxy.close()
        assert proxy.flows == {}
    asyncio.run(main())


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_udp_proxy_holds_at_most_max_flows_the_least_recently_used_go_first() -> None:
    """Clients from many source ports on loopback: the proxy's sockets stay at UDP_MAX_FLOWS; a
    new client takes the place of the flow idle the longest, a recently used one stays."""
    async def main() -> None:
        server, target = await _echo_server()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        proxy = await ports.udp_proxy(sock, ("127.0.0.1", target))
        port = sock.getsockname()[1]
        loop = asyncio.get_running_loop()
        keep = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        keep.bind(("127.0.0.1", 0))
        try:
            await loop.sock_sendto(keep, b"first", ("127.0.0.1", port))
            assert await asyncio.wait_for(loop.sock_recv(keep, 2048), 2) == b"echo:first"
            before = _fds()
            n = ports.UDP_MAX_FLOWS + 150
            for batch in range(0, n, 50):
                got = await asyncio.gather(*(_ask(port, b"p%d" % i) for i in range(batch, min(n, batch + 50))))
                assert got == [b"echo:p%d" % i for i in range(batch, min(n, batch + 50))]
                # the kept client keeps talking: its flow is never the one that goes
                await loop.sock_sendto(keep, b"still", ("127.0.0.1", port))
                assert await asyncio.wait_for(loop.sock_recv(keep, 2048), 2) == b"echo:still"
            assert len(proxy.flows) == ports.UDP_MAX_FLOWS
            assert keep.getsockname() in proxy.flows
            assert _fds() - before <= ports.UDP_MAX_FLOWS  # one socket per flow, no more
        finally:
            keep.close()
            server.close()
            proxy.close()
        assert proxy.flows == {}
    asyncio.run(main())
