"""Hostile layers and misbehaving registries: each pull fails cleanly, nothing half-stored,
berthd stays up; a kill -9 during a pull leaves no half-visible image."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import threading
import time

import pytest

from tests.integration.images.conftest import layer_count, staging_empty
from tests.integration.images.oci_layout import layer_tar

pytestmark = pytest.mark.root


def _sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


class FakeRegistry:
    """A registry that serves one image and misbehaves on its layer blob as told."""

    def __init__(self, mode: str, layer: bytes | None = None):
        self.mode = mode
        raw = layer if layer is not None else layer_tar([("f", "hello", "world" * 1000)])
        self.blob = gzip.compress(raw)
        self.config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                                  "rootfs": {"type": "layers", "diff_ids": [_sha(raw)]}}).encode()
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": _sha(self.config),
                       "size": len(self.config)},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "digest": _sha(self.blob) if mode != "wrong-digest" else _sha(b"other"),
                        "size": len(self.blob)}]}).encode()
        self.stalled = threading.Event()
        self.release = threading.Event()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:
                p = self.path
                if p == "/v2/":
                    return self._send(200, b"{}")
                if "/manifests/" in p:
                    return self._send(200, outer.manifest, outer_ct())
                if p.endswith(_sha(outer.config)):
                    return self._send(200, outer.config)
                if "/blobs/" in p:
                    return outer._blob(self)
                self._send(404, b'{"errors":[{"code":"NOT_FOUND","message":"nope"}]}')

            def _send(self, status: int, body: bytes, ct: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ct)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def outer_ct() -> str:
            return "application/vnd.docker.distribution.manifest.v2+json"
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _blob(self, h: http.server.BaseHTTPRequestHandler) -> None:
        b = self.blob
        h.send_response(200)
        if self.mode == "endless":
            h.send_header("Content-Length", str(1 << 40))
            h.end_headers()
            try:
                while True:
                    h.wfile.write(b"\0" * 65536)
            except OSError:
                return
        h.send_header("Content-Length", str(len(b)))
        h.end_headers()
        if self.mode == "truncated":
            h.wfile.write(b[: len(b) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        if self.mode == "stall":
            h.wfile.write(b[: len(b) // 2])
            h.wfile.flush()
            self.stalled.set()
            self.release.wait(30)
            return
        h.wfile.write(b)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("mode,expect", [
    ("wrong-digest", "verification failed"),
    ("truncated", ""),
    ("endless", "larger than"),
])
def test_misbehaving_registry(berthd, busybox, mode, expect):
    reg = FakeRegistry(mode)
    try:
        before = layer_count(berthd)
        status, body = berthd.request("POST", f"/images/create?fromImage={reg.host}/bad&tag=latest",
                                      headers={"X-Registry-Auth": "e30="}, timeout=60)
        text = body.decode()
        assert status != 200 or '"error"' in text, text
        assert expect in text, text
        assert berthd.request("GET", f"/images/{reg.host}/bad/json")[0] == 404
        assert layer_count(berthd) == before
        assert staging_empty(berthd)
        assert berthd.request("GET", "/_ping")[0] == 200
    finally:
        reg.close()


HOSTILE = {
    "dotdot": [("f", "../escape", "x")],
    "absolute": [("f", "/etc/berth-escape", "x")],
    "symlink-write-through": [("l", "link", "/tmp"), ("f", "link/berth-escape", "x")],
    "symlink-dir-then-file": [("d", "a"), ("l", "a/b", "../../../../tmp"), ("f", "a/b/berth-escape", "x")],
    "hardlink-out": [("h", "passwd", "../../../../etc/passwd")],
    "hardlink-missing": [("h", "x", "etc/shadow")],
    "overlay-xattr": [("x", "f", "x", {"trusted.overlay.redirect": "/etc"})],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_layer_refused(berthd, busybox, registry, layout, skopeo_push, case):
    import os
    desc = layout.image([layer_tar([("f", "ok", "fine")] + HOSTILE[case])])
    layout.tag(desc, case)
    skopeo_push(layout, case, f"{registry.host}/hostile:{case}")
    before = layer_count(berthd)
    status, body = berthd.request("POST", f"/images/create?fromImage={registry.host}/hostile&tag={case}",
                                  headers={"X-Registry-Auth": "e30="}, timeout=60)
    text = body.decode()
    assert "refusing to unpack" in text, text
    assert berthd.request("GET", f"/images/{registry.host}/hostile:{case}/json")[0] == 404
    assert layer_count(berthd) == before
    assert staging_empty(berthd)
    assert not os.path.exists("/tmp/berth-escape") and not os.path.exists("/etc/berth-escape")
    assert berthd.request("GET", "/_ping")[0] == 200


def test_kill9_during_pull_then_pull_again(tmp_path):
    from tests.integration.daemon import Daemon, suite_args
    reg = FakeRegistry("stall")
    d = Daemon(args=suite_args())
    try:
        d.start()
        result: dict[str, object] = {}

        def pull() -> None:
            try:
                result["r"] = d.request("POST", f"/images/create?fromImage={reg.host}/slow&tag=latest",
                                        headers={"X-Registry-Auth": "e30="}, timeout=30)
            except Exception as e:  # the daemon dies under the request
                result["e"] = e
        t = threading.Thread(target=pull)
        t.start()
        assert reg.stalled.wait(20)
        time.sleep(0.2)
        d.kill9()
        t.join(10)
        reg.release.set()
        d.start()
        assert d.request("GET", f"/images/{reg.host}/slow/json")[0] == 404
        assert staging_empty(d)
        reg.mode = "ok"
        status, body = d.request("POST", f"/images/create?fromImage={reg.host}/slow&tag=latest",
                                 headers={"X-Registry-Auth": "e30="}, timeout=30)
        assert status == 200 and b"Downloaded newer image" in body, body
        assert d.request("GET", f"/images/{reg.host}/slow/json")[0] == 200
    finally:
        d.cleanup()
        reg.close()
