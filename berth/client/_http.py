"""A minimal HTTP/1.1 client over a Unix or TCP socket.

Why not ``http.client``: it pulls in ``email`` and friends, which costs more start-up time than
the whole of ``berth ps``. The daemon is a known peer speaking plain HTTP/1.1, so this module only
needs: one request per connection at a time, keep-alive, Content-Length / chunked / until-close
bodies, chunked request bodies (import), and connection hijacking (attach: ``101 UPGRADED``, then
the socket is a raw byte pipe).
"""

from __future__ import annotations

import socket

from berth.client.host import TLSOptions, parse_host

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from collections.abc import Iterable, Iterator

USER_AGENT = "Berth-Client/0.1.0 (linux)"
HOST_HEADER = "api.moby.localhost"
_READ_SIZE = 65536


class ConnectError(OSError):
    """The daemon socket could not be reached."""


class TLSFailure(Exception):
    """The TLS handshake (or the daemon's verdict on our certificate) failed; ``reason`` is
    in the words of Go's crypto/tls, which the docker CLI prints."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TLSSetupError(Exception):
    """A TLS file could not be read (the docker CLI fails at start, before any request)."""


class Connection:
    """One socket to the daemon, with a read buffer; TLS over TCP when ``tls`` is given."""

    def __init__(self, host: str, timeout: float | None = None, tls: TLSOptions | None = None) -> None:
        kind, addr = parse_host(host, 2376 if tls is not None else 2375)
        family = socket.AF_UNIX if kind == "unix" else socket.AF_INET
        if kind == "tcp" and ":" in addr[0]:  # type: ignore[index]
            family = socket.AF_INET6
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(addr)
        except OSError as exc:
            sock.close()
            raise ConnectError(exc.errno, str(exc)) from exc
        self.tls = tls is not None and kind == "tcp"
        if tls is not None and kind == "tcp":
            sock = _wrap(sock, tls, str(addr[0]))  # type: ignore[index]
        self.sock = sock
        self.buf = bytearray()
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()

    # -- writing -----------------------------------------------------------------------------

    def send_request(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes | Iterable[bytes] | None,
    ) -> None:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {HOST_HEADER}", f"User-Agent: {USER_AGENT}"]
        if body is None or isinstance(body, (bytes, bytearray)):
            if body is not None or method in ("POST", "PUT"):
                headers = {**headers, "Content-Length": str(len(body or b""))}
            self.sock.sendall(_head(lines, headers) + (body or b""))
            return
        headers = {**headers, "Transfer-Encoding": "chunked"}
        self.sock.sendall(_head(lines, headers))
        for block in body:
            if block:
                self.sock.sendall(b"%x\r\n%s\r\n" % (len(block), block))
        self.sock.sendall(b"0\r\n\r\n")

    # -- reading -----------------------------------------------------------------------------

    def _fill(self) -> bool:
        data = self.sock.recv(_READ_SIZE)
        if not data:
            return False
        self.buf += data
        return True

    def read_line(self) -> bytes:
        while True:
            idx = self.buf.find(b"\n")
            if idx >= 0:
                line = bytes(self.buf[: idx + 1])
                del self.buf[: idx + 1]
                return line
            if not self._fill():
                raise ConnectionError("connection closed by daemon")

    def read_some(self, limit: int) -> bytes:
        """Up to ``limit`` bytes: buffered ones first, else one recv. b"" at EOF."""
        if not self.buf and not self._fill():
            return b""
        out = bytes(self.buf[:limit])
        del self.buf[:limit]
        return out

    def read_head(self) -> tuple[int, str, dict[str, str]]:
        while True:
            status_line = self.read_line().decode("latin-1").rstrip("\r\n")
            parts = status_line.split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                raise ConnectionError(f"malformed HTTP response {status_line!r}")
            status = int(parts[1])
            reason = parts[2] if len(parts) > 2 else ""
            headers: dict[str, str] = {}
            while True:
                line = self.read_line().decode("latin-1").rstrip("\r\n")
                if not line:
                    break
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if status == 100:
                continue
            return status, reason, headers


class Response:
    """A response whose body is read on demand (so streams can be consumed as they arrive)."""

    def __init__(self, conn: Connection, method: str, status: int, reason: str,
                 headers: dict[str, str], pool: "Pool | None") -> None:
        self.conn = conn
        self.status = status
        self.reason = reason
        self.headers = headers
        self._pool = pool
        self._chunk_left = 0
        self._done = False
        te = headers.get("transfer-encoding", "").lower()
        if method == "HEAD" or status in (101, 204, 304) or 100 <= status < 200:
            self._mode, self._left = "none", 0
            self._done = status != 101
        elif "chunked" in te:
            self._mode, self._left = "chunked", 0
        elif "content-length" in headers:
            self._mode, self._left = "length", int(headers["content-length"])
            self._done = self._left == 0
        else:
            self._mode, self._left = "close", 0
        self._keepalive = headers.get("connection", "").lower() != "close" and self._mode != "close"
        if self._done:
            self._release()

    def read_chunk(self, limit: int = _READ_SIZE) -> bytes:
        """Next piece of the body as it arrives; b"" once the body is complete."""
        if self._done:
            return b""
        if self._mode == "length":
            data = self.conn.read_some(min(limit, self._left))
            if not data:
                raise ConnectionError("connection closed before end of body")
            self._left -= len(data)
            if self._left == 0:
                self._finish()
            return data
        if self._mode == "close":
            data = self.conn.read_some(limit)
            if not data:
                self._finish()
            return data
        while self._chunk_left == 0:
            size_line = self.conn.read_line().split(b";", 1)[0].strip()
            size = int(size_line or b"0", 16)
            if size == 0:
                while self.conn.read_line() not in (b"\r\n", b"\n"):
                    pass
                self._finish()
                return b""
            self._chunk_left = size
        data = self.conn.read_some(min(limit, self._chunk_left))
        if not data:
            raise ConnectionError("connection closed before end of body")
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            self.conn.read_line()  # CRLF after the chunk data
        return data

    def __iter__(self) -> Iterator[bytes]:
        while True:
            data = self.read_chunk()
            if not data:
                return
            yield data

    def read(self) -> bytes:
        return b"".join(self)

    def iter_lines(self) -> Iterator[bytes]:
        pending = b""
        for data in self:
            pending += data
            *lines, pending = pending.split(b"\n")
            yield from (line for line in lines if line.strip())
        if pending.strip():
            yield pending

    def _finish(self) -> None:
        self._done = True
        self._release()

    def _release(self) -> None:
        if self._pool is not None and self._keepalive and self.status != 101:
            self._pool.put(self.conn)
        elif self.status != 101:
            self.conn.close()
        self._pool = None

    def close(self) -> None:
        if not self._done:
            self._done = True
            self.conn.close()


_contexts: dict[TLSOptions, ssl.SSLContext] = {}


def tls_context(tls: TLSOptions) -> ssl.SSLContext:
    """The client context for ``tls`` (made once). Raises TLSSetupError for an unreadable file."""
    ctx = _contexts.get(tls)
    if ctx is not None:
        return ctx
    import ssl

    for path in (tls.ca, tls.cert, tls.key):
        try:
            if path:
                open(path, "rb").close()
        except OSError as exc:   # Go's os.Open wording
            raise TLSSetupError(f"open {path}: {(exc.strerror or str(exc)).lower()}") from None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2   # the docker CLI's minimum
    try:
        ctx.load_verify_locations(cafile=tls.ca)
        if tls.cert or tls.key:
            ctx.load_cert_chain(tls.cert, tls.key or None)
    except ssl.SSLError as exc:
        raise TLSSetupError(f"tls: {exc.reason or exc}") from None
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    _contexts[tls] = ctx
    return ctx


# OpenSSL's reasons -> Go crypto/tls's words (what the docker CLI prints)
_VERIFY_WORDS = {
    10: "x509: certificate has expired or is not yet valid",
    18: "x509: certificate signed by unknown authority",
    19: "x509: certificate signed by unknown authority",
    20: "x509: certificate signed by unknown authority",
    21: "x509: certificate signed by unknown authority",
}
_ALERT_WORDS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "remote error: tls: certificate required",
    "SSLV3_ALERT_BAD_CERTIFICATE": "remote error: tls: bad certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "remote error: tls: expired certificate",
    "TLSV1_ALERT_UNKNOWN_CA": "remote error: tls: unknown certificate authority",
    "UNEXPECTED_EOF_WHILE_READING": "EOF",
}


def tls_reason(exc: BaseException) -> str:
    """Go's wording for a TLS failure (or the OpenSSL reason when there is none)."""
    code = getattr(exc, "verify_code", None)
    if code is not None:
        if code == 62:   # hostname mismatch
            return f"tls: failed to verify certificate: x509: {getattr(exc, 'verify_message', '')}"
        return "tls: failed to verify certificate: " + _VERIFY_WORDS.get(code, f"x509: {getattr(exc, 'verify_message', '')}")
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason in _ALERT_WORDS:
        return _ALERT_WORDS[reason]
    if isinstance(exc, ConnectionError) or not str(exc):
        return "EOF"
    return f"tls: {(reason or str(exc)).lower().replace('_', ' ')}"


def _wrap(sock: socket.socket, tls: TLSOptions, server: str) -> socket.socket:
    import ssl

    try:
        ctx = tls_context(tls)
        return ctx.wrap_socket(sock, server_hostname=server)
    except (ssl.SSLError, ConnectionError) as exc:
        sock.close()
        raise TLSFailure(tls_reason(exc)) from None
    except BaseException:
        sock.close()
        raise


class Pool:
    """Keeps at most one idle connection, like one keep-alive socket of the docker CLI."""

    def __init__(self, host: str, timeout: float | None = None, tls: TLSOptions | None = None) -> None:
        self.host = host
        self.timeout = timeout
        self.tls = tls
        self._idle: Connection | None = None

    def connect(self) -> Connection:
        return Connection(self.host, self.timeout, self.tls)

    def get(self) -> tuple[Connection, bool]:
        conn, self._idle = self._idle, None
        if conn is not None and not conn.closed:
            return conn, True
        return self.connect(), False

    def put(self, conn: Connection) -> None:
        if self._idle is not None:
            self._idle.close()
        self._idle = conn

    def close(self) -> None:
        if self._idle is not None:
            self._idle.close()
            self._idle = None

    def request(self, method: str, target: str, headers: dict[str, str] | None = None,
                body: bytes | Iterable[bytes] | None = None, *, fresh: bool = False) -> Response:
        """Send one request and read the response head. ``fresh`` forces a new connection."""
        headers = headers or {}
        if fresh:
            conn, reused = self.connect(), False
        else:
            conn, reused = self.get()
        try:
            conn.send_request(method, target, headers, body)
            status, reason, resp_headers = conn.read_head()
        except (ConnectionError, BrokenPipeError, OSError) as exc:
            conn.close()
            if conn.tls and not reused and not isinstance(exc, TimeoutError):
                # TLS 1.3: a refused client certificate shows only at the first read
                raise TLSFailure(tls_reason(exc)) from None
            if not isinstance(exc, (ConnectionError, BrokenPipeError)):
                raise
            if not reused or not isinstance(body, (bytes, type(None))):
                raise ConnectError(getattr(exc, "errno", None) or 0, str(exc)) from exc
            # the idle keep-alive socket was closed by the daemon: retry once on a new one
            return self.request(method, target, headers, body, fresh=True)
        return Response(conn, method, status, reason, resp_headers, None if fresh else self)


def quote(value: str, safe: str = "") -> str:
    """Percent-encode like Go's url.QueryEscape (space becomes '+')."""
    out = []
    for byte in value.encode("utf-8"):
        ch = chr(byte)
        if ch.isascii() and (ch.isalnum() or ch in "-_.~" or ch in safe):
            out.append(ch)
        elif ch == " " and not safe:
            out.append("+")
        else:
            out.append("%%%02X" % byte)
    return "".join(out)


def encode_query(params: dict[str, object]) -> str:
    """Encode query parameters with sorted keys, booleans as 1, None/False skipped."""
    parts = []
    for key in sorted(params):
        value = params[key]
        if value is None or value is False:
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is True:
                item = "1"
            parts.append(f"{quote(key)}={quote(str(item))}")
    return "&".join(parts)


def _head(lines: list[str], headers: dict[str, str]) -> bytes:
    """The request line and headers, ending with the blank line."""
    return ("\r\n".join([*lines, *(f"{k}: {v}" for k, v in headers.items())]) + "\r\n\r\n").encode("latin-1")
