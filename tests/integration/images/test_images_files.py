"""save/load (docker-save format with OCI layout), commit, export, import from a URL,
history, image prune and system df, through the docker CLI and the berth CLI."""

from __future__ import annotations

import http.server
import io
import json
import os
import tarfile
import threading

import pytest

pytestmark = pytest.mark.root


def test_save_load_roundtrip(docker, berthd, tmp_path):
    out = tmp_path / "bb.tar"
    p = docker("save", "-o", str(out), "busybox")
    assert p.returncode == 0, p.stderr
    with tarfile.open(out) as t:
        names = set(t.getnames())
        assert {"index.json", "manifest.json", "oci-layout"} <= names
        manifest = json.load(t.extractfile("manifest.json"))  # type: ignore[arg-type]
        index = json.load(t.extractfile("index.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["busybox:latest"]
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "docker.io/library/busybox:latest"
    iid = json.loads(docker("image", "inspect", "busybox").stdout)[0]["Id"]
    assert manifest[0]["Config"] == f"blobs/sha256/{iid[7:]}"
    docker("tag", "busybox", "saved:copy")
    docker("rmi", "saved:copy")
    p = docker("load", "-i", str(out))
    assert p.returncode == 0, p.stderr
    assert "Loaded image: busybox:latest" in p.stdout
    # Into an empty daemon: the layer is unpacked again and the image ID is unchanged.
    from tests.integration.daemon import Daemon, suite_args
    d = Daemon(args=suite_args())
    try:
        d.start()
        status, body = d.request("POST", "/images/load", out.read_bytes())
        assert status == 200 and b"Loaded image: busybox:latest" in body, body
        assert json.loads(d.request("GET", "/images/busybox/json")[1])["Id"] == iid
    finally:
        d.cleanup()


def test_load_docker_20_layout(berthd, busybox, tmp_path):
    """Docker 20.10's save format: <id>/layer.tar, <id>.json, manifest.json."""
    import hashlib
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        ti = tarfile.TarInfo("hello.txt")
        ti.size = 5
        t.addfile(ti, io.BytesIO(b"hello"))
    layer = buf.getvalue()
    diff = "sha256:" + hashlib.sha256(layer).hexdigest()
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                      "rootfs": {"type": "layers", "diff_ids": [diff]}}).encode()
    cid = hashlib.sha256(cfg).hexdigest()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        for name, data in ((f"{cid[:20]}/layer.tar", layer), (f"{cid}.json", cfg),
                           ("manifest.json", json.dumps([{"Config": f"{cid}.json", "RepoTags": ["old:format"],
                                                          "Layers": [f"{cid[:20]}/layer.tar"]}]).encode())):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    status, body = berthd.request("POST", "/images/load", out.getvalue())
    assert status == 200 and b"Loaded image: old:format" in body, body
    assert json.loads(berthd.request("GET", "/images/old:format/json")[1])["Id"] == f"sha256:{cid}"
    berthd.request("DELETE", "/images/old:format")


def test_commit_with_whiteouts_and_changes(docker, berthd):
    p = docker("run", "--name", "tocommit", "busybox", "sh", "-c",
               "mkdir -p /data && echo hi > /data/f && ln /data/f /data/hl && rm /bin/vi && "
               "rm -rf /etc/network 2>/dev/null; echo done")
    assert p.returncode == 0, p.stderr
    try:
        p = docker("commit", "-m", "my message", "-a", "me <me@x>", "-c", "ENV FOO=bar", "-c", 'CMD ["cat", "/data/f"]',
                   "tocommit", "committed:v1")
        assert p.returncode == 0, p.stderr
        assert p.stdout.startswith("sha256:")
        insp = json.loads(docker("image", "inspect", "committed:v1").stdout)[0]
        assert "FOO=bar" in insp["Config"]["Env"] and insp["Config"]["Cmd"] == ["cat", "/data/f"]
        assert insp["Author"] == "me <me@x>" and insp["Comment"] == "my message"
        assert len(insp["RootFS"]["Layers"]) == 2
        p = docker("run", "--rm", "committed:v1")
        assert p.stdout == "hi\n", p.stderr
        p = docker("run", "--rm", "committed:v1", "sh", "-c", "test -e /bin/vi && echo present || echo gone")
        assert p.stdout == "gone\n"
        h = docker("history", "committed:v1")
        assert h.returncode == 0 and "my message" in h.stdout
        # export: the merged file system, with the deletion applied.
        p = docker("export", "-o", "/tmp/berth-export-test.tar", "tocommit")
        assert p.returncode == 0, p.stderr
        with tarfile.open("/tmp/berth-export-test.tar") as t:
            names = set(n.removeprefix("./") for n in t.getnames())
        assert "data/f" in names and "bin/sh" in names and "bin/vi" not in names
    finally:
        import os
        if os.path.exists("/tmp/berth-export-test.tar"):
            os.unlink("/tmp/berth-export-test.tar")
        docker("rm", "-f", "tocommit")
        docker("rmi", "committed:v1")


def test_import_from_url_with_change(berthd, busybox, berth, tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        ti = tarfile.TarInfo("from-url")
        ti.size = 3
        t.addfile(ti, io.BytesIO(b"url"))
    data = buf.getvalue()

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/rootfs.tar.gz"
        p = berth("import", "-c", "ENV FROM=url", url, "fromurl:1")
        assert p.returncode == 0, p.stderr
        insp = json.loads(berthd.request("GET", "/images/fromurl:1/json")[1])
        assert "FROM=url" in insp["Config"]["Env"]
    finally:
        srv.shutdown()
        srv.server_close()
        berthd.request("DELETE", "/images/fromurl:1")


def test_prune_and_df(docker, berthd, berth):
    p = docker("run", "--name", "prunesrc", "busybox", "touch", "/x")
    assert p.returncode == 0
    iid = docker("commit", "prunesrc").stdout.strip()
    docker("rm", "prunesrc")
    listed = docker("images", "-a", "--filter", "dangling=true", "-q").stdout.split()
    assert iid[7:19] in listed
    p = berth("image", "prune", "-f")
    assert p.returncode == 0, p.stderr
    assert f"deleted: {iid}".encode() in p.stdout and b"Total reclaimed space:" in p.stdout
    assert docker("image", "inspect", iid).returncode != 0
    p = berth("system", "df")
    assert p.returncode == 0 and p.stdout.startswith(b"TYPE"), p.stderr
    p = docker("system", "df")
    assert p.returncode == 0 and "Images" in p.stdout, p.stderr


def test_export_with_many_tar_warnings(docker, berthd, tmp_path):
    """tar warns once per socket file ("socket ignored"): 4,000 of them are more than a pipe
    holds, and the export must still finish (berthd reads tar's stderr as it goes)."""
    import stat
    name = "export-sockets"
    assert docker("create", "--name", name, "busybox", "true").returncode == 0
    try:
        upper = json.loads(docker("inspect", name).stdout)[0]["GraphDriver"]["Data"]["UpperDir"]
        for i in range(4000):
            os.mknod(f"{upper}/sock-with-a-long-name-for-the-warning-{i:05d}", stat.S_IFSOCK | 0o644)
        out = tmp_path / "export.tar"
        p = docker("export", "-o", str(out), name, timeout=60)
        assert p.returncode == 0, p.stderr
        with tarfile.open(out) as t:
            names = t.getnames()
        assert "./bin/busybox" in names or "bin/busybox" in names
        assert not any("sock-with" in n for n in names)
    finally:
        docker("rm", "-f", name)
