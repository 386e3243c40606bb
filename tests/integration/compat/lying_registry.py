"""A tiny registry on 127.0.0.1 that serves exactly what a test tells it to, lies included.

``LyingRegistry.serve(path, body, headers)`` fixes the answer to ``GET``/``HEAD`` of one path;
anything else is a 404 in the distribution error shape. Every request path is recorded, so
a test can tell whether a client went on to fetch blobs after a bad manifest.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import platform
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Image:
    """A one-layer image: its blobs and a manifest whose media types a test may change."""
    layer: bytes
    diff_id: str
    config: bytes
    layer_type: str = DOCKER_LAYER
    config_type: str = DOCKER_CONFIG
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def manifest(self) -> bytes:
        return json.dumps({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": self.config_type, "digest": sha256(self.config), "size": len(self.config)},
            "layers": [{"mediaType": self.layer_type, "digest": sha256(self.layer), "size": len(self.layer)}],
        }, indent=3).encode()


def make_image(text: str = "hello") -> Image:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    diff_id = sha256(raw.getvalue())
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = json.dumps({
        "architecture": ARCH, "os": "linux", "config": {"Cmd": ["/hello.txt"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "test"}],
    }).encode()
    return Image(layer, diff_id, config)


class LyingRegistry:
    def __init__(self) -> None:
        self.routes: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.requests: list[str] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, with_body: bool) -> None:
                registry.requests.append(self.path)
                if self.path == "/v2/":
                    body, headers = b"{}", {"Content-Type": "application/json"}
                elif self.path in registry.routes:
                    body, headers = registry.routes[self.path]
                else:
                    self._send(404, json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}).encode(),
                               {"Content-Type": "application/json"}, with_body)
                    return
                self._send(200, body, headers, with_body)

            def _send(self, status: int, body: bytes, headers: dict[str, str], with_body: bool) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer(True)

            def do_HEAD(self) -> None:
                self._answer(False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, path: str, body: bytes, headers: dict[str, str]) -> None:
        self.routes[path] = (body, headers)

    def publish(self, repo: str, ref: str, img: Image, digest_header: str | None = None,
                manifest: bytes | None = None) -> None:
        """The image's manifest under ``ref`` (a tag or digest) and its blobs; the manifest's
        ``Docker-Content-Digest`` is ``digest_header`` when given (a lie), else the truth."""
        body = img.manifest if manifest is None else manifest
        self.serve(f"/v2/{repo}/manifests/{ref}", body, {
            "Content-Type": DOCKER_MANIFEST, "Docker-Content-Digest": digest_header or sha256(body)})
        for blob in (img.config, img.layer):
            self.serve(f"/v2/{repo}/blobs/{sha256(blob)}", blob, {"Content-Type": "application/octet-stream",
                                                                  "Docker-Content-Digest": sha256(blob)})

    def blob_requests(self) -> list[str]:
        return [p for p in self.requests if "/blobs/" in p]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
