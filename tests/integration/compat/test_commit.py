"""``docker commit``: the new image's Parent is the container's image, and Container /
ContainerConfig record the container where the API version still has them (dropped in 1.45).
"""

from __future__ import annotations

import json
import uuid

import pytest

pytestmark = pytest.mark.root


@pytest.fixture
def committed(docker, berthd):
    """A container that wrote a file, committed to a fresh tag -> (container id, image id, base id)."""
    name = f"cm-{uuid.uuid4().hex[:8]}"
    tag = f"committed-{uuid.uuid4().hex[:8]}:v1"
    r = docker("run", "--name", name, "-e", "FROM_RUN=1", "busybox", "sh", "-c", "echo hi > /made")
    assert r.returncode == 0, r
    c = json.loads(docker("inspect", name).stdout)[0]
    r = docker("commit", name, tag)
    assert r.returncode == 0, r
    image_id = r.stdout.strip()
    yield c["Id"], image_id, c["Image"]
    docker("rm", "-f", name)
    docker("rmi", "-f", tag)


def _image(berthd, version: str, ref: str) -> dict:
    status, raw = berthd.request("GET", f"/{version}/images/{ref}/json")
    assert status == 200, raw
    return json.loads(raw)


def test_commit_parent_is_container_image(berthd, committed):
    """Docker 20.10+, API 1.41: image inspect Parent = the container's image ID."""
    _, image_id, base = committed
    assert _image(berthd, "v1.41", image_id)["Parent"] == base


def test_commit_parent_in_image_list(berthd, committed):
    """Docker 20.10+, API 1.41: GET /images/json ParentId = the container's image ID."""
    _, image_id, base = committed
    images = json.loads(berthd.request("GET", "/v1.41/images/json")[1])
    assert next(i for i in images if i["Id"] == image_id)["ParentId"] == base


def test_commit_container_field(berthd, committed):
    """Docker 20.10+, API 1.41: image inspect Container = the committed container's ID."""
    cid, image_id, _ = committed
    assert _image(berthd, "v1.41", image_id)["Container"] == cid


def test_commit_container_config(berthd, committed):
    """Docker 20.10+, API 1.41: ContainerConfig = the container's Config (its Cmd and Env)."""
    _, image_id, _ = committed
    cc = _image(berthd, "v1.41", image_id)["ContainerConfig"]
    assert cc["Cmd"] == ["sh", "-c", "echo hi > /made"]
    assert "FROM_RUN=1" in cc["Env"]


def test_commit_container_fields_gone_in_1_45(berthd, committed):
    """Docker 26+, API 1.45: Container and ContainerConfig are omitted; Parent stays."""
    _, image_id, base = committed
    out = _image(berthd, "v1.45", image_id)
    assert "Container" not in out and "ContainerConfig" not in out
    assert out["Parent"] == base

