"""What berthd answers before its engine is wired: ``/_ping`` and ``/version`` (static: the
version, the API's range, the kernel), and the API versions and server name that every
response's headers carry.

The daemon listens with only these routes while it imports and wires the engine and recovers
its containers (``Server.ready``); every other request waits for that. Before the event loop
exists, ``api.early`` answers /_ping from a thread with the same bytes: so this module imports
no asyncio (the HTTP server only in ``early_router``).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import berth
from berth.api.response import Response

if TYPE_CHECKING:
    from berth.api.http import Request, Router

API_VERSION = "1.50"
MIN_API_VERSION = "1.24"
SERVER = f"berth/{berth.__version__}"

HEADERS = {"Api-Version": API_VERSION, "Docker-Experimental": "false", "Ostype": "linux",
           "Server": f"{SERVER} (linux)"}


async def ping(req: Request) -> Response:
    return answer(req.method)


def answer(method: str) -> Response:
    # Swarm: unversioned since 1.42, as dockerd sends it. Builder-Version "1": what dockerd 23+
    # answers with BuildKit disabled (features.buildkit=false); berth has the classic builder
    # only, and "2" would tell clients to speak BuildKit's session API to it.
    return Response(200, b"OK" if method == "GET" else b"", content_type="text/plain; charset=utf-8",
                    headers={"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache",
                             "Builder-Version": "1", "Swarm": "inactive"})


_version_body: list[bytes] = []  # built at the first /version: nothing in it changes while berthd runs


def version_body() -> bytes:
    """GET /version's JSON, as ``api.shape.json_response`` encodes it (compact, a newline)."""
    if not _version_body:
        u = os.uname()
        arch = "amd64" if u.machine == "x86_64" else u.machine
        details = {"ApiVersion": API_VERSION, "Arch": arch, "BuildTime": "", "Experimental": "false",
                   "GitCommit": "", "GoVersion": "", "KernelVersion": u.release, "MinAPIVersion": MIN_API_VERSION,
                   "Os": "linux"}
        doc = {"Platform": {"Name": "berth Engine"},
               "Components": [{"Name": "Engine", "Version": berth.__version__, "Details": details}],
               "Version": berth.__version__, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
               "GitCommit": "", "GoVersion": "", "Os": "linux", "Arch": arch, "KernelVersion": u.release,
               "BuildTime": ""}
        _version_body.append(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode() + b"\n")
    return _version_body[0]


async def version(req: Request) -> Response:
    return Response(200, version_body())


def instant(method: str, path: str) -> Response | None:
    """/_ping's and /version's answers without a Request, for Server's answers inside
    data_received (under load a health check must not wait for the loop's turns behind every
    other client) and for ``api.early``'s thread before the loop exists."""
    if path == "/_ping" and method in ("GET", "HEAD"):
        return answer(method)
    if path == "/version" and method == "GET":
        return Response(200, version_body())
    return None


def early_router() -> Router:
    """The routes answered while the engine is not ready yet."""
    from berth.api.http import Router  # asyncio: imported once the early thread hands over
    r = Router()
    r.add("GET", "/_ping", ping)
    r.add("HEAD", "/_ping", ping)
    r.add("GET", "/version", version)
    return r
