"""A SPDY/3.1 connection taken over from the streaming server's HTTP connection after
``101 Switching Protocols``: its streams, as the kubelet's streaming server sees them.

The client opens every stream (SYN_STREAM with a ``streamtype`` header, as client-go's
remotecommand and portforward do); the session answers each with SYN_REPLY and hands it to
whoever awaits ``accept()``. A stream reads what the client sends until its FIN (or an
RST_STREAM), and writes DATA frames, its FIN at ``close()``. PINGs are answered; a received
DATA frame is given back to the client's send windows (stream and connection) with
WINDOW_UPDATE once read. The send side is not throttled by the client's windows: client-go's
spdystream grants none (it sends no WINDOW_UPDATE), as containerd's and the kubelet's servers
assume. ``close()`` sends GOAWAY and hangs up.
"""

from __future__ import annotations

import asyncio
import logging

from berth.cri import spdy

log = logging.getLogger(__name__)

CHUNK = 32 << 10  # DATA frame payload size the session writes


class Stream:
    def __init__(self, session: Session, stream_id: int, headers: spdy.Headers):
        self.session, self.id, self.headers = session, stream_id, headers
        self.kind = spdy.header(headers, "streamtype")
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.remote_closed = False  # the client's FIN or RST_STREAM
        self.local_closed = False

    def header(self, name: str) -> str:
        return spdy.header(self.headers, name)

    async def read(self) -> bytes:
        """The next piece the client sent; b"" after its FIN."""
        if self.remote_closed and self._inbox.empty():
            return b""
        data = await self._inbox.get()
        if data:
            self.session.consumed(self.id, len(data))
        return data

    async def write(self, data: bytes) -> None:
        if self.local_closed or not data:
            return
        for i in range(0, len(data), CHUNK):
            self.session.send_raw(spdy.data_frame(self.id, data[i:i + CHUNK]))
        await self.session.drain()

    def close(self) -> None:
        """Our FIN (half close)."""
        if not self.local_closed:
            self.local_closed = True
            self.session.send_raw(spdy.data_frame(self.id, b"", fin=True))

    def _feed(self, data: bytes, fin: bool) -> None:
        if self.remote_closed:
            return
        if data:
            self._inbox.put_nowait(data)
        if fin:
            self.remote_closed = True
            self._inbox.put_nowait(b"")

    def _reset(self) -> None:
        self.local_closed = True
        self._feed(b"", True)


class Session(asyncio.Protocol):
    def __init__(self, transport: asyncio.Transport):
        self.transport = transport
        self.codec = spdy.Codec()
        self.streams: dict[int, Stream] = {}
        self._new: asyncio.Queue[Stream | None] = asyncio.Queue()
        self._last_id = 0
        self._writable = asyncio.Event()
        self._writable.set()
        self.closed = asyncio.get_running_loop().create_future()
        transport.set_protocol(self)
        transport.resume_reading()

    # -- asyncio.Protocol ----------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        try:
            frames = self.codec.feed(data)
        except spdy.SpdyError as e:
            log.debug("SPDY: %s", e)
            self.close(e.status)
            return
        for f in frames:
            self._frame(f)

    def connection_lost(self, exc: Exception | None) -> None:
        for s in self.streams.values():
            s._reset()
        self._new.put_nowait(None)
        self._writable.set()
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- frames from the client ------------------------------------------------------------
    def _frame(self, f: spdy.Frame) -> None:
        if isinstance(f, spdy.Data):
            s = self.streams.get(f.stream_id)
            if s is None:
                self.send(spdy.RstStream(f.stream_id, spdy.INVALID_STREAM))
            else:
                s._feed(f.data, f.fin)
        elif isinstance(f, spdy.SynStream):
            self._syn(f)
        elif isinstance(f, spdy.RstStream):
            if (s := self.streams.get(f.stream_id)) is not None:
                s._reset()
        elif isinstance(f, spdy.Ping):
            if f.ping_id % 2:  # the client's (odd): echo it; ours would be even
                self.send(f)
        elif isinstance(f, spdy.GoAway):
            self._new.put_nowait(None)

    def _syn(self, f: spdy.SynStream) -> None:
        if f.stream_id % 2 == 0 or f.stream_id <= self._last_id:
            self.send(spdy.RstStream(f.stream_id, spdy.PROTOCOL_ERROR))
            return
        self._last_id = f.stream_id
        s = Stream(self, f.stream_id, f.headers)
        self.streams[f.stream_id] = s
        self.send(spdy.SynReply(f.stream_id, []))
        if f.flags & spdy.FLAG_UNIDIRECTIONAL:
            s.local_closed = True
        if f.fin:
            s._feed(b"", True)
        self._new.put_nowait(s)

    # -- to the client -----------------------------------------------------------------------
    def send(self, f: spdy.Frame) -> None:
        self.send_raw(self.codec.encode(f))

    def send_raw(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        await self._writable.wait()

    def consumed(self, stream_id: int, n: int) -> None:
        self.send(spdy.WindowUpdate(stream_id, n))
        self.send(spdy.WindowUpdate(0, n))

    async def accept(self) -> Stream | None:
        """The next stream the client opens; None once it went away."""
        return await self._new.get()

    def close(self, status: int = spdy.GOAWAY_OK) -> None:
        if not self.transport.is_closing():
            self.send(spdy.GoAway(self._last_id, status))
            self.transport.close()
