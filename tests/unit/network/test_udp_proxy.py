"""ports.udp_proxy on loopback sockets: replies go back to each client; idle flows are closed."""

from __future__ import annotations

import asyncio
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
