"""/_ping answered from a thread before the event loop exists (berth.api.early), on a real
socket, then the socket and the thread's connections handed to the loop's server: the same
bytes as the loop's answers, no request lost or answered twice, answers in request order."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from berth.api import early, ping
from berth.api.http import Request, Response, Router, Server
from berth.api.ping import API_VERSION, HEADERS, MIN_API_VERSION
from berth.daemon.prelisten import _answer
from tests.unit.httpwire import complete

PING = b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n"
LIST = b"GET /v1.41/containers/json HTTP/1.1\r\nHost: x\r\n\r\n"


def _error(req: Request | None, e: BaseException) -> Response:
    return Response(400, b'{"message":"%s"}\n' % str(e).encode())


def _server() -> Server:
    router = Router()

    async def containers(req: Request) -> Response:
        return Response(200, b"[]\n")
    router.add("GET", "/containers/json", containers)
    server = Server(router, HEADERS, _error, (MIN_API_VERSION, API_VERSION), early=ping.early_router(),
                    instant=ping.instant)
    server.ready.set()
    return server


def _listener(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.listen(64)
    s.setblocking(False)
    return s


def _connect(path: Path) -> socket.socket:
    c = socket.socket(socket.AF_UNIX)
    c.settimeout(5)
    c.connect(str(path))
    return c


def _read(c: socket.socket, answers: int) -> bytes:
    buf = b""
    while complete(buf) < answers:
        b = c.recv(1 << 20)
        if not b:
            break
        buf += b
    return buf


def _then_loop(listener: socket.socket, responder: early.Responder, client: Callable[[], object]) -> object:
    """Hand over to a loop's server (as berthd's serve does), then run ``client`` in a thread."""
    async def run() -> object:
        server = _server()
        held = responder.handover()
        await server.serve_socket(listener)
        for h in held:
            await server.adopt(h)
        try:
            return await asyncio.to_thread(client)
        finally:
            await server.close()
    return asyncio.run(run())


def _usual(path: Path, req: bytes) -> bytes:
    """What the loop's server answers ``req`` with (its usual path: no instant answers)."""
    async def run() -> bytes:
        server = _server()
        server.instant = None
        await server.serve_unix(str(path))
        try:
            def ask() -> bytes:
                c = _connect(path)
                c.sendall(req)
                out = _read(c, 1)
                c.close()
                return out
            return await asyncio.to_thread(ask)
        finally:
            await server.close()
    return asyncio.run(run())


@pytest.mark.parametrize("req", [
    PING,
    b"HEAD /_ping HTTP/1.1\r\nHost: api.moby.localhost\r\nUser-Agent: Docker-Client/28.2.2 (linux)\r\n\r\n",
    b"GET /v1.41/_ping HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /_ping HTTP/1.0\r\nHost: x\r\n\r\n",
    b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1.50/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
])
def test_the_threads_answer_is_the_loops_byte_for_byte(tmp_path: Path, req: bytes) -> None:
    listener = _listener(tmp_path / "e.sock")
    responder = early.Responder([listener], _answer)
    responder.start()
    try:
        c = _connect(tmp_path / "e.sock")
        c.sendall(req)
        got = _read(c, 1)
        c.close()
    finally:
        responder.handover()
        listener.close()
    assert responder.answered == 1
    assert got == _usual(tmp_path / "u.sock", req)


def test_pipelined_requests_are_answered_once_each_in_order(tmp_path: Path) -> None:
    """ping, list, ping on one connection: the thread answers the first ping only; the loop's
    server reads the list and the last ping from the bytes the thread had read."""
    path = tmp_path / "e.sock"
    listener = _listener(path)
    responder = early.Responder([listener], _answer)
    responder.start()
    c = _connect(path)
    c.sendall(PING + LIST + PING)
    first = c.recv(65536)
    time.sleep(0.05)  # the list reaches the thread, which leaves it to the loop
    assert complete(first) == 1 and first.endswith(b"\r\n\r\nOK") and responder.answered == 1

    def client() -> bytes:
        rest = _read(c, 2)
        c.settimeout(0.2)
        try:
            return rest + c.recv(65536)  # nothing answered twice: nothing more comes
        except TimeoutError:
            return rest
    rest = _then_loop(listener, responder, client)
    assert isinstance(rest, bytes) and complete(rest) == 2 and rest.count(b"HTTP/1.1 ") == 2
    assert rest.index(b"\r\n\r\n[]\n") < rest.index(b"\r\n\r\nOK")
    c.close()
    listener.close()


def test_connections_at_the_handover_are_served_by_the_loop(tmp_path: Path) -> None:
    """An idle keep-alive connection the thread answered, a head cut in two around the
    handover, and a connection still in the listening socket's backlog."""
    path = tmp_path / "e.sock"
    listener = _listener(path)
    responder = early.Responder([listener], _answer)
    responder.start()
    idle, cut = _connect(path), _connect(path)
    idle.sendall(PING)
    assert _read(idle, 1).endswith(b"OK")
    cut.sendall(b"GET /v1.41/contai")
    time.sleep(0.05)
    responder_stopped = threading.Event()
    backlog: list[socket.socket] = []

    def client() -> tuple[bytes, bytes, bytes]:
        idle.sendall(LIST)
        cut.sendall(b"ners/json HTTP/1.1\r\nHost: x\r\n\r\n")
        return _read(idle, 1), _read(cut, 1), _read(backlog[0], 1)

    real_handover = responder.handover

    def handover() -> list[early.Held]:
        held = real_handover()
        backlog.append(_connect(path))  # after the thread stopped, before the loop listens
        responder_stopped.set()
        return held
    responder.handover = handover  # type: ignore[method-assign]
    backlog_req = threading.Thread(target=lambda: responder_stopped.wait(5) and backlog[0].sendall(PING))
    backlog_req.start()
    got = _then_loop(listener, responder, client)
    backlog_req.join()
    assert isinstance(got, tuple)
    assert [g.endswith(body) for g, body in zip(got, (b"[]\n", b"[]\n", b"OK"))] == [True, True, True]
    assert responder.answered == 1
    for s in (idle, cut, *backlog, listener):
        s.close()


def test_a_peer_that_does_not_read_gets_every_answer_in_order(tmp_path: Path) -> None:
    """2,000 pipelined pings, none read until after the handover: what the thread could not
    send goes out first from the loop, then the loop's own answers."""
    n = 2000
    path = tmp_path / "e.sock"
    listener = _listener(path)
    responder = early.Responder([listener], _answer)
    responder.start()
    c = _connect(path)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.sendall(PING * n)
    time.sleep(0.2)
    got = _then_loop(listener, responder, lambda: _read(c, n))
    assert isinstance(got, bytes) and complete(got) == n and got.count(b"\r\n\r\nOK") == n
    assert 0 < responder.answered < n
    c.close()
    listener.close()


def test_a_request_the_thread_cannot_answer_waits_for_the_loop(tmp_path: Path) -> None:
    """A list (and a ping out of the API's range) reaches the thread: it answers neither."""
    path = tmp_path / "e.sock"
    listener = _listener(path)
    responder = early.Responder([listener], _answer)
    responder.start()
    c = _connect(path)
    c.sendall(b"GET /v9.99/_ping HTTP/1.1\r\nHost: x\r\n\r\n")
    c.settimeout(0.2)
    with pytest.raises(TimeoutError):
        c.recv(65536)
    c.settimeout(5)
    got = _then_loop(listener, responder, lambda: _read(c, 1))
    assert isinstance(got, bytes) and got.startswith(b"HTTP/1.1 400 ") and b"9.99" in got
    assert responder.answered == 0
    c.close()
    listener.close()
