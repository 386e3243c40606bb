"""The registry server's Content-Type headers are the exact media types, byte for byte, as
distribution's registry sends them and OCI conformance clients compare them: no
``; charset=utf-8`` on an index, a manifest or a blob.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "registry_server"))
from registry_server_support import (OCI_INDEX, OCI_MANIFEST, InProcServer, busybox_image,  # noqa: E402
                                     call, make_image, push_image, sha256)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[InProcServer]:
    s = InProcServer(tmp_path / "root")
    try:
        yield s
    finally:
        s.stop()


def _index(img_digest: str, size: int, media_type: str) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": [
        {"mediaType": OCI_MANIFEST if media_type == OCI_INDEX else DOCKER_MANIFEST, "digest": img_digest,
         "size": size, "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()


def test_referrers_content_type_is_exact(srv: InProcServer) -> None:
    """OCI distribution-spec 1.1 (registry 3.0, Docker 25+ clients): ``GET /v2/<name>/referrers/<digest>``
    answers ``Content-Type: application/vnd.oci.image.index.v1+json`` exactly."""
    img = busybox_image()
    push_image(srv.host, "r", img)
    r = call(srv.host, "GET", f"/v2/r/referrers/{img.digest}")
    assert r.status == 200
    assert r.headers["content-type"] == OCI_INDEX


def test_referrers_filtered_content_type_is_exact(srv: InProcServer) -> None:
    """OCI distribution-spec 1.1: a referrers answer filtered by ``artifactType`` carries the
    exact index media type too."""
    r = call(srv.host, "GET", f"/v2/r/referrers/{sha256(b'no subject')}?artifactType=application/x.sig")
    assert r.status == 200
    assert r.headers["content-type"] == OCI_INDEX


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_manifest_content_type_is_its_media_type(srv: InProcServer, method: str, media_type: str) -> None:
    """registry 2.8 (Docker 20.10+ pulls, API 1.41): a manifest is served with its own media type
    as the Content-Type, nothing appended."""
    img = make_image([{"a": b"x"}], media_type=media_type)
    assert push_image(srv.host, "m", img, tag="t").status == 201
    r = call(srv.host, method, "/v2/m/manifests/t", headers={"Accept": media_type})
    assert r.status == 200
    assert r.headers["content-type"] == media_type


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
def test_index_content_type_is_its_media_type(srv: InProcServer, media_type: str) -> None:
    """registry 2.8 (Docker 20.10+ pulls, API 1.41): an index or manifest list is served with its
    own media type as the Content-Type."""
    child = make_image([{"a": b"y"}], media_type=OCI_MANIFEST if media_type == OCI_INDEX else DOCKER_MANIFEST)
    assert push_image(srv.host, "i", child, tag=None).status == 201
    body = _index(child.digest, len(child.manifest), media_type)
    assert call(srv.host, "PUT", "/v2/i/manifests/multi", body, {"Content-Type": media_type}).status == 201
    r = call(srv.host, "GET", "/v2/i/manifests/multi", headers={"Accept": media_type})
    assert r.status == 200
    assert r.headers["content-type"] == media_type


def test_blob_content_type_is_octet_stream(srv: InProcServer) -> None:
    """registry 2.8 (Docker 20.10+ pulls, API 1.41; reference/wire/21-registry-pull): blobs are
    ``application/octet-stream`` exactly."""
    img = busybox_image()
    push_image(srv.host, "b", img)
    r = call(srv.host, "GET", f"/v2/b/blobs/{sha256(img.config)}")
    assert r.status == 200
    assert r.headers["content-type"] == "application/octet-stream"
