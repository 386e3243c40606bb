"""Exec and Attach over a WebSocket: Kubernetes' channel protocol (``channel.k8s.io``,
``v4.channel.k8s.io``, ``v5.channel.k8s.io``).

Every WebSocket message is one channel's: its first byte names the channel, the rest is the
payload. 0 is stdin (client to server), 1 stdout and 2 stderr, 3 the error channel (one
message at the end: from v4 on a JSON ``metav1.Status``, ``Success`` or ``Failure`` with the
exit code as the ``ExitCode`` cause; before v4 only a failure's text), 4 resize (JSON
``{"Width": w, "Height": h}``). v5 adds 255: ``[255, 0]`` from the client closes stdin (v4
has no way to, except hanging up). With a tty, everything the process writes is stdout.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from berth.cri.containers import PodContainers
from berth.engine.exec import ExecSession
from berth.errors import BerthError
from berth.schema import stdcopy

V5, V4, V1 = "v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"
PROTOCOLS = (V5, V4, V1)
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
MAX_MESSAGE = 16 << 20


class Channels:
    """One WebSocket carrying the channels: what the server sends, and the client's input."""

    def __init__(self, ws: web.WebSocketResponse):
        self.ws = ws
        self.protocol = ws.ws_protocol or V1

    async def send(self, channel: int, data: bytes) -> None:
        if data:
            await self.ws.send_bytes(bytes((channel,)) + data)

    async def finish(self, code: int | None, error: str = "", cmd: list[str] | None = None) -> None:
        """The error channel's one message (the outcome), then the close."""
        status = status_of(code, error, cmd)
        if self.ws.closed:
            return
        try:
            if self.protocol != V1:
                await self.send(ERROR, json.dumps(status).encode())
            elif status["status"] != "Success":
                await self.send(ERROR, status["message"].encode())
            await self.ws.close()
        except ConnectionError:
            pass

    async def read_input(self, stdin: Callable[[bytes], Awaitable[None]], close_stdin: Callable[[], None],
                         resize: Callable[[int, int], Awaitable[None]]) -> None:
        """Dispatch the client's messages until it hangs up (then stdin is closed too)."""
        async for msg in self.ws:
            if msg.type == WSMsgType.BINARY:
                data = bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:  # clients that send str (the Python client) send text
                data = msg.data.encode()
            else:
                continue
            if not data:
                continue
            ch, payload = data[0], data[1:]
            if ch == STDIN:
                await stdin(payload)
            elif ch == RESIZE:
                size = _size(payload)
                if size is not None:
                    await resize(*size)
            elif ch == CLOSE and self.protocol == V5 and payload[:1] == bytes((STDIN,)):
                close_stdin()
        close_stdin()


def status_of(code: int | None, error: str, cmd: list[str] | None) -> dict[str, Any]:
    """The metav1.Status the kubelet writes on the error channel."""
    if not error and code == 0:
        return {"metadata": {}, "status": "Success"}
    if error:
        return {"metadata": {}, "status": "Failure", "message": error, "reason": "InternalError"}
    rc = 137 if code is None else code
    return {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
            "message": f"command terminated with non-zero exit code: error executing command {cmd}, "
                       f"exit code {rc}",
            "details": {"causes": [{"reason": "ExitCode", "message": str(rc)}]}}


def _size(payload: bytes) -> tuple[int, int] | None:
    try:
        d = json.loads(payload)
        return int(d["Height"]), int(d["Width"])
    except (ValueError, KeyError, TypeError):
        return None


async def _open(req: web.Request) -> Channels:
    ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=MAX_MESSAGE)
    await ws.prepare(req)
    return Channels(ws)


async def serve_exec(pods: PodContainers, req: web.Request, r: Any) -> web.StreamResponse:
    """GET /exec/<token>: run the cached ExecRequest with its streams on the channels."""
    ch = await _open(req)
    cmd = list(r.cmd)
    try:
        session = await pods.open_exec(r.container_id, cmd, r.tty, r.stdin, r.stdout, r.stderr)
    except BerthError as e:
        await ch.finish(None, str(e))
        return ch.ws

    async def stdin(data: bytes) -> None:
        await session.write_stdin(data)

    async def resize(h: int, w: int) -> None:
        try:
            await pods.execs.resize(session.ex.id, h, w)
        except BerthError:
            pass

    await _both(ch.read_input(stdin, session.close_stdin, resize), _relay_exec(ch, session))
    await ch.finish(session.ex.exit_code, "", cmd)
    return ch.ws


async def _both(reader: Awaitable[None], relay: Awaitable[None]) -> None:
    """Relay output until it ends or the client hangs up (then the output is dropped)."""
    tasks = {asyncio.ensure_future(reader), asyncio.ensure_future(relay)}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _relay_exec(ch: Channels, session: ExecSession) -> None:
    async for chunk in session.output():
        try:
            if session.raw:
                await ch.send(STDOUT, chunk)
            else:
                await ch.send(chunk[0], chunk[8:])
        except ConnectionError:
            return


async def serve_attach(pods: PodContainers, req: web.Request, r: Any) -> web.StreamResponse:
    """GET /attach/<token>: the cached AttachRequest's container's streams on the channels."""
    ch = await _open(req)
    try:
        c = pods.get(r.container_id)
        shim_r, shim_w = await pods.containers.attach_stream(c.id, r.stdin and c.config.OpenStdin, r.stdout,
                                                             r.stderr)
    except BerthError as e:
        await ch.finish(None, str(e))
        return ch.ws

    pipes = ShimAttach(pods, c.id, bool(c.config.Tty), shim_r, shim_w)
    try:
        await _both(ch.read_input(pipes.stdin if r.stdin else _ignore, pipes.close_stdin, pipes.resize),
                    pipes.relay(ch.send))
    finally:
        shim_w.close()
    await ch.finish(0)
    return ch.ws


async def _ignore(data: bytes) -> None:
    pass


class ShimAttach:
    """An attach's pipes to the shim, as both transports drive them: stdin in (its end as
    EOF), resizes, and the output (stdcopy frames unless a tty) sent on by stream number."""

    def __init__(self, pods: PodContainers, cid: str, tty: bool, shim_r: asyncio.StreamReader,
                 shim_w: asyncio.StreamWriter):
        self.pods, self.cid, self.tty, self.shim_r, self.shim_w = pods, cid, tty, shim_r, shim_w

    async def stdin(self, data: bytes) -> None:
        self.shim_w.write(data)
        await self.shim_w.drain()

    def close_stdin(self) -> None:
        try:
            self.shim_w.write_eof()
        except (OSError, RuntimeError):
            pass

    async def resize(self, h: int, w: int) -> None:
        try:
            await self.pods.containers.resize(self.cid, h, w)
        except BerthError:
            pass

    async def relay(self, send: Callable[[int, bytes], Awaitable[None]]) -> None:
        """The output until the shim's end (or the client's): ``send(1 or 2, bytes)``."""
        demux = stdcopy.Demuxer(strict=False)
        while True:
            try:
                data = await self.shim_r.read(65536)
            except (ConnectionError, OSError):
                return
            if not data:
                return
            try:
                if self.tty:
                    await send(STDOUT, data)
                else:
                    for stream, payload in demux.feed(data):
                        await send(STDERR if stream == 2 else STDOUT, payload)
            except ConnectionError:
                return
