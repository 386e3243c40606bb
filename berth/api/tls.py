"""TLS for the API's TCP listeners: asyncio's TLS protocol, taught to survive a half-close.

The docker CLI ends its side of an attach with CloseWrite: "no more input, keep the output
coming". On TLS that is a close_notify alert (Go's tls.Conn.CloseWrite; older clients shut down
the TCP write half instead). Go's TLS server keeps writing after either; asyncio's SSLProtocol
takes both for the end of the connection, closes, and `docker run` prints nothing. Here either
one gives the handler its EOF (as a half-close does on plain TCP) and leaves our write side
open; the connection closes when the handler closes it. Everything else (handshake, timeouts,
flow control) is asyncio's own; the class leans on SSLProtocol's private state of Python 3.11+,
which the TLS integration tests (an attach through the docker CLI) pin.
"""

from __future__ import annotations

import asyncio
import ssl
from asyncio import sslproto
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    _SSLProtocol = Any  # typeshed's SSLProtocol lacks the private state overridden here
else:
    _SSLProtocol = sslproto.SSLProtocol

HANDSHAKE_TIMEOUT = 10.0   # a client that connects and never finishes the handshake
SHUTDOWN_TIMEOUT = 5.0     # waiting for the peer's close_notify after ours


class HalfCloseTLS(_SSLProtocol):
    """SSLProtocol whose peer may half-close the connection and still read our answer."""

    def _start_shutdown(self) -> None:
        # Called by our transport's close(), which marks it closed first, and on the peer's
        # close_notify, when it is still open: that one is the peer's half-close.
        app = self._app_transport
        if app is not None and not app._closed and self._state == sslproto.SSLProtocolState.WRAPPED:
            return
        super()._start_shutdown()

    def eof_received(self) -> bool:
        if self._state == sslproto.SSLProtocolState.WRAPPED and not self._app_reading_paused:
            self._eof_received = True
            self._do_read()           # records that came with the FIN
            self._call_eof_received()  # the handler's reader sees its EOF
            return True               # the socket stays open for our writes
        return bool(super().eof_received())


StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], "asyncio.Future[None] | object"]


def protocol_factory(handler: StreamHandler, ctx: ssl.SSLContext,
                     limit: int = 2 ** 16) -> Callable[[], asyncio.BaseProtocol]:
    """What asyncio.start_server(ssl=ctx) builds per connection, with HalfCloseTLS as its TLS layer."""
    loop = asyncio.get_running_loop()

    def make() -> asyncio.BaseProtocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        app = asyncio.StreamReaderProtocol(reader, handler, loop=loop)  # type: ignore[arg-type]
        return HalfCloseTLS(loop, app, ctx, None, server_side=True, ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
                            ssl_shutdown_timeout=SHUTDOWN_TIMEOUT)
    return make
