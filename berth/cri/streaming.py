"""The CRI streaming server: the URLs that Exec, Attach and PortForward answer with.

The kubelet does not stream through gRPC: Exec, Attach and PortForward return a URL on this
server (loopback, like containerd's default), where the kubelet's proxy (or any client) opens
a WebSocket or a SPDY/3.1 connection. Each URL holds a single-use token for the cached request, valid for a minute, as
in the kubelet's own streaming package (k8s.io/kubelet/pkg/cri/streaming):

    GET /exec/<token>         the channel protocol (channel.k8s.io, v4 and v5): stdin 0,
    GET /attach/<token>       stdout 1, stderr 2, error 3 (a metav1.Status), resize 4
    GET /portforward/<token>  a data and an error channel per port (v4.channel.k8s.io)

The WebSocket variants (aiohttp does the framing: stream_channels.py, stream_portforward.py)
and the SPDY/3.1 ones (what a kubelet's proxy sends by default: stream_spdy.py) are served on
the same URLs, by the request's ``Upgrade``; anything else is answered 400.

    server = Streaming(ws_handlers, spdy_handlers); await server.start("127.0.0.1", 0)
    url = server.url("exec", exec_request)
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from berth.errors import InvalidArgument

TTL = 60.0  # seconds a URL stays valid (the kubelet's default cache TTL)
MAX_TOKENS = 1000  # in flight at once (the kubelet's streaming cache holds as many)

Handler = Callable[[web.Request, Any], Awaitable[web.StreamResponse]]


@dataclass
class Tokens:
    """Single-use tokens for cached requests, each valid for ``TTL`` seconds."""

    ttl: float = TTL
    entries: dict[str, tuple[str, Any, float]] = field(default_factory=dict)

    def put(self, kind: str, request: Any) -> str:
        now = time.monotonic()
        for tok in [t for t, (_, _, exp) in self.entries.items() if exp < now]:
            del self.entries[tok]
        if len(self.entries) >= MAX_TOKENS:
            raise InvalidArgument(f"too many streaming requests in flight (at most {MAX_TOKENS})")
        tok = secrets.token_urlsafe(12)
        self.entries[tok] = (kind, request, now + self.ttl)
        return tok

    def take(self, kind: str, tok: str) -> Any | None:
        """The request cached under ``tok`` for ``kind`` (once), or None."""
        entry = self.entries.get(tok)
        if entry is None or entry[0] != kind:
            return None
        del self.entries[tok]
        return entry[1] if entry[2] >= time.monotonic() else None


class Streaming:
    def __init__(self, handlers: dict[str, Handler], spdy_handlers: dict[str, Handler] | None = None):
        self.handlers = handlers
        self.spdy_handlers = spdy_handlers or {}
        self.tokens = Tokens()
        self.base = ""
        self._runner: web.AppRunner | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application()
        app.router.add_get("/{kind}/{token}", self._serve)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        await web.SockSite(self._runner, sock).start()
        bound = sock.getsockname()[1]
        self.base = f"http://[{host}]:{bound}" if ":" in host else f"http://{host}:{bound}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, kind: str, request: Any) -> str:
        return f"{self.base}/{kind}/{self.tokens.put(kind, request)}"

    async def _serve(self, req: web.Request) -> web.StreamResponse:
        kind = req.match_info["kind"]
        handler = self.handlers.get(kind)
        cached = self.tokens.take(kind, req.match_info["token"]) if handler else None
        if handler is None or cached is None:
            return web.Response(status=404, text="unknown or expired streaming token\n")
        upgrade = req.headers.get("Upgrade", "").lower()
        if upgrade == "spdy/3.1" and kind in self.spdy_handlers:
            return await self.spdy_handlers[kind](req, cached)
        if upgrade != "websocket":
            return web.Response(status=400, text="upgrade to websocket or SPDY/3.1 required\n")
        return await handler(req, cached)
