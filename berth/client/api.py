"""``Client``: the Docker Engine API as the CLI uses it.

Version negotiation follows the docker CLI: an unversioned ``HEAD /_ping`` (``GET`` if the
daemon answers 405), then every path is prefixed with ``/v{min(MAX_API_VERSION, Api-Version)}``;
no ``Api-Version`` header means 1.24, a failed ping means the client's own maximum.

Typical use::

    client = Client("unix:///run/berth/berth.sock")
    containers = client.get_json("/containers/json", {"all": True})
"""

from __future__ import annotations

import json
import socket

from berth.client import _http

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from berth.client.host import TLSOptions
    from typing import Any

MAX_API_VERSION = "1.50"
FALLBACK_API_VERSION = "1.24"


class APIError(Exception):
    """The daemon answered with an error status; ``message`` is its ``{"message"}`` text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404


class ConnectFailed(Exception):
    """A request failed before the daemon answered it (TLS): the docker CLI's
    ``error during connect: Get "https://HOST:PORT/v1.50/...": REASON``."""

    def __init__(self, method: str, url: str, reason: str) -> None:
        super().__init__(f'error during connect: {method.capitalize()} "{url}": {reason}')


class DaemonUnavailable(Exception):
    """The daemon socket could not be reached."""

    def __init__(self, host: str) -> None:
        super().__init__(
            f"Cannot connect to the berth daemon at {host}. Is the berth daemon running?")
        self.host = host


def _version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (0,)


def min_version(a: str, b: str) -> str:
    return a if _version_tuple(a) <= _version_tuple(b) else b


def _error_message(body: bytes, status: int) -> str:
    text = body.decode("utf-8", "replace")
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("message"), str):
            return doc["message"]
    text = text.strip()
    return text or f"unexpected status {status}"


class Client:
    """A connection pool to one daemon plus the negotiated API version."""

    def __init__(self, host: str, timeout: float | None = None, tls: TLSOptions | None = None) -> None:
        self.host = host
        self.tls = tls
        self._pool = _http.Pool(host, timeout, tls)
        self._version: str | None = None
        self.ping_headers: dict[str, str] = {}

    # -- negotiation ---------------------------------------------------------------------------

    @property
    def api_version(self) -> str:
        if self._version is None:
            self._version = self._negotiate()
        return self._version

    def _negotiate(self) -> str:
        try:
            resp = self._raw("HEAD", "/_ping")
            if resp.status == 405:
                resp = self._raw("GET", "/_ping")
                resp.read()
        except DaemonUnavailable:
            raise
        except (OSError, ConnectFailed):   # the request itself then says why (as the docker CLI)
            return MAX_API_VERSION
        self.ping_headers = resp.headers
        server = resp.headers.get("api-version")
        if not server:
            return FALLBACK_API_VERSION
        return min_version(MAX_API_VERSION, server)

    def _raw(self, method: str, target: str, headers: dict[str, str] | None = None,
             body: bytes | Iterable[bytes] | None = None, fresh: bool = False) -> _http.Response:
        try:
            return self._pool.request(method, target, headers, body, fresh=fresh)
        except _http.ConnectError as exc:
            raise DaemonUnavailable(self.host) from exc
        except _http.TLSFailure as exc:
            raise ConnectFailed(method, self._https_url(target), exc.reason) from None

    def _https_url(self, target: str) -> str:
        from berth.client.host import parse_host

        _, addr = parse_host(self.host, 2376)
        name, port = addr if isinstance(addr, tuple) else (str(addr), 2376)
        return f"https://{f'[{name}]' if ':' in name else name}:{port}{target}"

    # -- requests ------------------------------------------------------------------------------

    def url(self, path: str, params: dict[str, object] | None = None) -> str:
        target = f"/v{self.api_version}{path}"
        query = _http.encode_query(params) if params else ""
        return f"{target}?{query}" if query else target

    def request(self, method: str, path: str, params: dict[str, object] | None = None, *,
                body: bytes | Iterable[bytes] | None = None, json_body: Any = None,
                headers: dict[str, str] | None = None, fresh: bool = False) -> _http.Response:
        """Send a request; raise ``APIError`` for a status >= 400 (the body is consumed)."""
        headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode()
            headers.setdefault("Content-Type", "application/json")
        target = self.url(path, params)
        resp = self._raw(method, target, headers, body, fresh)
        if resp.status >= 400:
            raise APIError(resp.status, _error_message(resp.read(), resp.status))
        return resp

    def get_json(self, path: str, params: dict[str, object] | None = None) -> Any:
        return self.json("GET", path, params)

    def json(self, method: str, path: str, params: dict[str, object] | None = None,
             json_body: Any = None) -> Any:
        data = self.request(method, path, params, json_body=json_body).read()
        return json.loads(data) if data.strip() else None

    def call(self, method: str, path: str, params: dict[str, object] | None = None) -> None:
        """A request whose body (if any) is ignored."""
        self.request(method, path, params).read()

    def hijack(self, path: str, params: dict[str, object] | None = None,
               body: bytes | None = None, content_type: str = "text/plain") -> "Hijacked":
        """POST with ``Upgrade: tcp`` and return the raw stream after ``101`` (or 200)."""
        headers = {"Connection": "Upgrade", "Content-Type": content_type, "Upgrade": "tcp"}
        resp = self.request("POST", path, params, body=body or b"", headers=headers, fresh=True)
        return Hijacked(resp.conn, resp.status)

    def close(self) -> None:
        self._pool.close()


class Hijacked:
    """The raw bidirectional byte stream of an upgraded attach / exec-start connection."""

    def __init__(self, conn: _http.Connection, status: int) -> None:
        self._conn = conn
        self.status = status
        self.sock = conn.sock

    def recv(self, limit: int = 65536) -> bytes:
        return self._conn.read_some(limit)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        if self._conn.tls:
            self._tls_close_write()
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _tls_close_write(self) -> None:
        """Send close_notify and keep reading (Go's tls.Conn.CloseWrite): OpenSSL's first
        SSL_shutdown sends it; the wait for the daemon's own is cut short by non-blocking mode."""
        import ssl

        timeout = self.sock.gettimeout()
        self.sock.setblocking(False)
        try:
            self.sock.unwrap()  # type: ignore[attr-defined]
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except OSError:
            pass
        finally:
            self.sock.settimeout(timeout)

    def close(self) -> None:
        self._conn.close()
