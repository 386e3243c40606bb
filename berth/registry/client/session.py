"""One registry endpoint as a thread-safe client (see the package docstring).

``Registry.request()`` does the auth dance: a ``401`` carries ``WWW-Authenticate``; for
``Bearer`` a token is fetched from the realm (anonymously, or with Basic credentials, or with
an identity token as a refresh token) for the request's scope and cached; for ``Basic`` the
credentials are sent. The challenge is remembered, so later scopes get their token before
their first request. Each thread keeps its own keep-alive connections.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import threading
import time
import weakref
from typing import Any, BinaryIO, Callable, Iterable
from urllib.parse import urlencode, urljoin, urlsplit

from berth import errors
from berth.registry.client.auth import Credentials, parse_challenge
from berth.registry.client.options import USER_AGENT, Options, api_host

MANIFEST_LIMIT = 4 << 20


class RegistryError(errors.BerthError):
    def __init__(self, message: str, status: int = 0, code: str = ""):
        super().__init__(message)
        self.status = status
        self.code = code


class RegistryNotFound(RegistryError, errors.NotFound):
    pass


class RegistryDenied(RegistryError, errors.PermissionDenied):
    pass


class RegistryUnavailable(RegistryError, errors.Unavailable):
    pass


class RegistryProtocolError(RegistryError, errors.InvalidArgument):
    pass


def _err_from(resp_status: int, body: bytes) -> tuple[str, str]:
    """Registry error body -> (code, 'code text: message') as Docker's errcode prints it."""
    try:
        doc = json.loads(body)
        e = doc["errors"][0]
        code = str(e.get("code", ""))
        msg = str(e.get("message", ""))
        return code, f"{code.lower().replace('_', ' ')}: {msg}" if code else msg
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        text = body.decode("utf-8", "replace").strip()[:200]
        return "", text or f"status {resp_status}"


class Response:
    """A response whose body is read by the caller; ``close()`` returns the connection."""

    def __init__(self, resp: http.client.HTTPResponse, conn: http.client.HTTPConnection, reuse: Callable[[], None]):
        self.resp = resp
        self.conn = conn
        self.status = resp.status
        self.headers = resp.headers
        self._reuse = reuse

    def header(self, name: str, default: str = "") -> str:
        return self.resp.getheader(name, default) or default

    def read(self, n: int = -1) -> bytes:
        return self.resp.read(n) if n >= 0 else self.resp.read()

    def read_limited(self, limit: int) -> bytes:
        data = self.resp.read(limit + 1)
        if len(data) > limit:
            self.conn.close()
            raise RegistryProtocolError(f"response body larger than {limit} bytes")
        return data

    def readinto(self, b: Any) -> int:
        return self.resp.readinto(b)

    def read1(self, n: int) -> bytes:
        """What has arrived, up to ``n`` bytes (at least one; b"" at the end). A body cut
        short of its Content-Length raises RegistryUnavailable."""
        b = self.resp.read1(n)
        if not b and n and self.resp.length:
            raise RegistryUnavailable(f"unexpected EOF: {self.resp.length} bytes of the body missing")
        return b

    def close(self) -> None:
        if self.resp.isclosed() or self.resp.length == 0:
            self.resp.close()
            self._reuse()
        else:
            self.resp.close()
            self.conn.close()


_TLS: dict[bool, ssl.SSLContext] = {}
_TLS_LOCK = threading.Lock()


def _tls_context(verify: bool) -> ssl.SSLContext:
    """One shared client context per mode: loading the system CAs costs ~0.1 s of CPU, which
    every pull from an insecure registry paid (its HTTPS probe) before its first request."""
    with _TLS_LOCK:
        ctx = _TLS.get(verify)
        if ctx is None:
            ctx = ssl.create_default_context()
            if not verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            _TLS[verify] = ctx
        return ctx


class Registry:
    def __init__(self, host: str, creds: Credentials | None = None, opts: Options | None = None,
                 scheme: str | None = None, path_prefix: str = ""):
        self.host = host
        self.creds = creds if creds and not creds.empty else None
        self.opts = opts or Options()
        self.scheme = scheme
        self.prefix = path_prefix.rstrip("/")
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}
        self._challenge: tuple[str, dict[str, str]] | None = None
        self._local = threading.local()
        self._insecure = self.opts.is_insecure(host)
        self._open: weakref.WeakSet[http.client.HTTPConnection] = weakref.WeakSet()
        self._aborted = False

    # -- connections -----------------------------------------------------------------------

    def _conns(self) -> dict[tuple[str, str], http.client.HTTPConnection]:
        c = getattr(self._local, "conns", None)
        if c is None:
            c = self._local.conns = {}
        return c

    def _new_conn(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if scheme == "https":
            ctx = _tls_context(verify=not (self._insecure and netloc == self.host))
            conn = http.client.HTTPSConnection(netloc, timeout=self.opts.timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection(netloc, timeout=self.opts.timeout)
        with self._lock:
            self._open.add(conn)
        return conn

    def abort(self) -> None:
        """Hang up every connection of this registry, from any thread: a transfer blocked on
        a slow registry wakes up with an error (its thread closes the socket), and no new
        request is sent. For a pull or push nobody waits for any more."""
        self._aborted = True
        with self._lock:
            conns = list(self._open)
        for c in conns:
            sock = c.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        for c in self._conns().values():
            c.close()
        self._conns().clear()

    def _raw(self, method: str, url: str, headers: dict[str, str], body: Any = None,
             chunked: bool = False) -> Response:
        parts = urlsplit(url)
        scheme, netloc = parts.scheme, parts.netloc
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        key = (scheme, netloc)
        conns = self._conns()
        h = {"User-Agent": self.opts.user_agent, **headers}
        for attempt in (0, 1):
            if self._aborted:
                raise RegistryUnavailable(f"{method} {url}: cancelled")
            conn = conns.pop(key, None) or self._new_conn(scheme, netloc)
            fresh = attempt == 1 or conn.sock is None
            try:
                conn.request(method, target, body=body, headers=h, encode_chunked=chunked)
                resp = conn.getresponse()
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected,
                    http.client.BadStatusLine) as e:
                conn.close()
                if fresh or not (body is None or isinstance(body, bytes)):
                    raise RegistryUnavailable(f"{method} {url}: {e}") from None
                continue
            except ssl.SSLError as e:
                conn.close()
                raise _TLSFailed(str(e)) from None
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise RegistryUnavailable(f"{method} {url}: {_oserror_text(e)}") from None

            def reuse(conn: http.client.HTTPConnection = conn) -> None:
                old = conns.get(key)
                if old is not None and old is not conn:
                    old.close()
                conns[key] = conn
            return Response(resp, conn, reuse)
        raise AssertionError("unreachable")

    # -- base URL ----------------------------------------------------------------------------

    def base(self) -> str:
        if self.scheme is None:
            self._probe()
        return f"{self.scheme}://{self.host}{self.prefix}"

    def _probe(self) -> None:
        """HTTPS first; an insecure registry that does not speak TLS falls back to plain HTTP."""
        if not self._insecure:
            self.scheme = "https"
            return
        try:
            r = self._raw("GET", f"https://{self.host}/v2/", {})
            r.read()
            r.close()
            self.scheme = "https"
        except (_TLSFailed, RegistryUnavailable):
            self.scheme = "http"

    # -- auth ---------------------------------------------------------------------------------

    def _auth_header(self, scope: str) -> dict[str, str]:
        with self._lock:
            ch = self._challenge
            tok = self._tokens.get(scope)
        if ch is None:
            return {}
        if ch[0] == "basic":
            return self._basic() if self.creds else {}
        if tok and tok[1] > time.monotonic():
            return {"Authorization": f"Bearer {tok[0]}"}
        token = self._fetch_token(ch[1], scope)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _basic(self) -> dict[str, str]:
        assert self.creds is not None
        raw = f"{self.creds.username}:{self.creds.password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}

    def _fetch_token(self, params: dict[str, str], scope: str) -> str:
        realm = params.get("realm")
        if not realm:
            raise RegistryProtocolError(f"{self.host}: bearer challenge without a realm")
        q: list[tuple[str, str]] = []
        if params.get("service"):
            q.append(("service", params["service"]))
        for s in scope.split(" "):
            if s:
                q.append(("scope", s))
        headers: dict[str, str] = {}
        if self.creds and self.creds.registrytoken:
            return self.creds.registrytoken
        if self.creds and self.creds.identitytoken:
            form = urlencode(q + [("grant_type", "refresh_token"), ("refresh_token", self.creds.identitytoken),
                                  ("client_id", "berth")]).encode()
            r = self._raw("POST", realm, {"Content-Type": "application/x-www-form-urlencoded"}, form)
        else:
            if self.creds:
                headers.update(self._basic())
            sep = "&" if "?" in realm else "?"
            r = self._raw("GET", realm + (sep + urlencode(q) if q else ""), headers)
        try:
            body = r.read_limited(1 << 20)
        finally:
            r.close()
        if r.status in (401, 403):
            code, msg = _err_from(r.status, body)
            raise RegistryDenied(msg if code else "unauthorized: incorrect username or password",
                                 r.status, code or "UNAUTHORIZED")
        if r.status != 200:
            raise RegistryUnavailable(f"{self.host}: token server answered {r.status}", r.status)
        try:
            doc = json.loads(body)
        except ValueError:
            raise RegistryProtocolError(f"{self.host}: token server sent invalid JSON") from None
        token = doc.get("token") or doc.get("access_token") or ""
        expires = float(doc.get("expires_in") or 60)
        with self._lock:
            self._tokens[scope] = (token, time.monotonic() + max(expires - 5, 5))
        return str(token)

    def request(self, method: str, path: str, scope: str, headers: dict[str, str] | None = None,
                body: Any = None, chunked: bool = False) -> Response:
        """``path`` is relative to the registry base or an absolute URL on it; a 401 is
        answered once (challenge -> credentials), then returned as RegistryDenied."""
        url = path if path.startswith(("http://", "https://")) else self.base() + path
        for attempt in (0, 1):
            h = dict(headers or {})
            h.update(self._auth_header(scope))
            r = self._raw(method, url, h, body, chunked)
            if r.status != 401:
                return r
            data = r.read_limited(1 << 16)
            r.close()
            www = r.header("WWW-Authenticate")
            if attempt == 0 and www and (body is None or isinstance(body, bytes)):
                ch = parse_challenge(www)
                if ch[0] in ("bearer", "basic"):
                    with self._lock:
                        self._challenge = ch
                        self._tokens.pop(scope, None)
                    if ch[0] == "basic" and not self.creds:
                        break
                    continue
            code, msg = _err_from(401, data)
            raise RegistryDenied(msg or "unauthorized: authentication required", 401, code or "UNAUTHORIZED")
        code, msg = _err_from(401, b"")
        raise RegistryDenied("unauthorized: authentication required", 401, "UNAUTHORIZED")

    def ping(self) -> None:
        """``GET /v2/`` with credentials (login): raises RegistryDenied when they are refused."""
        r = self.request("GET", "/v2/", "")
        body = r.read_limited(1 << 16)
        r.close()
        if r.status != 200:
            code, msg = _err_from(r.status, body)
            raise RegistryUnavailable(f"{self.base()}/v2/: {r.status} {msg}", r.status, code)

    # -- manifests ----------------------------------------------------------------------------

    def get_manifest(self, repo: str, ref: str, accept: str) -> tuple[bytes, str, str]:
        """(body, media type, digest header or "")."""
        r = self.request("GET", f"/v2/{repo}/manifests/{ref}", f"repository:{repo}:pull", {"Accept": accept})
        try:
            body = r.read_limited(MANIFEST_LIMIT)
        finally:
            r.close()
        if r.status != 200:
            raise _status_error(r.status, body)
        return body, r.header("Content-Type"), r.header("Docker-Content-Digest")

    def put_manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> str:
        r = self.request("PUT", f"/v2/{repo}/manifests/{ref}", f"repository:{repo}:pull,push",
                         {"Content-Type": media_type}, body)
        data = r.read_limited(1 << 16)
        r.close()
        if r.status not in (200, 201):
            raise _status_error(r.status, data)
        return r.header("Docker-Content-Digest")

    # -- blobs --------------------------------------------------------------------------------

    def open_blob(self, repo: str, digest: str) -> Response:
        """GET a blob (following redirects to storage); the caller reads and closes it."""
        r = self.request("GET", f"/v2/{repo}/blobs/{digest}", f"repository:{repo}:pull")
        for _ in range(5):
            if r.status not in (301, 302, 303, 307, 308):
                break
            loc = urljoin(f"{self.base()}/v2/{repo}/blobs/{digest}", r.header("Location"))
            r.read_limited(1 << 16)
            r.close()
            r = self._raw("GET", loc, {})
        if r.status != 200:
            body = r.read_limited(1 << 16)
            r.close()
            raise _status_error(r.status, body)
        return r

    def get_blob(self, repo: str, digest: str, limit: int) -> bytes:
        r = self.open_blob(repo, digest)
        try:
            return r.read_limited(limit)
        finally:
            r.close()

    def blob_exists(self, repo: str, digest: str) -> bool:
        r = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", f"repository:{repo}:pull,push")
        r.read()
        r.close()
        if r.status == 200:
            return True
        if r.status == 404:
            return False
        raise _status_error(r.status, b"")

    def start_upload(self, repo: str, digest: str, mount_from: str | None) -> str | None:
        """None when the blob was mounted from ``mount_from``; else the upload URL."""
        q = ""
        scope = f"repository:{repo}:pull,push"
        if mount_from:
            q = "?" + urlencode({"mount": digest, "from": mount_from})
            scope += f" repository:{mount_from}:pull"
        r = self.request("POST", f"/v2/{repo}/blobs/uploads/{q}", scope, {"Content-Length": "0"}, b"")
        body = r.read_limited(1 << 16)
        r.close()
        if r.status == 201 and mount_from:
            return None
        if r.status != 202:
            raise _status_error(r.status, body)
        return urljoin(self.base() + f"/v2/{repo}/blobs/uploads/", r.header("Location"))

    def upload(self, repo: str, location: str, digest: str, chunks: Iterable[bytes],
               chunk_size: int | None = None) -> None:
        """PATCH the data (one streamed chunked request, or ``chunk_size`` pieces with
        Content-Range), then PUT ``?digest=``."""
        scope = f"repository:{repo}:pull,push"
        if chunk_size:
            offset = 0
            buf = b""
            pieces: list[bytes] = []

            def flush(data: bytes) -> None:
                nonlocal location, offset
                r = self.request("PATCH", location, scope, {
                    "Content-Type": "application/octet-stream", "Content-Length": str(len(data)),
                    "Content-Range": f"{offset}-{offset + len(data) - 1}"}, data)
                body = r.read_limited(1 << 16)
                r.close()
                if r.status != 202:
                    raise _status_error(r.status, body)
                offset += len(data)
                location = urljoin(location, r.header("Location") or location)
            for c in chunks:
                buf += c
                while len(buf) >= chunk_size:
                    flush(buf[:chunk_size])
                    buf = buf[chunk_size:]
            if buf:
                flush(buf)
            del pieces
        else:
            r = self.request("PATCH", location, scope, {"Content-Type": "application/octet-stream"},
                             iter(chunks), chunked=True)
            body = r.read_limited(1 << 16)
            r.close()
            if r.status != 202:
                raise _status_error(r.status, body)
            location = urljoin(location, r.header("Location") or location)
        sep = "&" if "?" in location else "?"
        r = self.request("PUT", f"{location}{sep}{urlencode({'digest': digest})}", scope,
                         {"Content-Length": "0", "Content-Type": "application/octet-stream"}, b"")
        body = r.read_limited(1 << 16)
        r.close()
        if r.status not in (201, 204):
            raise _status_error(r.status, body)


class _TLSFailed(Exception):
    pass


def _oserror_text(e: BaseException) -> str:
    if isinstance(e, socket.timeout):
        return "i/o timeout"
    if isinstance(e, ConnectionRefusedError):
        return "connect: connection refused"
    return str(e) or e.__class__.__name__


def _status_error(status: int, body: bytes) -> RegistryError:
    code, msg = _err_from(status, body)
    if status == 404:
        return RegistryNotFound(msg or "not found", status, code)
    if status in (401, 403):
        return RegistryDenied(msg or "denied", status, code)
    if status >= 500:
        return RegistryUnavailable(f"received unexpected HTTP status: {status} {http.client.responses.get(status, '')}".strip(),
                                   status, code)
    return RegistryProtocolError(msg or f"unexpected status {status}", status, code)


def copy_to(resp: Response, write: Callable[[bytes], None], limit: int, chunk: int = 1 << 20,
            progress: Callable[[int], None] | None = None) -> int:
    """Read the body into ``write`` in pieces as they arrive (so ``write`` can stop a transfer
    that trickles); more than ``limit`` bytes is an error."""
    n = 0
    while b := resp.read1(chunk):
        n += len(b)
        if n > limit:
            raise RegistryProtocolError(f"blob larger than the {limit} bytes announced")
        write(b)
        if progress:
            progress(n)
    return n


_unused: tuple[Any, ...] = (BinaryIO,)


__all__ = ['Options', 'api_host', 'Registry', 'RegistryError', 'USER_AGENT']
