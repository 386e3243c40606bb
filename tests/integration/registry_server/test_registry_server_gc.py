"""``berth registry gc`` against a real root (refusing beside a writer, working beside a
read-only server), and ``kill -9`` of a busy server leaving nothing corrupt or half-visible."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from registry_server_support import (REPO_ROOT, Server, busybox_image, call, push_image, sha256)

pytestmark = pytest.mark.root


def berth(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "berth.cli.main", *args], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def blob_files(root: Path) -> set[str]:
    return {f"sha256:{p.name}" for p in (root / "blobs").rglob("*") if p.is_file()}


def test_gc_after_deleting_tags(tmp_path: Path) -> None:
    root = tmp_path / "root"
    a, b = busybox_image(b"image a"), busybox_image(b"image b")
    s = Server(root)
    try:
        assert push_image(s.host, "app", a, tag="a").status == 201
        assert push_image(s.host, "app", b, tag="b").status == 201
        orphan = b"pushed but never used by a manifest"
        call(s.host, "POST", f"/v2/app/blobs/uploads/?digest={sha256(orphan)}", orphan)
        assert call(s.host, "DELETE", "/v2/app/manifests/b").status == 202
        refused = berth("registry", "gc", "--root", str(root))
        assert refused.returncode == 1 and "read-only" in refused.stderr
    finally:
        s.stop()
    ro = Server(root, read_only=True)
    try:
        dry = berth("registry", "gc", "--root", str(root), "--dry-run", "--delete-untagged")
        assert dry.returncode == 0, dry.stderr
        assert f"would delete manifest app@{b.digest}" in dry.stdout
        assert f"would delete blob {sha256(orphan)}" in dry.stdout
        assert sha256(orphan) in blob_files(root)
        # without --delete-untagged the untagged manifest and its blobs stay
        kept = berth("registry", "gc", "--root", str(root))
        assert kept.returncode == 0, kept.stderr
        assert blob_files(root) == {*a.blobs, a.digest, *b.blobs, b.digest}
        gone = berth("registry", "gc", "--root", str(root), "--delete-untagged")
        assert gone.returncode == 0, gone.stderr
        assert blob_files(root) == {*a.blobs, a.digest}  # the shared busybox layer stays
        assert call(ro.host, "GET", "/v2/app/manifests/a").body == a.manifest
        for digest, data in a.blobs.items():
            assert call(ro.host, "GET", f"/v2/app/blobs/{digest}").body == data
        assert call(ro.host, "GET", f"/v2/app/manifests/{b.digest}").status == 404
        assert call(ro.host, "POST", "/v2/app/blobs/uploads/").status == 405
    finally:
        ro.stop()


def _slow_upload(host: str, repo: str, data: bytes, stop: threading.Event) -> None:
    """A streamed PATCH that sends data in small pieces until the server dies."""
    try:
        loc = call(host, "POST", f"/v2/{repo}/blobs/uploads/").headers["location"]
        conn = http.client.HTTPConnection(host, timeout=10)

        def pieces():  # type: ignore[no-untyped-def]
            for i in range(0, len(data), 65536):
                if stop.is_set():
                    return
                yield data[i:i + 65536]
                time.sleep(0.02)  # 8 MiB take about 2.6 s: the kill lands midway

        conn.request("PATCH", loc, body=pieces(), encode_chunked=True,
                      headers={"Transfer-Encoding": "chunked"})
        conn.getresponse().read()
        call(host, "PUT", f"{loc}?digest={sha256(data)}")
    except OSError:
        pass


def _pushes(host: str, stop: threading.Event) -> None:
    i = 0
    while not stop.is_set():
        try:
            push_image(host, f"churn{i % 3}", busybox_image(f"churn {i}".encode()), tag=f"t{i}")
        except (OSError, AssertionError):
            return
        i += 1


def test_kill_9_leaves_nothing_corrupt(tmp_path: Path) -> None:
    root = tmp_path / "root"
    s = Server(root)
    stop = threading.Event()
    threads = [threading.Thread(target=_slow_upload,
                                args=(s.host, "big", os.urandom(8 << 20), stop))
               for _ in range(3)]
    threads += [threading.Thread(target=_pushes, args=(s.host, stop)) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    os.kill(s.proc.pid, signal.SIGKILL)
    s.proc.wait()
    stop.set()
    for t in threads:
        t.join(15)
    s.stop()
    # every visible blob is whole: its bytes have its name
    for path in (root / "blobs").rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name
    s2 = Server(root)
    try:
        for repo in call(s2.host, "GET", "/v2/_catalog").json()["repositories"]:
            for tag in call(s2.host, "GET", f"/v2/{repo}/tags/list").json()["tags"]:
                m = call(s2.host, "GET", f"/v2/{repo}/manifests/{tag}",
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
                assert m.status == 200, (repo, tag)
                desc = json.loads(m.body)
                for d in [desc["config"], *desc["layers"]]:
                    assert call(s2.host, "HEAD", f"/v2/{repo}/blobs/{d['digest']}").status == 200
        # interrupted uploads survive the restart with what they had, and can be finished
        uploads = list((root / "uploads").iterdir())
        assert uploads
        for up in uploads:
            loc = f"/v2/{json.loads((up / 'info').read_text())['repo']}/blobs/uploads/{up.name}"
            st = call(s2.host, "GET", loc)
            size = (up / "data").stat().st_size
            assert st.status == 204 and st.headers["range"] == f"0-{max(size - 1, 0)}"
            rest = b"tail"
            data = (up / "data").read_bytes() + rest
            r = call(s2.host, "PUT", f"{loc}?digest={sha256(data)}", rest)
            assert r.status == 201, r.body
        assert call(s2.host, "POST", "/v2/x/blobs/uploads/").status == 202
    finally:
        s2.stop()
