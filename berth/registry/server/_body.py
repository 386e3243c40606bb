"""Moving request bodies into upload sessions without holding them in memory.

The loop reads a chunk while a worker thread appends and hashes the previous batch, so a
single stream uses two cores; at most two batches are in memory per request.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

from aiohttp import web

from berth.registry.server.uploads import Upload

BATCH = 1 << 20


async def stream_into(request: web.Request, up: Upload, executor: Executor) -> int:
    """Append the request body to up; return the bytes appended. On a broken connection the
    bytes received so far stay in the upload (so it can be resumed) and the error propagates."""
    loop = asyncio.get_running_loop()
    writer = up.open_writer()
    start = up.offset
    pending: asyncio.Future[None] | None = None
    buf: list[bytes] = []
    size = 0
    try:
        while chunk := await request.content.readany():
            buf.append(chunk)
            size += len(chunk)
            if size >= BATCH:
                data = buf[0] if len(buf) == 1 else b"".join(buf)
                buf.clear()
                size = 0
                if pending is not None:
                    await pending
                pending = loop.run_in_executor(executor, writer.write, data)
    finally:
        try:
            if pending is not None:
                await pending
            if buf:
                writer.write(b"".join(buf))
        finally:
            writer.close()
    return up.offset - start


async def read_limited(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or None when it is longer than limit."""
    if request.content_length is not None and request.content_length > limit:
        return None
    parts = []
    total = 0
    while chunk := await request.content.readany():
        total += len(chunk)
        if total > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)
