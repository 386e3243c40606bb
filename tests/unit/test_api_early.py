"""berthd listens before its engine is ready: /_ping answers at once, every other request waits
for ``Server.ready`` (the daemon sets it once the containers are recovered), on a real socket."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from berth.api.http import Request, Response, Router, Server
from berth.api.ping import HEADERS, early_router


def _error(req: Request | None, e: BaseException) -> Response:
    return Response(500, b'{"message":"%s"}' % str(e).encode())


async def _get(sock: str, path: str, method: str = "GET") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_unix_connection(sock)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def _scenario(sock: str) -> list[str]:
    seen: list[str] = []
    router = Router()

    async def containers(req: Request) -> Response:
        seen.append("list")
        return Response(200, b"[]")
    server = Server(Router(), HEADERS, _error, early=early_router())
    await server.serve_unix(sock)
    try:
        waiting = asyncio.ensure_future(_get(sock, "/v1.50/containers/json"))
        assert await _get(sock, "/_ping") == (200, b"OK")
        assert (await _get(sock, "/v1.41/_ping", "HEAD"))[0] == 200
        status, body = await asyncio.wait_for(_get(sock, "/v1.50/version"), 5)  # static: docker-py asks it first
        doc = json.loads(body)
        assert status == 200 and (doc["ApiVersion"], doc["MinAPIVersion"]) == ("1.50", "1.24")
        assert doc["KernelVersion"] == os.uname().release and doc["Components"][0]["Name"] == "Engine"
        await asyncio.sleep(0.05)
        assert not waiting.done(), "a request was served before the engine was ready"
        router.add("GET", "/containers/json", containers)
        server.router = router  # what the daemon wires before it sets ready
        seen.append("ready")
        server.ready.set()
        assert await asyncio.wait_for(waiting, 5) == (200, b"[]")
        assert await _get(sock, "/nope") == (404, b'{"message":"page not found"}\n')
    finally:
        await server.close()
    return seen


def test_ping_answers_before_ready_and_other_requests_wait(tmp_path: Path) -> None:
    assert asyncio.run(_scenario(str(tmp_path / "s.sock"))) == ["ready", "list"]


def test_a_server_without_early_routes_is_ready_at_once() -> None:
    async def check() -> bool:
        return Server(Router(), {}, _error).ready.is_set()
    assert asyncio.run(check())
