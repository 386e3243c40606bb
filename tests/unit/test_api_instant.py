"""/_ping answered inside the protocol's data_received (berth.api.instant), on a real socket:
the same bytes as the usual path, only when the connection waits for its next request, and
pipelined requests around it answered in order."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from berth.api import ping
from berth.api.conns import Limits
from berth.api.http import Request, Response, Router, Server
from berth.api.ping import API_VERSION, HEADERS, MIN_API_VERSION
from tests.unit.httpwire import complete

PING = b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n"
LIST = b"GET /v1.41/containers/json HTTP/1.1\r\nHost: x\r\n\r\n"


def _error(req: Request | None, e: BaseException) -> Response:
    return Response(400, b'{"message":"%s"}\n' % str(e).encode())


class Served:
    """A Server with /_ping early and a slow list route; ``handled`` counts the calls of
    /_ping's async handler (the usual path)."""

    def __init__(self, tmp: Path, instant: bool, limits: Limits | None = None):
        self.handled = 0
        self.sock = str(tmp / ("i.sock" if instant else "u.sock"))
        early = Router()

        async def counted(req: Request) -> Response:
            self.handled += 1
            return await ping.ping(req)
        early.add("GET", "/_ping", counted)
        early.add("HEAD", "/_ping", counted)
        router = Router()

        async def containers(req: Request) -> Response:
            await asyncio.sleep(float(req.query.get("sleep", "0")))
            return Response(200, b"[]\n")
        router.add("GET", "/containers/json", containers)
        self.server = Server(router, HEADERS, _error, (MIN_API_VERSION, API_VERSION), early=early, limits=limits,
                             instant=ping.instant if instant else None)
        self.server.ready.set()


def _exchange(sock: str, *parts: bytes, pause: float = 0.0, answers: int = 1) -> bytes:
    """Send ``parts`` (``pause`` s apart) on one connection; read until ``answers`` responses
    (or EOF)."""
    import time
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(sock)
    for i, p in enumerate(parts):
        if i and pause:
            time.sleep(pause)
        s.sendall(p)
    buf = b""
    while complete(buf) < answers:
        b = s.recv(65536)
        if not b:
            break
        buf += b
    s.close()
    return buf


def _both(tmp: Path, fn, limits: Limits | None = None):  # type: ignore[no-untyped-def]
    """fn(served) run in a thread against the usual server and the instant one, in turn."""
    async def run(served: Served):  # type: ignore[no-untyped-def]
        await served.server.serve_unix(served.sock)
        try:
            return await asyncio.to_thread(fn, served)
        finally:
            await served.server.close()
    usual, fast = Served(tmp, False, limits), Served(tmp, True, limits)
    return asyncio.run(run(usual)), usual, asyncio.run(run(fast)), fast


@pytest.mark.parametrize("req", [
    PING,
    b"HEAD /_ping HTTP/1.1\r\nHost: api.moby.localhost\r\nUser-Agent: Docker-Client/28.2.2 (linux)\r\n\r\n",
    b"GET /v1.41/_ping HTTP/1.1\r\nHost: x\r\n\r\n",
    b"HEAD /v1.24/_ping?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /_ping HTTP/1.0\r\nHost: x\r\n\r\n",
])
def test_the_instant_answer_is_the_usual_answer_byte_for_byte(tmp_path: Path, req: bytes) -> None:
    before, usual, after, fast = _both(tmp_path, lambda s: _exchange(s.sock, req))
    assert before.startswith(b"HTTP/1.1 200 OK\r\n") and b"Api-Version: 1.50\r\n" in before
    assert after == before
    assert (usual.handled, fast.handled) == (1, 0), "the instant path was not taken"


def test_keep_alive_then_close(tmp_path: Path) -> None:
    """A keep-alive ping leaves the connection open for the next request; Connection: close
    closes it after the answer (EOF), as the usual path does."""
    def fn(s: Served) -> tuple[bytes, bytes]:
        c = socket.socket(socket.AF_UNIX)
        c.settimeout(5)
        c.connect(s.sock)
        c.sendall(PING)
        first = c.recv(65536)
        c.sendall(b"HEAD /_ping HTTP/1.1\r\nConnection: close\r\n\r\n")
        rest = b""
        while b := c.recv(65536):  # EOF ends it
            rest += b
        c.close()
        return first, rest
    before, _, after, fast = _both(tmp_path, fn)
    assert after == before and after[0].endswith(b"\r\n\r\nOK") and b"Connection: close" in after[1]
    assert fast.handled == 0


def test_pipelined_requests_around_pings_are_answered_in_order(tmp_path: Path) -> None:
    reqs = PING + LIST + b"HEAD /_ping HTTP/1.1\r\n\r\n" + PING
    before, _, after, fast = _both(tmp_path, lambda s: _exchange(s.sock, reqs, answers=4))
    assert after == before and complete(after) == 4
    bodies = [part.split(b"\r\n")[0] for part in after.split(b"HTTP/1.1 ")[1:]]
    assert bodies == [b"200 OK"] * 4
    assert after.index(b"[]\n") < after.rindex(b"\r\n\r\nOK")  # the list's answer before the last ping's
    assert fast.handled == 2  # the ones after the list went the usual way


def test_a_ping_behind_a_request_in_flight_waits_for_its_answer(tmp_path: Path) -> None:
    """The list is still being answered when the ping arrives: its answer must come first."""
    slow = b"GET /v1.41/containers/json?sleep=0.3 HTTP/1.1\r\nHost: x\r\n\r\n"
    _, _, after, fast = _both(tmp_path, lambda s: _exchange(s.sock, slow, PING, pause=0.1, answers=2))
    assert complete(after) == 2 and after.index(b"[]\n") < after.index(b"\r\n\r\nOK")
    assert fast.handled == 1


@pytest.mark.parametrize("parts", [
    (b"GET /_pi", b"ng HTTP/1.1\r\nHost: x\r\n\r\n"),  # a head in two pieces
    (b"GET /_ping HTTP/1.1\r\nContent-Length: 2\r\n\r\nxx",),  # a body: drained by the usual path
    (b"GET /_ping HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxx\r\n0\r\n\r\n",),
])
def test_what_is_not_a_whole_bodiless_head_goes_the_usual_way(tmp_path: Path, parts: tuple[bytes, ...]) -> None:
    before, _, after, fast = _both(tmp_path, lambda s: _exchange(s.sock, *parts, PING, pause=0.05, answers=2))
    assert after == before and complete(after) == 2 and after.count(b"\r\n\r\nOK") == 2
    assert fast.handled == 1  # only the last, bodiless ping took the instant path


def test_an_api_version_out_of_range_is_the_usual_400(tmp_path: Path) -> None:
    req = b"GET /v9.99/_ping HTTP/1.1\r\nHost: x\r\n\r\n"
    before, _, after, _ = _both(tmp_path, lambda s: _exchange(s.sock, req))
    assert after == before and after.startswith(b"HTTP/1.1 400 ") and b"client version 9.99 is too new" in after


def test_a_connection_past_the_client_bound_gets_its_429_not_a_ping(tmp_path: Path) -> None:
    def fn(s: Served) -> bytes:
        hold = socket.socket(socket.AF_UNIX)
        hold.connect(s.sock)
        try:
            import time
            time.sleep(0.1)  # admitted first
            return _exchange(s.sock, PING)
        finally:
            hold.close()
    _, _, after, fast = _both(tmp_path, fn, Limits(per_client=1))
    assert after.startswith(b"HTTP/1.1 429 ") and fast.handled == 0


def test_a_peer_that_does_not_read_its_answers_gets_the_usual_backpressure(tmp_path: Path) -> None:
    """5,000 pipelined pings, none of the answers read for a while: past 64 KiB of unsent
    answers the usual path (which waits for the peer) takes the rest; all come back in order."""
    n = 5000

    def fn(s: Served) -> bytes:
        import time
        c = socket.socket(socket.AF_UNIX)
        c.settimeout(10)
        c.connect(s.sock)
        c.sendall(PING * n)
        time.sleep(0.3)
        buf = b""
        while complete(buf) < n:
            buf += c.recv(1 << 20)
        c.close()
        return buf
    before, _, after, fast = _both(tmp_path, fn)
    assert after == before and after.count(b"\r\n\r\nOK") == n
    assert 0 < fast.handled < n  # the instant path answered until the peer's buffers filled
