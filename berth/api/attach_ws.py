"""GET /containers/{id}/attach/ws: attach over a WebSocket (RFC 6455, server side, by hand).

What Docker does (api/server/router/container/container_routes.go, wsContainersAttach): the
same attach as POST /attach (query stdin, stdout, stderr, stream, logs, detachKeys), but the
connection is a WebSocket: output goes out as one frame per chunk, raw bytes, never
stdcopy-multiplexed (binary frames from API 1.28 on, text frames before); the payload of every
data frame the client sends is the container's stdin. When the output ends (the container
exited, or the client typed the detach keys) the server sends a close frame (1000) and hangs
up; when the client closes, the server answers its close frame and hangs up; the container
keeps running either way.

The protocol part (``WebSocket``) is small and has no container knowledge: the handshake
(Sec-WebSocket-Accept), frames with the client's masking, 7/16/64-bit lengths, fragmented
messages (continuation frames, control frames between them), ping -> pong, close with a
status code, and protocol errors answered with close 1002 (1009 for an oversized frame).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct

from berth.api.app import App, Routes
from berth.api.containers_io import detach_keys
from berth.api.http import Request, Response
from berth.engine.container_ops import Stream
from berth.engine.containers import Containers
from berth.engine.logs import LogReader
from berth.schema import detachkeys, stdcopy

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
NORMAL, GOING_AWAY, PROTOCOL_ERROR, TOO_BIG = 1000, 1001, 1002, 1009
MAX_FRAME = 16 << 20  # a stdin frame larger than this is refused (1009)


class ProtocolError(Exception):
    def __init__(self, message: str, code: int = PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("latin-1") + GUID).digest()).decode()


def handshake_error(req: Request) -> Response | None:
    """None when ``req`` is a valid WebSocket opening handshake, else the HTTP answer."""
    h = req.headers
    if req.method != "GET" or "websocket" not in h.get("upgrade", "").lower() \
            or "upgrade" not in [t.strip() for t in h.get("connection", "").lower().split(",")]:
        return Response(400, b"Bad Request: not a websocket handshake\n", "text/plain; charset=utf-8")
    if h.get("sec-websocket-version", "").strip() != "13":
        return Response(426, b"Upgrade Required: Sec-WebSocket-Version 13\n", "text/plain; charset=utf-8",
                        {"Sec-WebSocket-Version": "13"})
    try:
        raw = base64.b64decode(h.get("sec-websocket-key", "").strip(), validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 16:
        return Response(400, b"Bad Request: bad Sec-WebSocket-Key\n", "text/plain; charset=utf-8")
    return None


def encode_frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """A server frame: never masked (RFC 6455 §5.1)."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        head = struct.pack("!BB", b0, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", b0, 126, n)
    else:
        head = struct.pack("!BBQ", b0, 127, n)
    return head + payload


def unmask(data: bytes, key: bytes) -> bytes:
    if not data:
        return data
    n = len(data)
    k = int.from_bytes((key * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ k).to_bytes(n, "big")


class WebSocket:
    """The server end of an upgraded connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, binary: bool = True) -> None:
        self.reader = reader
        self.writer = writer
        self.opcode = BINARY if binary else TEXT
        self.close_sent = False
        self.close_received: int | None = None
        self._fragmented = False  # inside a message started by a frame without FIN

    async def _frame(self) -> tuple[bool, int, bytes]:
        b0, b1 = await self.reader.readexactly(2)
        fin, rsv, opcode = bool(b0 & 0x80), b0 & 0x70, b0 & 0x0F
        masked, n = bool(b1 & 0x80), b1 & 0x7F
        if rsv:
            raise ProtocolError("reserved bits set without an extension")
        if opcode not in (CONT, TEXT, BINARY, CLOSE, PING, PONG):
            raise ProtocolError(f"unknown opcode {opcode:#x}")
        if not masked:
            raise ProtocolError("client frames must be masked")
        if n == 126:
            n = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            if n >> 63:
                raise ProtocolError("bad frame length")
        if opcode >= CLOSE and (n > 125 or not fin):
            raise ProtocolError("control frames must be short and unfragmented")
        if n > MAX_FRAME:
            raise ProtocolError("frame too big", TOO_BIG)
        key = await self.reader.readexactly(4)
        return fin, opcode, unmask(await self.reader.readexactly(n), key)

    async def receive(self) -> bytes | None:
        """The payload of the next data frame (a whole message, or one fragment of it), as it
        arrives: stdin needs no reassembly. Answers pings; None once the client closed (its
        close frame answered) or the connection ended."""
        while True:
            try:
                fin, opcode, payload = await self._frame()
            except (asyncio.IncompleteReadError, ConnectionError):
                return None
            except ProtocolError as e:
                await self.close(e.code, str(e))
                return None
            if opcode == PING:
                self.send(payload, PONG)
                continue
            if opcode == PONG:
                continue
            if opcode == CLOSE:
                code = NORMAL
                if len(payload) == 1:
                    await self.close(PROTOCOL_ERROR, "bad close payload")
                    return None
                if len(payload) >= 2:
                    code = struct.unpack("!H", payload[:2])[0]
                self.close_received = code
                await self.close(code if _valid_close(code) else PROTOCOL_ERROR)
                return None
            if opcode == CONT and not self._fragmented:
                await self.close(PROTOCOL_ERROR, "continuation frame outside a message")
                return None
            if opcode != CONT and self._fragmented:
                await self.close(PROTOCOL_ERROR, "new message inside a fragmented one")
                return None
            self._fragmented = not fin
            if payload:
                return payload

    def send(self, data: bytes, opcode: int | None = None) -> None:
        if not self.close_sent:
            self.writer.write(encode_frame(self.opcode if opcode is None else opcode, data))

    async def close(self, code: int = NORMAL, reason: str = "") -> None:
        """Send our close frame (once) and flush it."""
        if self.close_sent:
            return
        self.close_sent = True
        try:
            self.writer.write(encode_frame(CLOSE, struct.pack("!H", code) + reason.encode()[:123]))
            await self.writer.drain()
        except (ConnectionError, OSError, RuntimeError):
            pass


    async def wait_closed(self, timeout: float = 1.0) -> None:
        """After our close frame: give the client a moment to answer with its own (RFC 6455
        §7.1.1: the server hangs up after the closing handshake)."""
        if self.close_received is not None or not self.close_sent:
            return
        try:
            async with asyncio.timeout(timeout):
                while self.close_received is None:
                    _fin, opcode, payload = await self._frame()
                    if opcode == CLOSE:
                        self.close_received = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else NORMAL
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ProtocolError):
            pass


async def _linger(req: Request, timeout: float = 1.0) -> None:
    """Half-close, then let the client finish: some clients answer a close frame with one more
    (websocket-client does, even after closing first), which must not meet a reset socket."""
    try:
        req.writer.write_eof()
        async with asyncio.timeout(timeout):
            while await req.reader.read(65536):
                pass
    except (TimeoutError, ConnectionError, OSError, RuntimeError):
        pass


def _valid_close(code: int) -> bool:
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011) or 3000 <= code <= 4999


async def attach_ws(app: App, req: Request) -> Response | None:
    engine = app.containers
    c = engine.get(req.match["id"])  # 404 as a plain HTTP answer, before any upgrade
    bad = handshake_error(req)
    if bad is not None:
        return bad
    stdin, stdout, stderr = req.flag("stdin"), req.flag("stdout"), req.flag("stderr")
    keys = detach_keys(req, c) if stdin else b""
    head = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(req.headers['sec-websocket-key'].strip())}\r\n\r\n")
    # subscribed before the 101 (see api/containers_io.attach)
    sub = engine.attach_soon(c.id, stdin, stdout, stderr) if req.flag("stream") else None
    req.writer.write(head.encode("latin-1"))
    req.hijacked = req.responded = True
    ws = WebSocket(req.reader, req.writer, binary=req.version_at_least("1.28"))
    try:
        await _session(engine, c.id, sub, c.config.Tty, ws, req, stdin, stdout, stderr, keys)
        await ws.wait_closed()
        await _linger(req)
    finally:
        if sub is not None and not sub.done():
            sub.cancel()
        try:
            req.writer.close()
        except Exception:
            pass
    return None



async def _session(engine: Containers, cid: str, sub: asyncio.Future[Stream] | None, tty: bool, ws: WebSocket,
                   req: Request, stdin: bool, stdout: bool, stderr: bool, keys: bytes) -> None:
    if req.flag("logs"):
        reader = LogReader(engine.data.container(cid).log, stdout, stderr, None, None, False, None)
        async for _stream, data in reader.read(False, lambda: False):
            ws.send(data)
        await req.writer.drain()
    if sub is None:
        await ws.close()
        return
    try:
        shim_r, shim_w = await sub
    except (asyncio.CancelledError, Exception):
        await ws.close(1011, "cannot attach")
        return
    matcher = detachkeys.Matcher(keys)

    async def upstream() -> None:
        """Client frames -> stdin. Ends on the client's close (or hang-up) or the detach keys."""
        while True:
            data = await ws.receive()
            if data is None:
                break
            if not stdin:
                continue
            data, detached = matcher.feed(data)
            try:
                if data:
                    shim_w.write(data)
                    await shim_w.drain()
            except (ConnectionError, OSError):
                break
            if detached:
                return
        if ws.close_sent:
            return  # the client is gone: the whole session ends
        try:
            shim_w.write_eof()
        except (OSError, RuntimeError):
            pass
        await asyncio.Event().wait()  # output goes on until the stream ends

    async def downstream() -> None:
        """Container output -> frames, raw (stdcopy headers from the shim removed)."""
        demux = stdcopy.Demuxer(strict=False)
        while True:
            try:
                data = await shim_r.read(65536)
            except (ConnectionError, OSError):
                data = b""
            if not data:
                return
            if not tty:
                data = b"".join(payload for _, payload in demux.feed(data))
            if data:
                ws.send(data)
                try:
                    await req.writer.drain()
                except (ConnectionError, OSError):
                    return

    up = asyncio.ensure_future(upstream())
    down = asyncio.ensure_future(downstream())
    try:
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if down in done and not up.done():
            # Output ended: say so, and let the one reader of client frames (upstream) see
            # the client's closing frame; cancelling it mid-frame would desynchronize the stream.
            await ws.close(NORMAL)
            try:
                await asyncio.wait_for(asyncio.shield(up), 1.0)
            except (asyncio.TimeoutError, Exception):
                pass
    finally:
        for t in (up, down):
            t.cancel()
        shim_w.close()
    await ws.close(NORMAL)


ROUTES: Routes = [("GET", "/containers/{id}/attach/ws", attach_ws)]
