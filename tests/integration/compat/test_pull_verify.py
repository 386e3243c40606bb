"""A pull checks what a registry sends: the manifest bytes against ``Docker-Content-Digest`` and
against a requested digest, and the media types of the config and layers before downloading.
A failed check leaves nothing in the store. The registry is a loopback fake that lies on purpose.
"""

from __future__ import annotations

import uuid

import pytest

from tests.integration.compat.lying_registry import LyingRegistry, make_image, sha256

pytestmark = pytest.mark.root


@pytest.fixture
def registry():
    r = LyingRegistry()
    yield r
    r.close()


def _repo() -> str:
    return f"lie/{uuid.uuid4().hex[:10]}"


def _stored(berthd, *blobs: bytes) -> list[str]:
    """Which of these blobs are in berthd's content store."""
    root = berthd.data_root / "image" / "blobs" / "sha256"
    return [sha256(b) for b in blobs if (root / sha256(b).removeprefix("sha256:")).exists()]


def test_pull_of_an_honest_registry_works(docker, registry, berthd):
    """Docker 20.10+, API 1.41: the fake registry serves a pullable image (control for the lies below)."""
    img, repo = make_image("honest"), _repo()
    registry.publish(repo, "v1", img)
    ref = f"{registry.host}/{repo}:v1"
    r = docker("pull", ref)
    try:
        assert r.returncode == 0, r.stderr
    finally:
        docker("rmi", ref)


def test_pull_wrong_content_digest_header_fails(docker, registry):
    """Docker 20.10+, API 1.41: a ``Docker-Content-Digest`` that is not the digest of the
    manifest bytes fails the pull (dockerd resolves the tag to that digest, then the fetched
    bytes do not verify against it)."""
    img, repo = make_image("lying header"), _repo()
    registry.publish(repo, "v1", img, digest_header=sha256(b"some other manifest"))
    r = docker("pull", f"{registry.host}/{repo}:v1")
    assert r.returncode != 0
    assert f"unexpected commit digest {sha256(img.manifest)}, expected {sha256(b'some other manifest')}" in r.stderr


def test_pull_wrong_content_digest_header_stores_nothing(docker, registry, berthd):
    """Docker 20.10+, API 1.41: after a manifest fails verification nothing is stored: no image,
    and no blob was even fetched."""
    img, repo = make_image("lying header, nothing stored"), _repo()
    registry.publish(repo, "v1", img, digest_header=sha256(b"not it"))
    ref = f"{registry.host}/{repo}:v1"
    docker("pull", ref)
    assert docker("image", "inspect", ref).returncode != 0
    assert registry.blob_requests() == []
    assert _stored(berthd, img.config, img.layer) == []


def test_pull_by_digest_bytes_must_hash_to_it(docker, registry, berthd):
    """Docker 20.10+, API 1.41: pulling ``name@sha256:X`` fails when the registry answers bytes
    that do not hash to X, even with a header that claims X."""
    img, other, repo = make_image("wanted"), make_image("substituted"), _repo()
    want = sha256(img.manifest)
    registry.publish(repo, want, other, digest_header=want)
    r = docker("pull", f"{registry.host}/{repo}@{want}")
    assert r.returncode != 0
    assert want in r.stderr and "verification failed" in r.stderr
    assert _stored(berthd, other.config, other.layer) == []


def test_pull_unknown_layer_media_type_refused(docker, registry, berthd):
    """Docker 20.10+, API 1.41: a layer whose media type is not an OCI or Docker one is refused
    with ``unsupported media type <type>``, before it is downloaded."""
    img, repo = make_image("odd layer"), _repo()
    img.layer_type = "application/x-berth-unknown-layer"
    registry.publish(repo, "v1", img)
    ref = f"{registry.host}/{repo}:v1"
    r = docker("pull", ref)
    assert r.returncode != 0
    assert "unsupported media type application/x-berth-unknown-layer" in r.stderr
    assert docker("image", "inspect", ref).returncode != 0
    assert _stored(berthd, img.layer) == []


def test_pull_unknown_config_media_type_refused(docker, registry):
    """Docker 20.10+, API 1.41: a config whose media type is not an OCI or Docker one is refused
    with ``unsupported media type <type>``."""
    img, repo = make_image("odd config"), _repo()
    img.config_type = "application/x-berth-unknown-config"
    registry.publish(repo, "v1", img)
    r = docker("pull", f"{registry.host}/{repo}:v1")
    assert r.returncode != 0
    assert "unsupported media type application/x-berth-unknown-config" in r.stderr
    assert registry.blob_requests() == []


def test_pull_layer_bytes_must_hash_to_descriptor(docker, registry, berthd):
    """Docker 20.10+, API 1.41: a layer blob whose bytes do not hash to the manifest's digest
    fails with ``filesystem layer verification failed for digest``; no image is created."""
    img, repo = make_image("tampered layer"), _repo()
    registry.publish(repo, "v1", img)
    registry.serve(f"/v2/{repo}/blobs/{sha256(img.layer)}", make_image("evil").layer,
                   {"Content-Type": "application/octet-stream"})
    ref = f"{registry.host}/{repo}:v1"
    r = docker("pull", ref)
    assert r.returncode != 0
    assert f"filesystem layer verification failed for digest {sha256(img.layer)}" in r.stderr
    assert docker("image", "inspect", ref).returncode != 0
    assert _stored(berthd, img.layer) == []
