"""Exec, Attach and PortForward over SPDY/3.1, as the kubelet's streaming server serves them
to client-go's remotecommand and portforward (what a kubelet's proxy, ``kubectl exec`` through
an API server without WebSocket translation, and ``crictl exec -i`` speak).

The handshake is Kubernetes' httpstream one: the client sends ``Connection: Upgrade``,
``Upgrade: SPDY/3.1`` and one or more ``X-Stream-Protocol-Version``; the first of them the
server supports is chosen and sent back with ``101 Switching Protocols`` (none given: 400; none
supported: 403 with ``X-Accepted-Stream-Protocol-Versions``). Then the client opens the streams,
each named by its ``streamtype`` header:

- exec and attach (``v5``/``v4``/``v3``/``v2.channel.k8s.io``, ``channel.k8s.io``): ``error``
  always, ``stdin``, ``stdout``, ``stderr`` (not with a tty) as the request asked, ``resize``
  with a tty (JSON ``{"Width","Height"}`` objects, one after another). The outcome goes on the
  error stream: from v4 on a ``metav1.Status`` (the exit code as its ``ExitCode`` cause), before
  only a failure's text. stdin's FIN closes the process's stdin.
- port forward (``portforward.k8s.io``): a pair per connection, ``error`` and ``data``, both
  with the ``port`` and the same ``requestid``; the data stream is the connection to
  ``localhost:<port>`` in the pod's network namespace, the error stream gets a failure's text.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from berth.cri import stream_channels
from berth.cri.containers import PodContainers
from berth.cri.sandboxes import Sandboxes
from berth.cri.spdy_session import Session, Stream
from berth.engine import portforward
from berth.errors import BerthError

V5, V4, V3, V2, V1 = "v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"
EXEC_PROTOCOLS = (V5, V4, V3, V2, V1)
PORTFORWARD_PROTOCOLS = ("portforward.k8s.io",)
log = logging.getLogger("berth.cri")

STREAM_TIMEOUT = 30.0  # seconds for the client to open the streams it should (the kubelet's)
HEADER = "X-Stream-Protocol-Version"


async def upgrade(req: web.Request, protocols: tuple[str, ...]) -> tuple[Session, str] | web.Response:
    """The SPDY/3.1 handshake: the session on this connection and the protocol chosen, or the
    refusal to send."""
    offered = [p.strip() for v in req.headers.getall(HEADER, []) for p in v.split(",") if p.strip()]
    if not offered:
        return web.Response(status=400, text=f"unable to upgrade: {HEADER} is required\n")
    chosen = next((p for p in offered if p in protocols), "")
    if not chosen:
        resp = web.Response(status=403, text=f"unable to upgrade: unable to negotiate protocol: client supports "
                                             f"{offered}, server accepts {list(protocols)}\n")
        for p in protocols:
            resp.headers.add("X-Accepted-Stream-Protocol-Versions", p)
        return resp
    transport = req.transport
    if transport is None:
        return web.Response(status=500, text="connection gone\n")
    transport.write(("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                     f"{HEADER}: {chosen}\r\n\r\n").encode())
    return Session(transport), chosen


async def _done(session: Session) -> web.StreamResponse:
    """What the aiohttp handler returns once the session is over (its connection is closed,
    so aiohttp writes nothing)."""
    session.close()
    await session.closed
    return web.Response(status=101)


def expected_streams(r: Any, protocol: str) -> set[str]:
    kinds = {"error"}
    kinds |= {"stdin"} if r.stdin else set()
    kinds |= {"stdout"} if r.stdout else set()
    kinds |= {"stderr"} if r.stderr and not r.tty else set()
    kinds |= {"resize"} if r.tty and protocol in (V5, V4, V3) else set()
    return kinds


async def accept_streams(session: Session, kinds: set[str], timeout: float = STREAM_TIMEOUT) -> dict[str, Stream] | str:
    """The client's streams by type, or why not."""
    got: dict[str, Stream] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while set(got) != kinds:
        try:
            s = await asyncio.wait_for(session.accept(), max(deadline - loop.time(), 0))
        except asyncio.TimeoutError:
            return f"timed out waiting for client to create streams {sorted(kinds - set(got))}"
        if s is None:
            return "the client went away"
        if s.kind not in kinds or s.kind in got:
            return f"unexpected stream type {s.kind!r}"
        got[s.kind] = s
    return got


class Exchange:
    """An exec's or attach's streams: the outcome on the error stream, then the hang-up."""

    def __init__(self, session: Session, protocol: str, streams: dict[str, Stream]):
        self.session, self.protocol, self.streams = session, protocol, streams

    async def out(self, kind: str, data: bytes) -> None:
        s = self.streams.get(kind) or self.streams.get("stdout")
        if s is not None:
            await s.write(data)

    async def finish(self, code: int | None, error: str = "", cmd: list[str] | None = None) -> None:
        status = stream_channels.status_of(code, error, cmd)
        err = self.streams.get("error")
        if err is not None:
            if self.protocol in (V5, V4):
                await err.write(json.dumps(status).encode())
            elif status["status"] != "Success":
                await err.write(status["message"].encode())
        for s in self.streams.values():
            s.close()
        self.session.close()

    async def pump_input(self, stdin: Callable[[bytes], Awaitable[None]], close_stdin: Callable[[], None],
                         resize: Callable[[int, int], Awaitable[None]]) -> None:
        tasks = []
        if "stdin" in self.streams:
            tasks.append(_pump_stdin(self.streams["stdin"], stdin, close_stdin))
        if "resize" in self.streams:
            tasks.append(_pump_resize(self.streams["resize"], resize))
        await asyncio.gather(*tasks)
        await self.session.closed  # input ends when the client hangs up


async def _pump_stdin(s: Stream, stdin: Callable[[bytes], Awaitable[None]], close_stdin: Callable[[], None]) -> None:
    while data := await s.read():
        await stdin(data)
    close_stdin()


async def _pump_resize(s: Stream, resize: Callable[[int, int], Awaitable[None]]) -> None:
    buf, dec = "", json.JSONDecoder()
    while data := await s.read():
        buf += data.decode(errors="replace")
        while buf.strip():
            try:
                obj, end = dec.raw_decode(buf.lstrip())
            except ValueError:
                break
            buf = buf.lstrip()[end:]
            try:
                await resize(int(obj["Height"]), int(obj["Width"]))
            except (KeyError, TypeError, ValueError):
                pass


async def _open(req: web.Request, r: Any, timeout: float) -> tuple[Exchange | None, web.StreamResponse | None]:
    up = await upgrade(req, EXEC_PROTOCOLS)
    if isinstance(up, web.Response):
        return None, up
    session, protocol = up
    streams = await accept_streams(session, expected_streams(r, protocol), timeout)
    if isinstance(streams, str):
        session.close()
        return None, await _done(session)
    return Exchange(session, protocol, streams), None


async def serve_exec(pods: PodContainers, req: web.Request, r: Any,
                     timeout: float = STREAM_TIMEOUT) -> web.StreamResponse:
    """SPDY GET /exec/<token>: the cached ExecRequest with its streams on SPDY streams."""
    ex, refused = await _open(req, r, timeout)
    if ex is None:
        assert refused is not None
        return refused
    cmd = list(r.cmd)
    try:
        session = await pods.open_exec(r.container_id, cmd, r.tty, r.stdin, r.stdout, r.stderr)
    except BerthError as e:
        await ex.finish(None, str(e))
        return await _done(ex.session)

    async def resize(h: int, w: int) -> None:
        try:
            await pods.execs.resize(session.ex.id, h, w)
        except BerthError:
            pass

    async def relay() -> None:
        async for chunk in session.output():
            if session.raw:
                await ex.out("stdout", chunk)
            else:
                await ex.out("stderr" if chunk[0] == 2 else "stdout", chunk[8:])

    await stream_channels._both(ex.pump_input(session.write_stdin, session.close_stdin, resize), relay())
    await ex.finish(session.ex.exit_code, "", cmd)
    return await _done(ex.session)


async def serve_attach(pods: PodContainers, req: web.Request, r: Any,
                       timeout: float = STREAM_TIMEOUT) -> web.StreamResponse:
    """SPDY GET /attach/<token>: the cached AttachRequest's container's streams."""
    ex, refused = await _open(req, r, timeout)
    if ex is None:
        assert refused is not None
        return refused
    try:
        c = pods.get(r.container_id)
        shim_r, shim_w = await pods.containers.attach_stream(c.id, r.stdin and c.config.OpenStdin, r.stdout,
                                                             r.stderr)
    except BerthError as e:
        await ex.finish(None, str(e))
        return await _done(ex.session)

    pipes = stream_channels.ShimAttach(pods, c.id, bool(c.config.Tty), shim_r, shim_w)

    async def out(stream: int, data: bytes) -> None:
        await ex.out("stderr" if stream == 2 else "stdout", data)

    try:
        await stream_channels._both(ex.pump_input(pipes.stdin, pipes.close_stdin, pipes.resize), pipes.relay(out))
    finally:
        shim_w.close()
    await ex.finish(0)
    return await _done(ex.session)


async def serve_portforward(sandboxes: Sandboxes, req: web.Request, r: Any,
                            timeout: float = STREAM_TIMEOUT) -> web.StreamResponse:
    """SPDY GET /portforward/<token>: a connection into the pod per data/error stream pair.
    A pair whose second stream does not come within ``timeout`` seconds is dropped, the error
    written on the stream that came (the kubelet's "timed out waiting for streams")."""
    up = await upgrade(req, PORTFORWARD_PROTOCOLS)
    if isinstance(up, web.Response):
        return up
    session, _ = up
    pairs: dict[str, dict[str, Stream]] = {}
    timers: dict[str, asyncio.TimerHandle] = {}
    tasks: set[asyncio.Task[None]] = set()

    def start(task: Awaitable[None]) -> None:
        t = asyncio.ensure_future(task)
        tasks.add(t)
        t.add_done_callback(tasks.discard)

    def expire(rid: str) -> None:
        timers.pop(rid, None)
        pair = pairs.pop(rid, {})
        log.debug("SPDY port-forward: request %s timed out waiting for streams (%s came)", rid, sorted(pair))
        start(_give_up(pair, f"(conn={id(session):#x}, request={rid}) timed out waiting for streams"))

    try:
        while (s := await session.accept()) is not None:
            if s.kind not in ("data", "error"):
                s.close()
                continue
            # without a requestid (old clients) the error stream is opened just before its data stream
            rid = s.header("requestid") or str(s.id if s.kind == "error" else s.id - 2)
            pair = pairs.setdefault(rid, {})
            pair[s.kind] = s
            if len(pair) == 1:
                timers[rid] = asyncio.get_running_loop().call_later(timeout, expire, rid)
            if len(pair) == 2:
                del pairs[rid]
                timers.pop(rid).cancel()
                start(_forward(sandboxes, r.pod_sandbox_id, pair["data"], pair["error"]))
    finally:
        for h in timers.values():
            h.cancel()
        for t in list(tasks):
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return await _done(session)


async def _give_up(pair: dict[str, Stream], message: str) -> None:
    """The half pair's end: the message on its error stream (if that is the one), both closed."""
    if (error := pair.get("error")) is not None:
        await error.write(message.encode())
    for s in pair.values():
        s.close()


async def _forward(sandboxes: Sandboxes, sid: str, data: Stream, error: Stream) -> None:
    raw = data.header("port")
    try:
        port = int(raw)
        if not 0 < port < 65536:
            raise ValueError(raw)
        c = sandboxes.get(sid)
        reader, writer = await portforward.dial(sandboxes.containers, c.id, port)
    except (BerthError, OSError, ValueError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        what = f"invalid port {raw!r}" if isinstance(e, ValueError) else \
            f"failed to connect to localhost:{raw} inside namespace: {why}"
        await error.write(f"error forwarding port {raw} to pod {sid}: {what}".encode())
        error.close()
        data.close()
        return

    async def to_pod() -> None:
        while chunk := await data.read():
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    up = asyncio.ensure_future(to_pod())
    try:
        while chunk := await reader.read(65536):
            await data.write(chunk)
    except (ConnectionError, OSError):
        pass
    finally:
        up.cancel()
        await asyncio.gather(up, return_exceptions=True)
        writer.close()
        data.close()
        error.close()
