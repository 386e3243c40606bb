"""PortForward over a WebSocket (``v4.channel.k8s.io``, as the kubelet's streaming package
serves it; ``portforward.k8s.io`` is the SPDY variant's name).

The ports come from the URL's query (``?ports=8080,9090``, what WebSocket clients send) or,
without one, from the cached PortForwardRequest. Port number ``i`` (in that order) gets two
channels: ``2i`` carries the data both ways, ``2i+1`` the server's error text. Each channel's
first message from the server is the port number (2 bytes, little-endian), so the client
knows the mapping. A port whose connection fails (nothing listens in the pod) gets its error
text; the connection ends when the client hangs up.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import WSMsgType, web

from berth.cri.sandboxes import Sandboxes
from berth.engine import portforward
from berth.errors import BerthError

PROTOCOLS = ("v4.channel.k8s.io", "portforward.k8s.io")


def ports_of(req: web.Request, r: Any) -> list[int] | None:
    """The ports to forward (None: a bad list)."""
    raw = [p for v in req.query.getall("ports", []) for p in v.split(",") if p.strip()]
    try:
        ports = [int(p) for p in raw] if raw else [int(p) for p in r.port]
    except ValueError:
        return None
    if not ports or any(not 0 < p < 65536 for p in ports) or len(set(ports)) != len(ports):
        return None
    return ports


async def serve(sandboxes: Sandboxes, req: web.Request, r: Any) -> web.StreamResponse:
    """GET /portforward/<token>: the cached request's pod's ports on channel pairs."""
    ports = ports_of(req, r)
    if ports is None:
        return web.Response(status=400, text="ports must be distinct numbers from 1 to 65535\n")
    ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=16 << 20)
    await ws.prepare(req)
    for i, port in enumerate(ports):
        head = port.to_bytes(2, "little")
        await ws.send_bytes(bytes((2 * i,)) + head)
        await ws.send_bytes(bytes((2 * i + 1,)) + head)
    loop = asyncio.get_running_loop()
    conns: list[asyncio.Future[asyncio.StreamWriter | None]] = [loop.create_future() for _ in ports]
    pumps = [asyncio.ensure_future(_port(sandboxes, r.pod_sandbox_id, ws, i, p, conns[i]))
             for i, p in enumerate(ports)]
    try:
        await _client_input(ws, conns)
    finally:
        for t in pumps:
            t.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        for f in conns:
            w = f.result() if f.done() and not f.cancelled() else None
            if w is not None:
                w.close()
    return ws


async def _port(sandboxes: Sandboxes, sid: str, ws: web.WebSocketResponse, i: int, port: int,
                conn: asyncio.Future[asyncio.StreamWriter | None]) -> None:
    """Connect to ``port`` in the pod, then copy what it sends to channel ``2i``."""
    try:
        c = sandboxes.get(sid)
        reader, writer = await portforward.dial(sandboxes.containers, c.id, port)
    except (BerthError, OSError) as e:
        conn.set_result(None)
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        msg = f"error forwarding port {port} to pod {sid}: failed to connect to localhost:{port} inside " \
              f"namespace: {why}"
        await ws.send_bytes(bytes((2 * i + 1,)) + msg.encode())
        return
    conn.set_result(writer)
    while True:
        try:
            data = await reader.read(65536)
        except (ConnectionError, OSError):
            data = b""
        if not data or ws.closed:
            return
        await ws.send_bytes(bytes((2 * i,)) + data)


async def _client_input(ws: web.WebSocketResponse, conns: list[asyncio.Future[asyncio.StreamWriter | None]]) -> None:
    """The client's data frames to their port's connection, until the client hangs up."""
    async for msg in ws:
        if msg.type != WSMsgType.BINARY or not msg.data:
            continue
        ch = msg.data[0]
        if ch % 2 or ch // 2 >= len(conns):
            continue
        w = await conns[ch // 2]
        if w is None:
            continue
        try:
            w.write(msg.data[1:])
            await w.drain()
        except (ConnectionError, OSError):
            pass
