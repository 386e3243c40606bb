"""A SPDY/3.1 connection taken over from the streaming server's HTTP connection after
``101 Switching Protocols``: its streams, as the kubelet's streaming server sees them.

The client opens every stream (SYN_STREAM with a ``streamtype`` header, as client-go's
remotecommand and portforward do); the session answers each with SYN_REPLY and hands it to
whoever awaits ``accept()``. A stream reads what the client sends until its FIN (or an
RST_STREAM), and writes DATA frames, its FIN at ``close()``. PINGs are answered; a received
DATA frame is given back to the client's send windows (stream and connection) with
WINDOW_UPDATE once read. ``close()`` sends GOAWAY and hangs up.

Flow control of what berth sends (SPDY/3.1 section 2.6.8): each stream's window starts at the
client's SETTINGS_INITIAL_WINDOW_SIZE (64 KiB unless it says), the connection's at 64 KiB; each
DATA frame spends both, the client's WINDOW_UPDATEs give them back, and a writer waits while
either is spent, so a slow reader holds berth's sends at the window instead of in memory. The
windows are enforced once the client shows it does flow control (a SETTINGS with an initial
window, or a WINDOW_UPDATE): client-go's spdystream does neither, grants nothing and expects
its streams unthrottled, as containerd's and the kubelet's servers send them.
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
        self.send_window = session.initial_window

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
        """Send ``data`` in DATA frames, each within the stream's and the connection's send
        windows (waiting for the client's WINDOW_UPDATEs when it does flow control)."""
        view = memoryview(data)
        while view and not self.local_closed:
            n = await self.session.window(self, min(len(view), CHUNK))
            if n == 0:
                return  # reset, or the connection went
            self.send_window -= n
            self.session.send_window -= n
            self.session.send_raw(spdy.data_frame(self.id, bytes(view[:n])))
            view = view[n:]
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
        self.flow = False               # the client does flow control: its windows hold our sends
        self.initial_window = spdy.DEFAULT_WINDOW
        self.send_window = spdy.DEFAULT_WINDOW   # the connection's
        self._window_opened = asyncio.Event()
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
        self._window_opened.set()
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
        elif isinstance(f, spdy.WindowUpdate):
            self._window_update(f)
        elif isinstance(f, spdy.Settings):
            self._settings(f)

    def _window_update(self, f: spdy.WindowUpdate) -> None:
        self.flow = True
        if f.stream_id == 0:
            self.send_window += f.delta
        elif (s := self.streams.get(f.stream_id)) is not None:
            s.send_window += f.delta
        self._window_opened.set()

    def _settings(self, f: spdy.Settings) -> None:
        for _, key, value in f.entries:
            if key == spdy.SETTINGS_INITIAL_WINDOW_SIZE:
                # the draft: every stream's window moves by the difference
                self.flow = True
                for s in self.streams.values():
                    s.send_window += value - self.initial_window
                self.initial_window = value
                self._window_opened.set()

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

    async def window(self, s: Stream, want: int) -> int:
        """How much of ``want`` bytes ``s`` may send now: at least 1 once the windows allow
        (waits while they are spent), 0 when the stream or the connection is gone."""
        while True:
            if s.local_closed or self.transport.is_closing():
                return 0
            if not self.flow:
                return want
            room = min(want, s.send_window, self.send_window)
            if room > 0:
                return room
            self._window_opened.clear()
            await self._window_opened.wait()

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
