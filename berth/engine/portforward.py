"""Streams to a port inside a running container's network namespace (the CRI's
PortForward): what ``kubectl port-forward`` reaches through the kubelet.

    reader, writer = await portforward.dial(containers, sandbox_id, 8080)
"""

from __future__ import annotations

import asyncio

from berth.engine.containers import Containers
from berth.errors import Conflict
from berth.network.dial import dial_localhost


async def dial(containers: Containers, ref: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP stream to ``localhost:port`` in the container's network namespace.

    Raises:
        Conflict: the container is not running.
        OSError: nothing listens on the port there.
    """
    c = containers.get(ref)
    if not c.running or not c.state.pid:
        raise Conflict(f"Container {c.id} is not running")
    sock = await asyncio.to_thread(dial_localhost, f"/proc/{c.state.pid}/ns/net", port)
    return await asyncio.open_connection(sock=sock)
