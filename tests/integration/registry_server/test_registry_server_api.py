"""HTTP-level tests of every Distribution endpoint and its error paths, against the real app
on a loopback port (in this process: no root, no other programs)."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Iterator

import pytest
from registry_server_support import (OCI_INDEX, OCI_MANIFEST, InProcServer, busybox_image, call,
                                     make_image, push_image, sha256)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[InProcServer]:
    s = InProcServer(tmp_path / "root", config="[storage]\nmanifest_max_size = 65536\n")
    try:
        yield s
    finally:
        s.stop()


def test_base_endpoint(srv: InProcServer) -> None:
    r = call(srv.host, "GET", "/v2/")
    assert r.status == 200 and r.json() == {}
    assert r.headers["docker-distribution-api-version"] == "registry/2.0"
    assert call(srv.host, "HEAD", "/v2/").status == 200


def test_unknown_path_and_method(srv: InProcServer) -> None:
    assert call(srv.host, "GET", "/v2/a/nothing").status == 404
    r = call(srv.host, "POST", "/v2/a/tags/list")
    assert r.status == 405 and r.codes() == ["UNSUPPORTED"]


@pytest.mark.parametrize("name", ["Upper", "a//b", "-a", "a" * 256, "a/_b", "a..b"])
def test_name_invalid(srv: InProcServer, name: str) -> None:
    r = call(srv.host, "GET", f"/v2/{name}/tags/list")
    assert r.status == 400 and r.codes() == ["NAME_INVALID"]


def test_monolithic_upload_and_blob_reads(srv: InProcServer) -> None:
    data = bytes(range(256)) * 1000
    d = sha256(data)
    r = call(srv.host, "POST", f"/v2/lib/x/blobs/uploads/?digest={d}", data)
    assert r.status == 201
    assert r.headers["location"] == f"/v2/lib/x/blobs/{d}"
    assert r.headers["docker-content-digest"] == d
    h = call(srv.host, "HEAD", f"/v2/lib/x/blobs/{d}")
    assert h.status == 200 and h.headers["content-length"] == str(len(data)) and h.body == b""
    assert h.headers["docker-content-digest"] == d
    g = call(srv.host, "GET", f"/v2/lib/x/blobs/{d}")
    assert g.status == 200 and g.body == data
    part = call(srv.host, "GET", f"/v2/lib/x/blobs/{d}", headers={"Range": "bytes=10-19"})
    assert part.status == 206 and part.body == data[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    # another repository does not see it
    assert call(srv.host, "GET", f"/v2/lib/y/blobs/{d}").codes() == ["BLOB_UNKNOWN"]
    assert call(srv.host, "HEAD", f"/v2/lib/y/blobs/{d}").status == 404


def test_wrong_digest_stores_nothing(srv: InProcServer, tmp_path: Path) -> None:
    wrong = sha256(b"something else")
    r = call(srv.host, "POST", f"/v2/a/blobs/uploads/?digest={wrong}", b"payload")
    assert r.status == 400 and r.codes() == ["DIGEST_INVALID"]
    root = tmp_path / "root"
    assert [p for p in (root / "blobs").rglob("*") if p.is_file()] == []
    assert list((root / "uploads").iterdir()) == []
    bad = call(srv.host, "POST", "/v2/a/blobs/uploads/?digest=sha256:xyz", b"payload")
    assert bad.status == 400 and bad.codes() == ["DIGEST_INVALID"]


def test_post_then_put_and_status(srv: InProcServer) -> None:
    r = call(srv.host, "POST", "/v2/a/blobs/uploads/")
    assert r.status == 202 and r.headers["range"] == "0-0"
    loc = r.headers["location"]
    assert r.headers["docker-upload-uuid"] in loc
    s = call(srv.host, "GET", loc)
    assert s.status == 204 and s.headers["range"] == "0-0"
    data = b"hello world"
    p = call(srv.host, "PUT", f"{loc}?digest={sha256(data)}", data,
             {"Content-Type": "application/octet-stream"})
    assert p.status == 201 and p.headers["docker-content-digest"] == sha256(data)
    assert call(srv.host, "GET", loc).codes() == ["BLOB_UPLOAD_UNKNOWN"]
    assert call(srv.host, "PUT", f"{loc}?digest={sha256(data)}").status == 404


def test_chunked_patch_in_order(srv: InProcServer) -> None:
    data = b"0123456789" * 1000
    loc = call(srv.host, "POST", "/v2/a/blobs/uploads/").headers["location"]
    r = call(srv.host, "PATCH", loc, data[:4000], {"Content-Range": "0-3999"})
    assert r.status == 202 and r.headers["range"] == "0-3999"
    # out of order: 416 and the current range
    bad = call(srv.host, "PATCH", loc, data[5000:6000], {"Content-Range": "5000-5999"})
    assert bad.status == 416 and bad.headers["range"] == "0-3999"
    r = call(srv.host, "PATCH", loc, data[4000:], {"Content-Range": f"4000-{len(data) - 1}"})
    assert r.status == 202 and r.headers["range"] == f"0-{len(data) - 1}"
    status = call(srv.host, "GET", loc)
    assert status.status == 204 and status.headers["range"] == f"0-{len(data) - 1}"
    done = call(srv.host, "PUT", f"{loc}?digest={sha256(data)}")
    assert done.status == 201
    assert call(srv.host, "GET", f"/v2/a/blobs/{sha256(data)}").body == data


def test_streamed_patch_chunked_encoding(srv: InProcServer) -> None:
    import http.client

    pieces = [bytes([i]) * 300_000 for i in range(8)]
    loc = call(srv.host, "POST", "/v2/a/blobs/uploads/").headers["location"]
    conn = http.client.HTTPConnection(srv.host, timeout=30)
    conn.request("PATCH", loc, body=iter(pieces), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    total = sum(map(len, pieces))
    assert resp.status == 202 and resp.getheader("Range") == f"0-{total - 1}"
    assert call(srv.host, "PUT", f"{loc}?digest={sha256(b''.join(pieces))}").status == 201


def test_cancel_and_foreign_uploads(srv: InProcServer) -> None:
    loc = call(srv.host, "POST", "/v2/a/blobs/uploads/").headers["location"]
    other = loc.replace("/v2/a/", "/v2/b/")
    assert call(srv.host, "GET", other).codes() == ["BLOB_UPLOAD_UNKNOWN"]
    assert call(srv.host, "DELETE", loc).status == 204
    assert call(srv.host, "GET", loc).codes() == ["BLOB_UPLOAD_UNKNOWN"]
    assert call(srv.host, "DELETE", loc).status == 404
    assert call(srv.host, "GET", "/v2/a/blobs/uploads/../../etc").status in (400, 404)
    assert call(srv.host, "PATCH", "/v2/a/blobs/uploads/not-a-uuid", b"x").status == 404
    put = call(srv.host, "PUT", call(srv.host, "POST", "/v2/a/blobs/uploads/")
               .headers["location"])
    assert put.status == 400 and put.codes() == ["DIGEST_INVALID"]


def test_cross_repository_mount(srv: InProcServer) -> None:
    data = b"shared layer"
    d = sha256(data)
    call(srv.host, "POST", f"/v2/src/blobs/uploads/?digest={d}", data)
    r = call(srv.host, "POST", f"/v2/dst/blobs/uploads/?mount={d}&from=src")
    assert r.status == 201 and r.headers["location"] == f"/v2/dst/blobs/{d}"
    assert call(srv.host, "HEAD", f"/v2/dst/blobs/{d}").status == 200
    # unknown in the source: a plain upload starts instead
    miss = call(srv.host, "POST", f"/v2/dst2/blobs/uploads/?mount={sha256(b'no')}&from=src")
    assert miss.status == 202 and "/blobs/uploads/" in miss.headers["location"]


def test_blob_delete(srv: InProcServer) -> None:
    d = sha256(b"x")
    call(srv.host, "POST", f"/v2/a/blobs/uploads/?digest={d}", b"x")
    r = call(srv.host, "DELETE", f"/v2/a/blobs/{d}")
    assert r.status == 202
    assert call(srv.host, "HEAD", f"/v2/a/blobs/{d}").status == 404
    assert call(srv.host, "DELETE", f"/v2/a/blobs/{d}").codes() == ["BLOB_UNKNOWN"]


def test_manifest_put_get_head_delete(srv: InProcServer) -> None:
    img = busybox_image()
    r = push_image(srv.host, "lib/bb", img, tag="v1")
    assert r.status == 201
    assert r.headers["docker-content-digest"] == img.digest
    assert r.headers["location"] == f"/v2/lib/bb/manifests/{img.digest}"
    for ref in ("v1", img.digest):
        g = call(srv.host, "GET", f"/v2/lib/bb/manifests/{ref}",
                 headers={"Accept": OCI_MANIFEST})
        assert g.status == 200 and g.body == img.manifest
        assert g.headers["content-type"] == OCI_MANIFEST
        assert g.headers["docker-content-digest"] == img.digest
        h = call(srv.host, "HEAD", f"/v2/lib/bb/manifests/{ref}")
        assert h.status == 200 and h.headers["content-length"] == str(len(img.manifest))
        assert h.headers["docker-content-digest"] == img.digest
    # an OCI manifest is not served to a client that accepts only Docker's types
    no = call(srv.host, "GET", "/v2/lib/bb/manifests/v1", headers={"Accept": DOCKER_MANIFEST})
    assert no.status == 404 and no.codes() == ["MANIFEST_UNKNOWN"]
    assert call(srv.host, "GET", "/v2/lib/bb/manifests/v1",
                headers={"Accept": f"{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.9"}).status == 200
    # tag delete leaves the manifest; digest delete removes it and its tags
    push_image(srv.host, "lib/bb", img, tag="v2")
    assert call(srv.host, "DELETE", "/v2/lib/bb/manifests/v1").status == 202
    assert call(srv.host, "GET", "/v2/lib/bb/manifests/v1").codes() == ["MANIFEST_UNKNOWN"]
    assert call(srv.host, "GET", f"/v2/lib/bb/manifests/{img.digest}").status == 200
    assert call(srv.host, "DELETE", f"/v2/lib/bb/manifests/{img.digest}").status == 202
    assert call(srv.host, "GET", "/v2/lib/bb/manifests/v2").codes() == ["MANIFEST_UNKNOWN"]
    assert call(srv.host, "GET", f"/v2/lib/bb/manifests/{img.digest}").status == 404
    assert call(srv.host, "DELETE", f"/v2/lib/bb/manifests/{img.digest}").status == 404
    assert call(srv.host, "GET", "/v2/lib/bb/tags/list").json() == {"name": "lib/bb", "tags": []}


def test_docker_schema2_and_index(srv: InProcServer) -> None:
    img = make_image([{"a": b"1"}], media_type=DOCKER_MANIFEST)
    assert push_image(srv.host, "d", img, tag="s2").status == 201
    g = call(srv.host, "GET", "/v2/d/manifests/s2", headers={"Accept": DOCKER_MANIFEST})
    assert g.headers["content-type"] == DOCKER_MANIFEST
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": DOCKER_MANIFEST, "digest": img.digest, "size": len(img.manifest),
         "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    r = call(srv.host, "PUT", "/v2/d/manifests/multi", index, {"Content-Type": OCI_INDEX})
    assert r.status == 201
    # an index whose child is not in the repository
    r = call(srv.host, "PUT", "/v2/other/manifests/multi", index, {"Content-Type": OCI_INDEX})
    assert r.status == 400 and r.codes() == ["MANIFEST_BLOB_UNKNOWN"]


def test_manifest_errors(srv: InProcServer) -> None:
    img = busybox_image()
    r = call(srv.host, "PUT", "/v2/e/manifests/t", img.manifest, {"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and r.codes() == ["MANIFEST_BLOB_UNKNOWN"]
    assert r.json()["errors"][0]["detail"]["digest"] in img.blobs
    push_image(srv.host, "e", img)
    cases = [
        (b"not json", OCI_MANIFEST),
        (img.manifest, "application/vnd.docker.distribution.manifest.v1+prettyjws"),
        (img.manifest, DOCKER_MANIFEST),   # mediaType in the body says OCI
        (json.dumps({"schemaVersion": 1}).encode(), OCI_MANIFEST),
        (img.manifest, "application/vnd.example.unknown+json"),
    ]
    for body, ctype in cases:
        r = call(srv.host, "PUT", "/v2/e/manifests/t", body, {"Content-Type": ctype})
        assert r.status == 400 and r.codes() == ["MANIFEST_INVALID"], (ctype, r.body)
    r = call(srv.host, "PUT", f"/v2/e/manifests/{sha256(b'other')}", img.manifest,
             {"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and r.codes() == ["DIGEST_INVALID"]
    r = call(srv.host, "PUT", f"/v2/e/manifests/{img.digest}", img.manifest,
             {"Content-Type": OCI_MANIFEST})
    assert r.status == 201
    big = json.dumps({"schemaVersion": 2, "annotations": {"x": "y" * 70000}}).encode()
    r = call(srv.host, "PUT", "/v2/e/manifests/big", big, {"Content-Type": OCI_MANIFEST})
    assert r.status == 413 and r.codes() == ["SIZE_INVALID"]
    r = call(srv.host, "PUT", "/v2/e/manifests/bad!tag", img.manifest,
             {"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and r.codes() == ["MANIFEST_INVALID"]
    assert call(srv.host, "GET", "/v2/e/manifests/nope").codes() == ["MANIFEST_UNKNOWN"]
    assert call(srv.host, "GET", "/v2/none/manifests/latest").status == 404


def test_tags_pagination(srv: InProcServer) -> None:
    img = busybox_image()
    for tag in ("c", "a", "b", "e", "d"):
        push_image(srv.host, "p", img, tag=tag)
    assert call(srv.host, "GET", "/v2/p/tags/list").json()["tags"] == list("abcde")
    r = call(srv.host, "GET", "/v2/p/tags/list?n=2")
    assert r.json()["tags"] == ["a", "b"]
    assert r.headers["link"] == '</v2/p/tags/list?n=2&last=b>; rel="next"'
    r = call(srv.host, "GET", "/v2/p/tags/list?n=2&last=b")
    assert r.json()["tags"] == ["c", "d"]
    r = call(srv.host, "GET", "/v2/p/tags/list?n=2&last=d")
    assert r.json()["tags"] == ["e"] and "link" not in r.headers
    assert call(srv.host, "GET", "/v2/p/tags/list?n=0").json()["tags"] == []
    assert call(srv.host, "GET", "/v2/p/tags/list?n=-1").status == 400
    r = call(srv.host, "GET", "/v2/missing/tags/list")
    assert r.status == 404 and r.codes() == ["NAME_UNKNOWN"]


def test_catalog(srv: InProcServer) -> None:
    img = busybox_image()
    for repo in ("z", "a/b", "m"):
        push_image(srv.host, repo, img)
    assert call(srv.host, "GET", "/v2/_catalog").json() == {"repositories": ["a/b", "m", "z"]}
    r = call(srv.host, "GET", "/v2/_catalog?n=1")
    assert r.json() == {"repositories": ["a/b"]}
    assert r.headers["link"] == '</v2/_catalog?n=1&last=a%2Fb>; rel="next"'
    assert call(srv.host, "GET", "/v2/_catalog?n=5&last=a/b").json()["repositories"] == ["m", "z"]


def test_referrers(srv: InProcServer) -> None:
    img = busybox_image()
    push_image(srv.host, "r", img)
    empty = b"{}"
    call(srv.host, "POST", f"/v2/r/blobs/uploads/?digest={sha256(empty)}", empty)
    sig_layer = b"signature bytes"
    call(srv.host, "POST", f"/v2/r/blobs/uploads/?digest={sha256(sig_layer)}", sig_layer)

    def artifact(kind: str) -> bytes:
        return json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": kind,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                       "digest": sha256(empty), "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": sha256(sig_layer),
                        "size": len(sig_layer)}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": img.digest,
                        "size": len(img.manifest)},
            "annotations": {"kind": kind}}).encode()

    sig, sbom = artifact("application/vnd.example.sig"), artifact("application/vnd.example.sbom")
    for body in (sig, sbom):
        r = call(srv.host, "PUT", f"/v2/r/manifests/{sha256(body)}", body,
                 {"Content-Type": OCI_MANIFEST})
        assert r.status == 201 and r.headers["oci-subject"] == img.digest
    r = call(srv.host, "GET", f"/v2/r/referrers/{img.digest}")
    assert r.status == 200 and r.headers["content-type"].startswith(OCI_INDEX)
    index = r.json()
    assert index["mediaType"] == OCI_INDEX
    got = {m["digest"]: m for m in index["manifests"]}
    assert set(got) == {sha256(sig), sha256(sbom)}
    assert got[sha256(sig)]["artifactType"] == "application/vnd.example.sig"
    assert got[sha256(sig)]["annotations"] == {"kind": "application/vnd.example.sig"}
    assert got[sha256(sig)]["size"] == len(sig)
    f = call(srv.host, "GET", f"/v2/r/referrers/{img.digest}?artifactType=application/vnd.example.sbom")
    assert [m["digest"] for m in f.json()["manifests"]] == [sha256(sbom)]
    assert f.headers["oci-filters-applied"] == "artifactType"
    call(srv.host, "DELETE", f"/v2/r/manifests/{sha256(sig)}")
    r = call(srv.host, "GET", f"/v2/r/referrers/{img.digest}")
    assert [m["digest"] for m in r.json()["manifests"]] == [sha256(sbom)]
    assert call(srv.host, "GET", f"/v2/r/referrers/{sha256(b'none')}").json()["manifests"] == []
    assert call(srv.host, "GET", "/v2/r/referrers/sha256:bad").codes() == ["DIGEST_INVALID"]


def test_interrupted_upload_resumed_then_abandoned(srv: InProcServer) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    loc = call(srv.host, "POST", "/v2/a/blobs/uploads/").headers["location"]
    half = len(data) // 2
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.sendall(f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n"
                  "Content-Type: application/octet-stream\r\n\r\n".encode() + data[:half])
    # the client went away halfway: what arrived is kept, and the upload goes on from there

    deadline = time.monotonic() + 5
    while True:
        st = call(srv.host, "GET", loc)
        if st.headers["range"] == f"0-{half - 1}" or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert st.status == 204 and st.headers["range"] == f"0-{half - 1}"
    r = call(srv.host, "PATCH", loc, data[half:], {"Content-Range": f"{half}-{len(data) - 1}"})
    assert r.status == 202
    assert call(srv.host, "PUT", f"{loc}?digest={sha256(data)}").status == 201
    # abandoned: the sweeper removes it once it is older than the limit
    loc2 = call(srv.host, "POST", "/v2/a/blobs/uploads/").headers["location"]
    call(srv.host, "PATCH", loc2, b"partial")
    removed = srv.registry.uploads.sweep(max_age=0.0)
    assert loc2.rsplit("/", 1)[1] in removed
    assert call(srv.host, "GET", loc2).codes() == ["BLOB_UPLOAD_UNKNOWN"]


def test_metrics(srv: InProcServer) -> None:
    data = b"m" * 1000
    call(srv.host, "POST", f"/v2/a/blobs/uploads/?digest={sha256(data)}", data)
    call(srv.host, "GET", f"/v2/a/blobs/{sha256(data)}")
    call(srv.host, "GET", "/v2/a/blobs/" + sha256(b"none"))
    text = call(srv.host, "GET", "/metrics").body.decode()
    assert 'berth_registry_http_requests_total{method="POST",code="201"} 1' in text
    assert 'berth_registry_http_requests_total{method="GET",code="404"} 1' in text
    assert "berth_registry_blob_upload_duration_seconds_count 1" in text
    received = int(re.search(r"^berth_registry_http_request_bytes_total (\d+)$", text, re.M)[1])
    sent = int(re.search(r"^berth_registry_http_response_bytes_total (\d+)$", text, re.M)[1])
    assert received >= 1000 and sent >= 1000


def test_read_only(tmp_path: Path) -> None:
    s = InProcServer(tmp_path / "root", read_only=True)
    try:
        r = call(s.host, "POST", "/v2/a/blobs/uploads/")
        assert r.status == 405 and r.codes() == ["UNSUPPORTED"]
        assert call(s.host, "DELETE", f"/v2/a/manifests/{sha256(b'x')}").status == 405
        assert call(s.host, "GET", "/v2/a/tags/list").codes() == ["NAME_UNKNOWN"]
    finally:
        s.stop()


def test_delete_disabled(tmp_path: Path) -> None:
    s = InProcServer(tmp_path / "root", config="[storage]\ndelete = false\n")
    try:
        push_image(s.host, "a", busybox_image())
        r = call(s.host, "DELETE", "/v2/a/manifests/latest")
        assert r.status == 405 and r.codes() == ["UNSUPPORTED"]
    finally:
        s.stop()
