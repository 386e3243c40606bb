"""Real clients against ``berth registry serve`` in its own process: skopeo (copy in and out,
inspect, list tags, delete) and the oras client (an artifact with a subject, its referrers),
with no auth, Basic and Bearer; TLS; concurrent pushes sharing layers."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import bcrypt
import pytest
from registry_server_support import (Server, busybox_image, call, skopeo, write_oci_layout)

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _skopeo() -> None:
    assert shutil.which("skopeo"), "needs skopeo (.ci/run installs it)"

RULES = """
[[access]]
account = "alice"
repository = "*"
actions = ["*"]
[[access]]
account = "anonymous"
repository = "public/*"
actions = ["pull"]
"""
MODES = ["none", "basic", "bearer"]


def _config(mode: str, tmp: Path) -> str | None:
    if mode == "none":
        return None
    htpasswd = tmp / "htpasswd"
    result = subprocess.run(["htpasswd", "-nbB", "alice", "alice-pw"], capture_output=True,
                            text=True) if shutil.which("htpasswd") else None
    if result is not None and result.returncode == 0:
        htpasswd.write_text(result.stdout)  # the real tool's $2y$ entries
    else:
        htpasswd.write_text("alice:" + bcrypt.hashpw(b"alice-pw", bcrypt.gensalt(5)).decode())
    token = '[auth.token]\nservice = "berth-test"\n' if mode == "bearer" else ""
    return f'[auth]\nhtpasswd = "{htpasswd}"\n{token}{RULES}'


@pytest.fixture(params=MODES)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Server]]:
    s = Server(tmp_path / "root", config=_config(request.param, tmp_path))
    try:
        yield request.param, s
    finally:
        s.stop()


def _creds(mode: str, flag: str) -> list[str]:
    return [] if mode == "none" else [f"--{flag}", "alice:alice-pw"]


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_skopeo_round_trip(server: tuple[str, Server], tmp_path: Path) -> None:
    mode, s = server
    image = busybox_image(b"round trip")
    layout = write_oci_layout(image, tmp_path / "oci")
    dest = f"docker://{s.host}/library/busybox:1.0"
    _ok(skopeo("copy", "--dest-tls-verify=false", *_creds(mode, "dest-creds"),
               f"oci:{layout}:latest", dest))
    info = json.loads(_ok(skopeo("inspect", "--tls-verify=false", *_creds(mode, "creds"), dest)))
    assert info["Digest"] == image.digest and info["RepoTags"] == ["1.0"]
    assert info["Layers"] == [f"sha256:{hashlib.sha256(x).hexdigest()}" for x in image.layers]
    # a second tag through a registry-to-registry copy (blobs mount or are found)
    _ok(skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false",
               *_creds(mode, "src-creds"), *_creds(mode, "dest-creds"), dest,
               f"docker://{s.host}/mirror/busybox:2.0"))
    tags = json.loads(_ok(skopeo("list-tags", "--tls-verify=false", *_creds(mode, "creds"),
                                 f"docker://{s.host}/library/busybox")))
    assert tags["Tags"] == ["1.0"]
    out = tmp_path / "out"
    _ok(skopeo("copy", "--src-tls-verify=false", *_creds(mode, "src-creds"),
               f"docker://{s.host}/mirror/busybox:2.0", f"dir:{out}"))
    for digest, data in image.blobs.items():
        assert (out / digest.split(":")[1]).read_bytes() == data
    assert (out / "manifest.json").read_bytes() == image.manifest
    _ok(skopeo("delete", "--tls-verify=false", *_creds(mode, "creds"), dest))
    r = skopeo("inspect", "--tls-verify=false", *_creds(mode, "creds"), dest)
    assert r.returncode != 0 and "manifest unknown" in r.stderr.lower()
    if mode != "none":
        bad = skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "alice:wrong",
                     f"oci:{layout}:latest", f"docker://{s.host}/library/other:1")
        assert bad.returncode != 0 and ("401" in bad.stderr or "unauthorized" in bad.stderr.lower())
        anon = skopeo("inspect", "--tls-verify=false", f"docker://{s.host}/mirror/busybox:2.0")
        assert anon.returncode != 0
        _ok(skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "alice:alice-pw",
                   f"oci:{layout}:latest", f"docker://{s.host}/public/busybox:1"))
        _ok(skopeo("inspect", "--tls-verify=false", f"docker://{s.host}/public/busybox:1"))
    assert " alice " in s.logs() or mode == "none"


def test_oras_artifact_with_subject(server: tuple[str, Server], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import oras.client as oras_client
    import oras.oci

    mode, s = server
    image = busybox_image()
    layout = write_oci_layout(image, tmp_path / "oci")
    _ok(skopeo("copy", "--dest-tls-verify=false", *_creds(mode, "dest-creds"),
               f"oci:{layout}:latest", f"docker://{s.host}/app/web:v1"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sbom.json").write_text('{"packages": ["busybox"]}')
    client = oras_client.OrasClient(hostname=s.host, insecure=True,
                                    auth_backend="basic" if mode == "basic" else "token")
    if mode != "none":
        client.auth.set_basic_auth("alice", "alice-pw")
    subject = oras.oci.Subject(mediaType="application/vnd.oci.image.manifest.v1+json",
                               digest=image.digest, size=len(image.manifest))
    resp = client.push(f"{s.host}/app/web:sbom", files=["sbom.json"], subject=subject,
                       quiet=True)
    assert resp.status_code == 201 and resp.headers["OCI-Subject"] == image.digest
    artifact_digest = resp.headers["Docker-Content-Digest"]
    pulled = client.pull(f"{s.host}/app/web:sbom", outdir=str(tmp_path / "pulled"))
    assert Path(pulled[0]).read_text() == '{"packages": ["busybox"]}'
    r = client.do_request(f"http://{s.host}/v2/app/web/referrers/{image.digest}")
    assert r.status_code == 200
    refs = r.json()["manifests"]
    assert [m["digest"] for m in refs] == [artifact_digest]
    manifest = client.get_manifest(f"{s.host}/app/web@{artifact_digest}")
    assert manifest["subject"]["digest"] == image.digest
    filtered = client.do_request(
        f"http://{s.host}/v2/app/web/referrers/{image.digest}?artifactType=none/such")
    assert filtered.json()["manifests"] == []


def test_tls(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("needs openssl (.ci/run installs it)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    s = Server(tmp_path / "root", tls=(cert, key))
    try:
        certs = tmp_path / "certs"
        certs.mkdir()
        shutil.copy(cert, certs / "ca.crt")
        layout = write_oci_layout(busybox_image(), tmp_path / "oci")
        _ok(skopeo("copy", "--dest-cert-dir", str(certs), f"oci:{layout}:latest",
                   f"docker://{s.host}/tls/busybox:1"))
        _ok(skopeo("inspect", "--cert-dir", str(certs), f"docker://{s.host}/tls/busybox:1"))
        assert "listening on https://" in s.logs()
    finally:
        s.stop()


def test_concurrent_pushes_share_layers(tmp_path: Path) -> None:
    s = Server(tmp_path / "root")
    try:
        images = [busybox_image(f"image {i}".encode()) for i in range(6)]
        layouts = [write_oci_layout(img, tmp_path / f"oci{i}") for i, img in enumerate(images)]

        def push(i: int) -> subprocess.CompletedProcess[str]:
            return skopeo("copy", "--dest-tls-verify=false", f"oci:{layouts[i]}:latest",
                          f"docker://{s.host}/team{i % 2}/app:v{i}")

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(push, range(6)))
        for r in results:
            _ok(r)
        shared = images[0].layers[0]
        blob = s.root / "blobs" / "sha256" / hashlib.sha256(shared).hexdigest()[:2] / \
            hashlib.sha256(shared).hexdigest()
        assert blob.read_bytes() == shared  # stored once, complete
        total = [p for p in (s.root / "blobs").rglob("*") if p.is_file()]
        # one shared layer + 6 extra layers + 6 configs + 6 manifests
        assert len(total) == 19
        assert list((s.root / "uploads").iterdir()) == []
        for i, img in enumerate(images):
            info = json.loads(_ok(skopeo("inspect", "--tls-verify=false",
                                         f"docker://{s.host}/team{i % 2}/app:v{i}")))
            assert info["Digest"] == img.digest
        assert call(s.host, "GET", "/v2/_catalog").json() == {
            "repositories": ["team0/app", "team1/app"]}
    finally:
        s.stop()
