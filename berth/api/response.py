"""A whole HTTP response and its bytes: the one rendering both servers use, the event loop's
(``api.http``) and the thread that answers ``/_ping`` before the loop exists (``api.early``).

No asyncio here: ``api.early`` runs before it is imported; and no dataclasses (it imports
inspect, ast and dis: ≈7 ms before the first /_ping).
"""

from __future__ import annotations

REASONS = {
    101: "UPGRADED", 200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
    413: "Payload Too Large", 500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable"}


class Response:
    __slots__ = ("status", "body", "content_type", "headers")

    def __init__(self, status: int = 200, body: bytes = b"", content_type: str | None = "application/json",
                 headers: dict[str, str] | None = None):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers: dict[str, str] = {} if headers is None else headers

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.body[:64]!r}, {self.content_type!r})"


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
