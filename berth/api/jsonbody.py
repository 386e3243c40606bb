"""dockerd's CheckForJSON: endpoints that read a JSON body refuse another Content-Type.

A request with no Content-Type and no body passes; anything else must be ``application/json``
(parameters allowed), or it gets 400 ``Content-Type specified (text/plain) must be
'application/json'``. ``guard`` wraps the handlers of the endpoints dockerd checks.
"""

from __future__ import annotations

from berth.api.http import Handler, Request, Response, Router, StreamResponse
from berth.errors import InvalidArgument

# The endpoints whose dockerd handlers call CheckForJSON (or ReadJSON, which does).
JSON_ENDPOINTS = (
    ("POST", "/containers/create"),
    ("POST", "/containers/{id}/update"),
    ("POST", "/containers/{id}/exec"),
    ("POST", "/commit"),
    ("POST", "/networks/create"),
    ("POST", "/networks/{id}/connect"),
    ("POST", "/networks/{id}/disconnect"),
    ("POST", "/volumes/create"),
)


def check(req: Request) -> None:
    """Raises InvalidArgument in dockerd's words."""
    ct = req.headers.get("content-type", "")
    if not ct:
        chunked = "chunked" in req.headers.get("transfer-encoding", "").lower()
        if not chunked and req.headers.get("content-length", "0").strip() in ("", "0"):
            return
    if ct.split(";", 1)[0].strip().lower() != "application/json":
        raise InvalidArgument(f"Content-Type specified ({ct}) must be 'application/json'")


def _checked(handler: Handler) -> Handler:
    async def run(req: Request) -> Response | StreamResponse | None:
        check(req)
        return await handler(req)
    return run


async def _pattern_only(req: Request) -> None:
    return None


def guard(router: Router) -> None:
    """Wrap the already-added handlers of JSON_ENDPOINTS."""
    probe = Router()
    for method, pattern in JSON_ENDPOINTS:
        probe.add(method, pattern, _pattern_only)  # only to get the compiled pattern
    wanted = {(m, rx.pattern) for m, rx, _ in probe.routes}
    router.routes = [(m, rx, _checked(h) if (m, rx.pattern) in wanted else h) for m, rx, h in router.routes]
