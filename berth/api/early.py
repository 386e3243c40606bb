"""``/_ping`` answered before the event loop exists: a thread on the listening sockets, from
the moment they are bound until the asyncio server takes them over (``Responder.handover``).

berthd binds its Unix sockets right after the data-root lock, then imports asyncio and its HTTP
server (≈40 ms of CPU, more than Python's own start). Meanwhile this thread accepts
connections and answers every whole ``GET``/``HEAD /_ping`` head (``respond``: the bytes the
loop's server writes, ``api.response.render``). The first head it cannot answer (any other
request, a body, a bad API version, a head past MAX_HEAD) ends its work on that connection:
the connection, with what was read of it and not answered, goes to the loop's server, which
reads it as if it had read those bytes itself. So no request is lost or answered twice, and the
answers on a connection keep the order of its requests. At the handover the thread stops; the
connections it had not accepted wait in the listening sockets' backlog for the loop.

No asyncio here (``api.framing`` and ``api.response`` import none), nor dataclasses.
"""

from __future__ import annotations

import os
import selectors
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

from berth.api import framing

MAX_HEAD = 8192  # a /_ping head is a request line and a few headers
MAX_CONNS = 64   # held by the thread; more wait in the backlog for the loop's server

R = TypeVar("R")  # the server's Response

# A request head (up to its blank line) -> (the whole response, keep the connection open), or
# None when the request takes the usual path.
Answer = Callable[[bytes], "tuple[bytes, bool] | None"]


def respond(head: bytes, instant: Callable[[str, str], R | None], versions: tuple[str, str] | None,
            render: Callable[[R, str, bool], bytes]) -> tuple[bytes, bool] | None:
    """The whole answer to a request ``head`` that ``instant`` answers (no body, an API version
    in ``versions``), and whether the connection stays open; None: the usual path."""
    try:
        method, target, proto = head[:head.index(b"\r\n")].decode("latin-1").split(" ", 2)
    except ValueError:
        return None
    path = target.partition("?")[0]
    m = framing.VERSION_PREFIX.match(path)
    if m:
        try:
            if versions is not None:
                framing.check_version(m.group(1), *versions)
        except framing.BadRequest:
            return None
        path = m.group(2)
    resp = instant(method, path)
    parsed = framing.parse_head(head) if resp is not None else None
    if resp is None or parsed is None:
        return None
    headers = parsed[3]
    if "transfer-encoding" in headers or headers.get("content-length", "0") not in ("", "0"):
        return None
    keep_alive = proto == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    return render(resp, method, keep_alive), keep_alive


class Held:
    """A connection the thread accepted and did not close: what it read and did not answer
    (``unread``), and what it could not send yet (``unsent``, ahead of any later answer)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.unread = b""
        self.unsent = b""
        self.done = False  # the thread answers nothing more on it


class Responder:
    """Answers /_ping on ``listeners`` (listening, non-blocking) in a thread until ``handover``."""

    def __init__(self, listeners: list[socket.socket], answer: Answer):
        self.listeners = listeners
        self.answer = answer
        self.held: dict[socket.socket, Held] = {}
        self.answered = 0
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._sel = selectors.DefaultSelector()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="berth-early-ping", daemon=True)

    def start(self) -> None:
        for s in self.listeners:
            self._sel.register(s, selectors.EVENT_READ, "listen")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread.start()

    def handover(self) -> list[Held]:
        """Stop the thread; the connections it holds open, for the loop's server to adopt (the
        listening sockets are untouched: their backlog is the loop's)."""
        self._stop = True
        os.write(self._wake_w, b"x")
        self._thread.join()
        self._sel.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        return list(self.held.values())

    def _run(self) -> None:
        while not self._stop:
            for key, _ in self._sel.select():
                if self._stop:
                    return
                if key.data == "listen":
                    self._accept(key.fileobj)  # type: ignore[arg-type]
                elif key.data != "wake":
                    self._read(key.data)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            if len(self.held) >= MAX_CONNS:
                self._sel.unregister(listener)  # the rest wait in its backlog for the loop
                return
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # out of descriptors, a reset before accept: the loop's server retries
                return
            sock.setblocking(False)
            held = self.held[sock] = Held(sock)
            self._sel.register(sock, selectors.EVENT_READ, held)

    def _read(self, held: Held) -> None:
        try:
            data = held.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the peer closed
            if held.unread:
                self._release(held)  # a partial request: the loop's server reads it to its EOF
            else:
                self._sel.unregister(held.sock)
                del self.held[held.sock]
                held.sock.close()
            return
        held.unread += data
        self._answer(held)

    def _answer(self, held: Held) -> None:
        """Answer the whole pings at the start of ``unread``; hand the rest over."""
        while held.unread:
            end = held.unread.find(b"\r\n\r\n", 0, MAX_HEAD)
            if end < 0:
                if len(held.unread) >= MAX_HEAD:
                    self._release(held)
                return
            got = self.answer(held.unread[:end + 4])
            if got is None:
                self._release(held)
                return
            response, keep = got
            held.unread = held.unread[end + 4:]
            self.answered += 1
            if not self._send(held, response):
                self._release(held)  # the loop's server writes the rest first
                return
            if not keep:
                self._close(held)
                return

    def _send(self, held: Held, data: bytes) -> bool:
        """Send all of ``data``; False when the socket took only part (the rest is ``unsent``)."""
        try:
            n = held.sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            n = len(data)  # the peer is gone: the loop's server sees it too
        held.unsent = data[n:]
        return not held.unsent

    def _close(self, held: Held) -> None:
        self._sel.unregister(held.sock)
        del self.held[held.sock]
        held.sock.close()

    def _release(self, held: Held) -> None:
        """Nothing more on this connection is the thread's: the loop's server takes it as it is."""
        self._sel.unregister(held.sock)
        held.done = True
