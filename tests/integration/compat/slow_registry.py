"""A registry on 127.0.0.1 whose layer blobs trickle: one byte per ``interval`` seconds.

Manifests and configs come at once, so a pull gets as far as downloading its layer and then
waits. Each blob connection is recorded (``BlobConn``): when it opened, how many bytes went out
and when the client closed it, so a test can tell whether berthd hung up upstream.
``slow = False`` serves the blobs at once (a later pull that must work).
"""

from __future__ import annotations

import select
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.integration.compat.lying_registry import DOCKER_MANIFEST, Image, sha256


@dataclass
class BlobConn:
    path: str
    opened: float
    sent: int = 0
    closed: float | None = None  # when the client hung up (None: still connected)


class SlowRegistry:
    def __init__(self, interval: float = 0.3) -> None:
        self.interval = interval
        self.slow = True
        self.routes: dict[str, tuple[bytes, str]] = {}
        self.blob_conns: list[BlobConn] = []
        self._stop = threading.Event()
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/v2/":
                    self._head(200, "application/json", 2)
                    self.wfile.write(b"{}")
                    return
                if self.path not in registry.routes:
                    self._head(404, "application/json", 2)
                    self.wfile.write(b"{}")
                    return
                body, ctype = registry.routes[self.path]
                self._head(200, ctype, len(body), sha256(body))
                if "/blobs/" in self.path and body != registry.config and registry.slow:
                    self._trickle(body)
                else:
                    self.wfile.write(body)

            def _head(self, status: int, ctype: str, length: int, digest: str = "") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(length))
                self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
                if digest:
                    self.send_header("Docker-Content-Digest", digest)
                self.end_headers()
                self.wfile.flush()

            def _trickle(self, body: bytes) -> None:
                conn = BlobConn(self.path, time.monotonic())
                registry.blob_conns.append(conn)
                sock = self.connection
                try:
                    for b in body:
                        readable, _, _ = select.select([sock], [], [], registry.interval)
                        if registry._stop.is_set() or readable and not sock.recv(1):
                            break  # the client hung up (EOF)
                        sock.sendall(bytes([b]))
                        conn.sent += 1
                except OSError:
                    pass  # reset by the client
                finally:
                    conn.closed = time.monotonic()
                    self.close_connection = True

        self.config = b""
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, repo: str, tag: str, img: Image) -> None:
        self.config = img.config
        self.routes[f"/v2/{repo}/manifests/{tag}"] = (img.manifest, DOCKER_MANIFEST)
        for blob in (img.config, img.layer):
            self.routes[f"/v2/{repo}/blobs/{sha256(blob)}"] = (blob, "application/octet-stream")

    def open_conns(self) -> list[BlobConn]:
        return [c for c in self.blob_conns if c.closed is None]

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
