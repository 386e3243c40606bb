"""Streams of JSON messages (pull, push, load, build progress) as Docker writes them: one Go-encoded
message per line, the stream starting with its first message so that an early error can still
be a plain status; and byte streams (export, save) that start the same way."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from typing import Any, Awaitable, Callable

from berth.api.http import Request, StreamResponse
from berth.engine.progress import Progress


def go_json(msg: dict[str, Any]) -> bytes:
    """One JSON message as Go's encoder writes it (``<``, ``>``, ``&`` escaped)."""
    s = json.dumps(msg, separators=(",", ":"))
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


class JsonLines:
    """A stream of JSON messages that starts with its first message (so an error before it
    can still be a plain status); ``gone`` once the client hung up."""

    def __init__(self, req: Request, started: bool = False):
        self.req = req
        self.resp: StreamResponse | None = StreamResponse(req) if started else None
        self.gone = False

    async def send(self, msg: dict[str, Any]) -> None:
        if self.gone:
            return
        if self.resp is None:
            self.resp = StreamResponse(req=self.req)
        try:
            await self.resp.write(go_json(msg) + b"\r\n")
        except (ConnectionError, OSError):
            self.gone = True

    async def finish(self) -> StreamResponse:
        if self.resp is None:
            self.resp = StreamResponse(req=self.req)
        if not self.gone:
            try:
                await self.resp.finish()
            except (ConnectionError, OSError):
                pass
        return self.resp


async def client_gone(req: Request) -> None:
    """Returns when the client hangs up (EOF on its connection, after any request body)."""
    while await req.read_chunk():
        pass
    while await req.reader.read(4096):
        pass  # a streaming response's client sends nothing more: wait for its EOF


async def json_stream(req: Request, work: Callable[[Progress], Awaitable[Any]],
                      errors_in_stream: bool = False, cancel_on_hangup: bool = False,
                      detail: Callable[[BaseException], dict[str, Any] | None] | None = None) -> StreamResponse:
    """Run ``work(progress)`` and stream its JSON messages; the response starts with the
    first message, so an error before it gets a plain status (as Docker's pull answers 404).
    An error after it is the stream's last message (``errorDetail``). With
    ``errors_in_stream`` every error is a stream message under a 200 (Docker's load). With
    ``cancel_on_hangup`` the work is cancelled when the client hangs up (Docker's pull and
    build). ``detail(exc)``: the errorDetail of an error that is a stream message even before
    the stream started (a failed build step), None for the others."""
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.ensure_future(work(Progress(loop, q.put_nowait)))
    hangup = asyncio.ensure_future(client_gone(req) if cancel_on_hangup else loop.create_future())
    out = JsonLines(req, started=errors_in_stream)
    send = out.send
    try:
        while True:
            get = asyncio.ensure_future(q.get())
            done, _ = await asyncio.wait({get, task, hangup}, return_when=asyncio.FIRST_COMPLETED)
            if get in done:
                await send(get.result())
                continue
            get.cancel()
            if hangup in done and not task.done():
                await _cancel(task)
                req.responded = True
                raise ConnectionResetError("the client went away")
            await asyncio.sleep(0)  # let call_soon_threadsafe messages land
            while not q.empty():
                await send(q.get_nowait())
            break
    finally:
        hangup.cancel()
        await _cancel(task)
    exc = task.exception()
    if exc is not None:
        err = detail(exc) if detail is not None else None
        if out.resp is None and err is None:
            raise exc
        await send({"errorDetail": err or {"message": str(exc)}, "error": str(exc)})
    return await out.finish()


async def _cancel(task: asyncio.Future[Any]) -> None:
    if not task.done():
        task.cancel()
        try:
            await task
        except BaseException:
            pass


async def stream_chunks(req: Request, chunks: AsyncGenerator[bytes, None], content_type: str,
                        empty: bytes | None = None) -> StreamResponse:
    """Answer with ``chunks`` once the first has come (an error before it is a plain status).

    ``empty``: what an empty stream sends; None: an empty stream is the producer's error.
    """
    try:
        first = await anext(chunks) if empty is None else await anext(chunks, empty)
        resp = StreamResponse(req, content_type=content_type)
        await resp.write(first)
        async for chunk in chunks:
            await resp.write(chunk)
        await resp.finish()
        return resp
    finally:
        await chunks.aclose()
