"""Pull, push, login against a real registry (Debian's docker-registry) with the docker CLI,
the berth CLI and skopeo as independent clients."""

from __future__ import annotations

import json
import subprocess
import urllib.request

import pytest

from tests.integration.images.conftest import layer_count, staging_empty
from tests.integration.images.oci_layout import layer_tar

pytestmark = pytest.mark.root


def _skopeo_inspect(ref: str, raw: bool = False, creds: str | None = None) -> dict:
    cmd = ["skopeo", "inspect", "--tls-verify=false"] + (["--raw"] if raw else [])
    if creds:
        cmd += ["--creds", creds]
    p = subprocess.run(cmd + [f"docker://{ref}"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _api_stream(berthd, method: str, path: str, headers=None) -> tuple[int, list[dict]]:
    status, body = berthd.request(method, path, headers=headers or {"X-Registry-Auth": "e30="}, timeout=60)
    if status != 200:
        return status, [json.loads(body)]
    return status, [json.loads(line) for line in body.split(b"\r\n") if line.strip()]


def test_docker_push_rmi_pull_run(docker, berthd, registry):
    ref = f"{registry.host}/bb:v1"
    assert docker("tag", "busybox", ref).returncode == 0
    p = docker("push", ref)
    assert p.returncode == 0, p.stderr
    assert f"The push refers to repository [{registry.host}/bb]" in p.stdout
    assert "v1: digest: sha256:" in p.stdout
    pushed = p.stdout.split("v1: digest: ")[1].split()[0]
    raw = _skopeo_inspect(ref, raw=True)
    assert raw["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    info = _skopeo_inspect(ref)
    assert info["Digest"] == pushed
    assert docker("rmi", ref).returncode == 0
    # Push again: the registry has every blob.
    docker("tag", "busybox", ref)
    p = docker("push", ref)
    assert "Layer already exists" in p.stdout, p.stdout
    docker("rmi", ref)
    p = docker("pull", ref)
    assert p.returncode == 0, p.stderr
    assert f"Digest: {pushed}" in p.stdout
    assert f"Status: Image is up to date for {ref}" in p.stdout or f"Downloaded newer image for {ref}" in p.stdout
    p = docker("run", "--rm", ref, "echo", "pulled")
    assert p.stdout == "pulled\n", p.stderr
    insp = json.loads(docker("image", "inspect", ref).stdout)[0]
    assert f"{registry.host}/bb@{pushed}" in insp["RepoDigests"]
    docker("rmi", ref)


def test_pull_progress_stream_multi_layer(berthd, busybox, registry, layout, skopeo_push):
    base = layer_tar([("d", "etc"), ("f", "etc/base", "base"), ("f", "etc/gone", "x"),
                      ("d", "opq"), ("f", "opq/old", "o")])
    many = layer_tar([("d", "many")] + [("f", f"many/f{i}", f"{i}") for i in range(300)]
                     + [("f", "etc/big", b"B" * 300_000), ("h", "etc/big-link", "etc/big"),
                        ("l", "etc/sl", "base"), ("c", "etc/null", 1, 3),
                        ("x", "etc/attr", "a", {"user.berth": "yes"})])
    wh = layer_tar([("f", "etc/.wh.gone", b""), ("d", "opq"), ("f", "opq/.wh..wh..opq", b""),
                    ("f", "opq/new", "n")])
    desc = layout.image([base, many, wh], cmd=["sh"])
    layout.tag(desc, "t")
    skopeo_push(layout, "t", f"{registry.host}/multi:t")
    before = layer_count(berthd)
    status, msgs = _api_stream(berthd, "POST", f"/images/create?fromImage={registry.host}/multi&tag=t")
    assert status == 200, msgs
    statuses = [m.get("status", "") for m in msgs]
    assert statuses[0] == "Pulling from multi" and msgs[0]["id"] == "t"
    assert statuses.count("Pulling fs layer") == 3 and statuses.count("Pull complete") == 3
    assert "Verifying Checksum" in statuses and "Download complete" in statuses
    dl = [m for m in msgs if m.get("status") == "Downloading"]
    assert dl and all(m["progressDetail"]["total"] > 0 and m["progress"].startswith("[") for m in dl)
    assert statuses[-2].startswith("Digest: sha256:")
    assert statuses[-1] == f"Status: Downloaded newer image for {registry.host}/multi:t"
    assert layer_count(berthd) == before + 3
    assert staging_empty(berthd)
    # The unpacked layers: whiteouts, opaque dir, hard link, device, xattr, all as overlay sees them.
    img = json.loads(berthd.request("GET", f"/images/{registry.host}/multi:t/json")[1])
    upper = img["GraphDriver"]["Data"]["UpperDir"]
    import os
    import stat
    st = os.lstat(f"{upper}/etc/gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(f"{upper}/opq", "trusted.overlay.opaque") == b"y"
    mid = img["GraphDriver"]["Data"]["LowerDir"].split(":")[0]
    assert os.stat(f"{mid}/etc/big").st_ino == os.stat(f"{mid}/etc/big-link").st_ino
    assert stat.S_ISCHR(os.lstat(f"{mid}/etc/null").st_mode)
    assert os.getxattr(f"{mid}/etc/attr", "user.berth") == b"yes"
    assert os.readlink(f"{mid}/etc/sl") == "base"
    # A second pull of the same tag: up to date, no layer lines.
    status, msgs = _api_stream(berthd, "POST", f"/images/create?fromImage={registry.host}/multi&tag=t")
    assert [m["status"] for m in msgs][1:] == [msgs[1]["status"], f"Status: Image is up to date for {registry.host}/multi:t"]
    assert not any(m.get("id") and m["status"] == "Pulling fs layer" for m in msgs)


def test_shared_base_layer_stored_once(berthd, busybox, registry, layout, skopeo_push, docker):
    base = layer_tar([("d", "shared"), ("f", "shared/base", "S" * 1000)])
    a = layout.image([base, layer_tar([("f", "a", "a")])])
    b = layout.image([base, layer_tar([("f", "b", "b")])])
    layout.tag(a, "a")
    layout.tag(b, "b")
    skopeo_push(layout, "a", f"{registry.host}/shared:a")
    skopeo_push(layout, "b", f"{registry.host}/shared:b", fmt="v2s2")
    before = layer_count(berthd)
    assert docker("pull", f"{registry.host}/shared:a").returncode == 0
    p = docker("pull", f"{registry.host}/shared:b")
    assert p.returncode == 0, p.stderr
    assert "Already exists" in p.stdout
    assert layer_count(berthd) == before + 3
    df = json.loads(berthd.request("GET", "/system/df")[1])
    shared = {i["RepoTags"][0]: i["SharedSize"] for i in df["Images"] if i["RepoTags"] and i["RepoTags"][0].startswith(registry.host)}
    assert shared[f"{registry.host}/shared:a"] == 1000 == shared[f"{registry.host}/shared:b"]
    assert docker("rmi", f"{registry.host}/shared:a").returncode == 0
    assert layer_count(berthd) == before + 2
    assert docker("rmi", f"{registry.host}/shared:b").returncode == 0
    assert layer_count(berthd) == before


def test_manifest_list_platform_and_zstd(berthd, busybox, registry, layout, skopeo_push, berth):
    amd = layout.image([layer_tar([("f", "which", "amd64")])], arch="amd64", compress="zstd")
    arm = layout.image([layer_tar([("f", "which", "arm64")])], arch="arm64")
    layout.tag_list([amd, arm], "ml")
    skopeo_push(layout, "ml", f"{registry.host}/ml:latest", all=True)
    p = berth("pull", f"{registry.host}/ml")
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert "Using default tag: latest" in out and f"{registry.host}/ml:latest" in out
    img = json.loads(berthd.request("GET", f"/images/{registry.host}/ml/json")[1])
    assert img["Architecture"] == "amd64"
    p = berth("pull", "--platform", "linux/arm64", f"{registry.host}/ml")
    assert p.returncode == 0, p.stderr
    img = json.loads(berthd.request("GET", f"/images/{registry.host}/ml/json")[1])
    assert img["Architecture"] == "arm64"
    index_digest = _skopeo_inspect(f"{registry.host}/ml:latest")["Digest"]
    assert f"{registry.host}/ml@{index_digest}" in img["RepoDigests"]
    berthd.request("DELETE", f"/images/{registry.host}/ml")


def test_pull_errors(berthd, busybox, registry, docker):
    p = docker("pull", f"{registry.host}/nosuch:latest")
    assert p.returncode != 0
    assert f"manifest for {registry.host}/nosuch:latest not found: manifest unknown" in p.stderr
    p = docker("pull", "127.0.0.1:1/x")
    assert p.returncode != 0 and "connection refused" in p.stderr
    p = docker("run", "--rm", f"{registry.host}/nosuch:x", "true")
    assert p.returncode != 0 and "not found" in p.stderr


def test_berth_cli_push_pull_and_mount(berthd, busybox, registry, berth):
    ref = f"{registry.host}/cli/one:latest"
    assert berth("tag", "busybox", ref).returncode == 0
    p = berth("push", ref)
    assert p.returncode == 0, p.stderr
    assert (b"Pushed" in p.stdout or b"Mounted from" in p.stdout) and b"latest: digest: sha256:" in p.stdout
    # Same layers to another repository on the same registry: a cross-repository mount.
    ref2 = f"{registry.host}/cli/two:latest"
    berth("tag", "busybox", ref2)
    p = berth("push", ref2)
    assert p.returncode == 0, p.stderr
    assert b"Mounted from " + registry.host.encode() in p.stdout, p.stdout
    _skopeo_inspect(ref2)
    for r in (ref, ref2):
        assert berth("rmi", r).returncode == 0
    p = berth("pull", ref)
    assert p.returncode == 0, p.stderr
    assert b"Status: " in p.stdout
    berth("rmi", ref)


def test_login_and_auth_flows(berthd, busybox, auth_registry, berth, docker, tmp_path):
    ref = f"{auth_registry.host}/private/bb:latest"
    berth("tag", "busybox", ref)
    p = berth("push", ref)
    assert p.returncode != 0 and b"no basic auth credentials" in p.stderr or b"unauthorized" in p.stderr.lower()
    p = berth("login", "-u", "tester", "--password-stdin", auth_registry.host, input=b"wrong\n")
    assert p.returncode != 0 and b"401 Unauthorized" in p.stderr, p.stderr
    p = berth("login", "-u", "tester", "--password-stdin", auth_registry.host, input=b"s3cret\n")
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"Login Succeeded\n"
    cfg = json.loads((tmp_path / "dockercfg" / "config.json").read_text())
    assert auth_registry.host in cfg["auths"] and "auth" in cfg["auths"][auth_registry.host]
    p = berth("push", ref)
    assert p.returncode == 0, p.stderr
    _skopeo_inspect(ref, creds="tester:s3cret")
    berth("rmi", ref)
    p = berth("pull", ref)
    assert p.returncode == 0, p.stderr
    berth("rmi", ref)
    # The docker CLI logs in through POST /auth and sends X-Registry-Auth itself.
    env_cfg = tmp_path / "dockercfg2"
    def dk(*a, input=None):
        return subprocess.run(["docker", *a], env=dict(berthd.env, DOCKER_CONFIG=str(env_cfg)),
                              input=input, capture_output=True, text=True, timeout=60)

    p = dk("login", "-u", "tester", "--password-stdin", auth_registry.host, input="s3cret\n")
    assert p.returncode == 0 and "Login Succeeded" in p.stdout, p.stderr
    p = dk("pull", ref)
    assert p.returncode == 0, p.stderr
    assert berth("logout", auth_registry.host).stdout == f"Removing login credentials for {auth_registry.host}\n".encode()
    assert auth_registry.host not in json.loads((tmp_path / "dockercfg" / "config.json").read_text())["auths"]
    p = berth("pull", f"{auth_registry.host}/private/other:latest")
    assert p.returncode != 0
    dk("rmi", ref)


def test_registry_mirror(berthd, busybox, registry, layout, skopeo_push):
    from tests.integration.daemon import Daemon
    desc = layout.image([layer_tar([("f", "mirrored", "yes")])])
    layout.tag(desc, "m")
    skopeo_push(layout, "m", f"{registry.host}/library/mirrored:1")

    class MirrorDaemon(Daemon):
        def start(self, timeout: float = 10) -> float:  # type: ignore[override]
            import sys
            import time
            from tests.integration.daemon import ROOT
            t0 = time.monotonic()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "berth.daemon.main", "-H", self.host, "--data-root", str(self.data_root),
                 "--exec-root", str(self.exec_root), "--registry-mirror", f"http://{registry.host}"],
                stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, cwd=ROOT)
            while time.monotonic() - t0 < timeout:
                try:
                    if self.request("GET", "/_ping")[0] == 200:
                        return 0.0
                except OSError:
                    time.sleep(0.02)
            raise RuntimeError("no ping")
    d = MirrorDaemon()
    try:
        d.start()
        status, body = d.request("POST", "/images/create?fromImage=mirrored&tag=1", headers={"X-Registry-Auth": "e30="})
        assert status == 200, body
        assert b"Downloaded newer image for mirrored:1" in body
        img = json.loads(d.request("GET", "/images/mirrored:1/json")[1])
        assert img["RepoTags"] == ["mirrored:1"]
    finally:
        d.cleanup()


def test_registry_is_reachable_only_on_loopback(registry):
    assert registry.host.startswith("127.0.0.1:")
    with urllib.request.urlopen(f"http://{registry.host}/v2/", timeout=5) as r:
        assert r.status == 200
