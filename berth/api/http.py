"""A small HTTP/1.1 server on asyncio streams, made for the Docker Engine API.

Why not aiohttp: importing aiohttp.web costs ~250 ms on our machines, and berthd must answer
/_ping well under 150 ms after exec. The Engine API needs little: keep-alive, Content-Length
and chunked bodies, chunked streaming responses, and connection hijacking (attach, exec) that
hands the raw socket to the handler. That is what this module does, and nothing more.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Awaitable, Callable
from urllib.parse import parse_qsl, unquote

from berth.api import conns, framing, instant, turns  # conns: what clients may hold (header size and time, connections)
from berth.api.framing import BadRequest as BadRequest, TooLarge as TooLarge  # 400 and 413, raised by handlers
from berth.api.framing import check_version as check_version, version_tuple
from berth.api.response import REASONS, Response as Response, render
from berth.api.response import head as _head

if TYPE_CHECKING:
    from berth.api.early import Held

log = logging.getLogger("berth.api")

@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    api_version: str | None = None
    match: dict[str, str] = field(default_factory=dict)
    query_list: list[tuple[str, str]] = field(default_factory=list)
    _body_left: int = 0
    _chunked: bool = False
    _chunk_left: int = 0
    _eof: bool = False
    hijacked: bool = False
    responded: bool = False
    extra_headers: dict[str, str] = field(default_factory=dict)  # the server's common headers

    async def read(self, limit: int = conns.MAX_BODY) -> bytes:
        """The whole body; past ``limit`` bytes TooLarge (at once when Content-Length says so)."""
        if not self._chunked and self._body_left > limit:
            raise TooLarge("http: request body too large")
        parts: list[bytes] = []
        total = 0
        while chunk := await self.read_chunk():
            total += len(chunk)
            if total > limit:
                raise TooLarge("http: request body too large")
            parts.append(chunk)
        return b"".join(parts)

    async def read_chunk(self, size: int = 256 * 1024) -> bytes:
        """The next piece of the request body; b"" at its end."""
        if self._eof:
            return b""
        if not self._chunked:
            if self._body_left <= 0:
                self._eof = True
                return b""
            data = await self.reader.read(min(size, self._body_left))
            if not data:
                raise BadRequest("unexpected end of request body")
            self._body_left -= len(data)
            return data
        data, self._chunk_left = await framing.read_chunk(self.reader, self._chunk_left, size)
        self._eof = not data
        return data

    def version_at_least(self, v: str) -> bool:
        if self.api_version is None:
            return True
        return version_tuple(self.api_version) >= version_tuple(v)

    def flag(self, name: str, default: bool = False) -> bool:
        v = self.query.get(name)
        if v is None:
            return default
        return v.lower() not in ("", "0", "false", "no")

    def int_arg(self, name: str, default: int | None = None) -> int | None:
        v = self.query.get(name)
        if v is None or v == "":
            return default
        try:
            return int(v)
        except ValueError:
            raise BadRequest(f"invalid value for {name}: {v!r}") from None

    def hijack(self, content_type: str = "application/vnd.docker.raw-stream", common: bool = False) -> None:
        """Answer 101 (or 200 without Upgrade) and give the raw socket to the handler.

        ``common`` adds the server's usual headers (Api-Version, Ostype, ...): dockerd sends them
        on exec start's 101 but not on attach's."""
        upgrade = self.headers.get("upgrade") is not None
        status = 101 if upgrade else 200
        head = [f"HTTP/1.1 {status} {REASONS[status]}", f"Content-Type: {content_type}"]
        if upgrade:
            head += ["Connection: Upgrade", "Upgrade: tcp"]
        if common:
            head += [f"{k}: {v}" for k, v in self.extra_headers.items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        self.hijacked = True
        self.responded = True

    async def head_read(self, timeout: float = 0.25) -> None:
        """After ``hijack``: wait (briefly) until the client has read the 101 head.

        docker-py reads the head through a buffered reader and then reads the raw socket: any
        stream bytes that arrived together with the head stay in that buffer and are lost
        (attach with logs=1, a fast exec). So the first stream bytes go out only once the head
        has left the socket's queue."""
        from berth.linux import fd  # ctypes: not on the path to the first /_ping
        await self.writer.drain()
        sock = self.writer.get_extra_info("socket")
        if sock is None:
            return
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        delay = 0.0005
        try:
            while fd.unread_output(sock.fileno()) > 0 and loop.time() < end:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.01)
        except (OSError, ValueError):  # ValueError: the connection is already closed (fd -1)
            return


class StreamResponse:
    """A chunked response written piece by piece (pull progress, logs, wait)."""

    def __init__(self, req: Request, status: int = 200, content_type: str | None = "application/json",
                 headers: dict[str, str] | None = None):
        self.req = req
        self.status = status
        self.content_type = content_type
        self.headers = headers or {}
        self.started = False

    async def prepare(self) -> None:
        if self.started:
            return
        self.started = True
        self.req.responded = True
        h = dict(self.req.extra_headers)
        h.update(self.headers)
        if self.content_type:
            h["Content-Type"] = self.content_type
        h["Transfer-Encoding"] = "chunked"
        self.req.writer.write(_head(self.status, h))
        await self.req.writer.drain()

    async def write(self, data: bytes) -> None:
        if not self.started:
            await self.prepare()
        if data:
            self.req.writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await self.req.writer.drain()

    async def finish(self) -> None:
        if not self.started:
            await self.prepare()
        self.req.writer.write(b"0\r\n\r\n")
        await self.req.writer.drain()


Handler = Callable[[Request], Awaitable["Response | StreamResponse | None"]]

class Router:
    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        # "{name}" matches one segment; "{name:.*}" anything (image names contain slashes).
        def repl(m: re.Match[str]) -> str:
            name, _, rx = m.group(1).partition(":")
            return f"(?P<{name}>{rx or '[^/]+'})"
        rx = re.compile("^" + re.sub(r"\{([^}]+)\}", repl, pattern) + "$")
        self.routes.append((method, rx, handler))

    def resolve(self, method: str, path: str) -> tuple[Handler | None, dict[str, str], bool]:
        path_found = False
        for m, rx, h in self.routes:
            mt = rx.match(path)
            if mt:
                if m == method or (method == "HEAD" and m == "GET" and False):
                    return h, {k: unquote(v) for k, v in mt.groupdict().items()}, True
                path_found = True
        return None, {}, path_found


class Server:
    """Serves a Router; `on_error` turns an exception into a Response (the one error table).
    ``early`` routes (/_ping) answer at once; the others wait for ``ready`` (wired, recovered).
    What ``instant`` answers is answered inside the protocol's data_received, when it can be."""

    def __init__(self, router: Router, common_headers: dict[str, str],
                 on_error: Callable[[Request | None, BaseException], Response],
                 versions: tuple[str, str] | None = None, early: Router | None = None, limits: conns.Limits | None = None,
                 instant: Callable[[str, str], Response | None] | None = None):
        self.router = router
        self.instant = instant  # (method, path) -> an answer with nothing to await (berth.api.instant)
        self.early = early or Router()
        self.ready = asyncio.Event()  # set once: the daemon's engine is wired and recovered
        if early is None:
            self.ready.set()
        self.admission = conns.Connections(limits or conns.Limits())
        self.turns = turns.Turns(self.admission.limits.starts_per_turn)
        self.versions = versions  # (min, max) API versions a /vX.Y prefix may ask for
        self.common_headers = common_headers
        self.on_error = on_error
        self.servers: list[asyncio.AbstractServer] = []
        self.connections: set[asyncio.Task[None]] = set()

    async def serve_unix(self, path: str) -> None:
        loop = asyncio.get_running_loop()
        self.servers.append(await loop.create_unix_server(self._protocols(), path=path, backlog=512))

    async def serve_tcp(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
        """Listen on host:port; with ``tls`` every connection is TLS (berth.api.tls)."""
        loop = asyncio.get_running_loop()
        if tls is None:
            self.servers.append(await loop.create_server(self._protocols(), host, port, backlog=512))
            return
        from berth.api.tls import protocol_factory
        self.servers.append(await loop.create_server(protocol_factory(self._conn, tls), host, port, backlog=512))

    async def serve_socket(self, sock: socket.socket, tls: ssl.SSLContext | None = None) -> None:
        """Serve a socket that already listens (systemd socket activation); ``tls`` for TCP ones."""
        loop = asyncio.get_running_loop()
        if sock.family == socket.AF_UNIX:
            self.servers.append(await loop.create_unix_server(self._protocols(), sock=sock, backlog=512))
        elif tls is None:
            self.servers.append(await loop.create_server(self._protocols(), sock=sock, backlog=512))
        else:
            from berth.api.tls import protocol_factory
            self.servers.append(await loop.create_server(protocol_factory(self._conn, tls), sock=sock, backlog=512))

    async def adopt(self, held: Held) -> None:
        """Serve a connection ``api.early``'s thread accepted, from where the thread left it."""
        proto = self._protocols()()
        proto.adopted = (held.unsent, held.unread)
        await asyncio.get_running_loop().connect_accepted_socket(lambda: proto, held.sock)

    async def close(self) -> None:
        for s in self.servers:
            s.close()
        for t in list(self.connections):
            t.cancel()

    def _protocols(self) -> Callable[[], instant.Protocol]:
        return instant.factory(self._conn, self._instant)

    def _instant(self, head: bytes) -> tuple[bytes, bool] | None:
        return instant.respond(head, self.instant, self.versions, self._render) if self.instant else None

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    proto: instant.Protocol | None = None) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        conn = self.admission.admit(conns.peer_of(writer), writer)
        if proto is not None:
            proto.conn = conn
        try:
            while True:
                keep = await self._one(reader, writer, conn)
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("connection error")
        finally:
            self.connections.discard(task)
            self.admission.leave(conn)
            try:
                writer.close()
            except Exception:
                pass

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   conn: conns.Conn | None = None) -> bool:
        head = await conns.read_head(reader, writer, conn, self.admission.limits)
        if head is None:
            return False
        parsed = framing.parse_head(head)
        if parsed is None:
            writer.write(_head(400, {"Content-Length": "0", "Connection": "close"}))
            return False
        method, target, proto, headers = parsed
        path, _, qs = target.partition("?")
        qlist = parse_qsl(qs, keep_blank_values=True)
        req = Request(method=method, path=path, query=dict(qlist), headers=headers,
                      reader=reader, writer=writer, query_list=qlist)
        req.extra_headers = self.common_headers
        te = headers.get("transfer-encoding", "").lower()
        if "chunked" in te:
            req._chunked = True
        else:
            length = framing.content_length(headers.get("content-length", "0") or "0")
            if length is None:  # Go's "bad Content-Length": what follows cannot be framed
                writer.write(_head(400, {"Content-Length": "0", "Connection": "close"}))
                return False
            req._body_left = length
        keep_alive = proto == "HTTP/1.1" and headers.get("connection", "").lower() != "close"

        m = framing.VERSION_PREFIX.match(path)
        if m:
            req.api_version, req.path = m.group(1), m.group(2)
        try:
            if req.api_version is not None and self.versions is not None:
                check_version(req.api_version, *self.versions)
            handler, match, path_found = self.early.resolve(method, req.path)
            if handler is None:
                await self.ready.wait()  # at once when set
                await self.turns.begin()  # a burst of requests spreads over the loop's turns
                handler, match, path_found = self.router.resolve(method, req.path)
            if handler is None:
                if method == "HEAD":
                    handler, match, _ = self.router.resolve("GET", req.path)
                if handler is None:
                    resp: Response | StreamResponse | None = Response(
                        405 if path_found else 404,
                        b'{"message":"page not found"}\n' if not path_found else
                        b'{"message":"method not allowed"}\n')
                    handler = None
            if handler is not None:
                req.match = match
                resp = await handler(req)
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # the one error table decides
            if req.hijacked:
                raise
            if req.responded:
                log.warning("error after response started: %s", e)
                return False
            resp = self.on_error(req, e)
            if isinstance(e, TooLarge):  # as Go's MaxBytesReader: the rest is not read
                req._eof, keep_alive = True, False
        if req.hijacked:
            return False
        if isinstance(resp, StreamResponse):
            if not resp.started:
                await resp.prepare()
            return keep_alive
        if resp is None:
            return keep_alive
        # Drain an unread body so the next request on this connection parses.
        if not req._eof and (req._body_left or req._chunked):
            try:
                while await req.read_chunk():
                    pass
            except BadRequest:
                keep_alive = False
        writer.write(self._render(resp, method, keep_alive))
        await writer.drain()
        if resp.status == 413:  # its body was left unread
            await conns.close_write_and_wait(reader, writer)
        return keep_alive

    def _render(self, resp: Response, method: str, keep_alive: bool) -> bytes:
        return render(self.common_headers, resp, method, keep_alive)
