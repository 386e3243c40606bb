"""A whole HTTP response and its bytes: the one rendering both servers use, the event loop's
(``api.http``) and the thread that answers ``/_ping`` before the loop exists (``api.early``).

No asyncio here: ``api.early`` runs before it is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

REASONS = {
    101: "UPGRADED", 200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
    413: "Payload Too Large", 500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable"}


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def render(common: dict[str, str], resp: Response, method: str, keep_alive: bool) -> bytes:
    """A whole response's bytes: the server's common headers, then the response's own."""
    h = dict(common)
    h.update(resp.headers)
    if resp.content_type and resp.status not in (204, 304):
        h["Content-Type"] = resp.content_type
    if resp.status not in (204, 304):
        h["Content-Length"] = str(len(resp.body))
    if not keep_alive:
        h["Connection"] = "close"
    return head(resp.status, h) + (resp.body if method != "HEAD" else b"")
