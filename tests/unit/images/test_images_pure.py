"""Pure parts: references, manifests and platforms, challenges, progress bars, config files."""

from __future__ import annotations

import base64
import json

import pytest

from berth.client import credentials
from berth.engine.progress import progress_bar
from berth.errors import NotFound, Unsupported
from berth.oci import manifest as mf
from berth.oci import reference
from berth.registry.client import auth
from berth.registry.client.options import Options


@pytest.mark.parametrize("text,full,familiar", [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("127.0.0.1:5000/bb:v1", "127.0.0.1:5000/bb:v1", "127.0.0.1:5000/bb:v1"),
    ("localhost/a/b", "localhost/a/b:latest", "localhost/a/b:latest"),
    ("user/repo:tag", "docker.io/user/repo:tag", "user/repo:tag"),
    ("busybox@sha256:" + "a" * 64, "docker.io/library/busybox@sha256:" + "a" * 64, "busybox@sha256:" + "a" * 64),
])
def test_references(text, full, familiar):
    r = reference.parse(text)
    assert str(r) == full and r.familiar == familiar


def test_progress_bar_matches_docker_captures():
    assert progress_bar(105, 105) == "[==================================================>]     105B/105B"
    assert progress_bar(19968, 1984172) == "[>                                                  ]  19.97kB/1.984MB"
    assert progress_bar(2129920, 1984172) == "[==================================================>]   2.13MB"


def test_platform_choice_and_schema1():
    idx = mf.Index(schemaVersion=2, manifests=[
        mf.Descriptor(mf.MT_OCI_MANIFEST, "sha256:" + "1" * 64, 1, platform=mf.Platform("arm", "linux", "v7")),
        mf.Descriptor(mf.MT_OCI_MANIFEST, "sha256:" + "2" * 64, 1, platform=mf.Platform("amd64", "linux")),
        mf.Descriptor(mf.MT_OCI_MANIFEST, "sha256:" + "3" * 64, 1, platform=mf.Platform("arm64", "linux", "v8")),
    ])
    assert mf.choose(idx, mf.parse_platform("linux/amd64")).digest.endswith("2" * 64)
    assert mf.choose(idx, mf.parse_platform("linux/arm64")).digest.endswith("3" * 64)
    assert mf.choose(idx, mf.parse_platform("linux/arm/v7")).digest.endswith("1" * 64)
    with pytest.raises(NotFound):
        mf.choose(idx, mf.parse_platform("linux/s390x"))
    with pytest.raises(Unsupported):
        mf.kind_of(b'{"schemaVersion": 1, "name": "x"}', None)
    assert mf.kind_of(b'{"schemaVersion":2,"manifests":[]}', "") == mf.MT_OCI_INDEX


def test_challenge_and_registry_auth():
    scheme, p = auth.parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                                     'scope="repository:library/busybox:pull"')
    assert scheme == "bearer" and p["realm"] == "https://auth.docker.io/token"
    assert p["scope"] == "repository:library/busybox:pull"
    assert auth.decode_registry_auth("e30=").empty
    hdr = base64.urlsafe_b64encode(json.dumps({"username": "u", "password": "p"}).encode()).decode().rstrip("=")
    c = auth.decode_registry_auth(hdr)
    assert (c.username, c.password) == ("u", "p")


def test_config_file_roundtrip(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"auths": {}, "psFormat": "keep me"}))
    credentials.store("127.0.0.1:5000", "u", "p", path=p)
    credentials.store("docker.io", "hub", "pw", path=p)
    doc = json.loads(p.read_text())
    assert doc["psFormat"] == "keep me"
    assert doc["auths"]["127.0.0.1:5000"]["auth"] == base64.b64encode(b"u:p").decode()
    assert "https://index.docker.io/v1/" in doc["auths"]
    assert credentials.lookup("127.0.0.1:5000", p)["password"] == "p"
    hub = credentials.lookup("docker.io", p)
    assert hub is not None and hub["username"] == "hub"
    header = credentials.registry_auth_header(hub)
    assert auth.decode_registry_auth(header) == auth.Credentials(
        "hub", "pw", serveraddress="https://index.docker.io/v1/")
    assert auth.decode_registry_auth(credentials.registry_auth_header(None)).empty
    assert credentials.erase("127.0.0.1:5000", p) and credentials.lookup("127.0.0.1:5000", p) is None


def test_insecure_registries():
    o = Options(insecure=["myreg:5000", "10.0.0.0/8"])
    assert o.is_insecure("127.0.0.1:5000") and o.is_insecure("localhost:1") and o.is_insecure("myreg:5000")
    assert o.is_insecure("10.1.2.3:443") and not o.is_insecure("registry-1.docker.io")
