"""Empty lists are ``[]``, never ``null``, in prune reports and list answers; ``images/load``
of something that is not a tar reports the error in its stream, as dockerd does.

Each prune uses a label filter no object carries, so the answer is empty whatever other tests
left on the shared daemon.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import docker
import pytest

pytestmark = pytest.mark.root


def _nothing() -> dict[str, str]:
    return {"label": f"berth.test.none={uuid.uuid4().hex}"}


def test_volume_prune_deleted_is_empty_list(client):
    """Docker 20.10+, API 1.41: ``VolumesDeleted`` is an array (swagger VolumePruneResponse);
    with nothing pruned it is ``[]``."""
    assert client.volumes.prune(filters=_nothing())["VolumesDeleted"] == []


def test_container_prune_deleted_is_empty_list(client):
    """Docker 20.10+, API 1.41: ``ContainersDeleted`` is an array of IDs; nothing pruned gives ``[]``."""
    assert client.containers.prune(filters=_nothing())["ContainersDeleted"] == []


def test_image_prune_deleted_is_empty_list(client):
    """Docker 20.10+, API 1.41: ``ImagesDeleted`` is an array of delete items; nothing pruned gives ``[]``."""
    assert client.images.prune(filters={"dangling": False, **_nothing()})["ImagesDeleted"] == []


def test_network_prune_deleted_is_empty_list(client):
    """Docker 20.10+, API 1.41: ``NetworksDeleted`` is an array of names; nothing pruned gives ``[]``."""
    assert client.networks.prune(filters=_nothing())["NetworksDeleted"] == []


def test_volume_list_warnings_is_empty_list(berthd, busybox):
    """Docker 20.10+, API 1.41: ``GET /volumes`` answers ``Volumes`` and ``Warnings`` as arrays
    (swagger VolumeListResponse), ``[]`` when empty."""
    q = quote(json.dumps({"name": [uuid.uuid4().hex]}))
    status, body = berthd.request("GET", f"/v1.41/volumes?filters={q}")
    assert status == 200
    assert json.loads(body) == {"Volumes": [], "Warnings": []}


def test_container_changes_none_is_empty_list(client):
    """Docker 20.10+, API 1.41: ``GET /containers/{id}/changes`` of an untouched container is ``[]``."""
    c = client.containers.create("busybox", "true")
    try:
        assert c.diff() == []
    finally:
        c.remove(force=True)


def test_image_history_tags_is_list_on_every_layer(client):
    """Docker 20.10+, API 1.41: every ``GET /images/{name}/history`` entry has ``Tags`` as an
    array (swagger HistoryResponseItem), ``[]`` on the untagged layers below the top."""
    c = client.containers.run("busybox", ["sh", "-c", "echo x > /f"], detach=True)
    c.wait()
    repo = f"berth-hist-{uuid.uuid4().hex[:8]}"
    img = c.commit(repository=repo, tag="t")
    try:
        hist = client.api.history(img.id)
        assert len(hist) >= 2
        assert hist[0]["Tags"] == [f"{repo}:t"]
        assert all(h["Tags"] == [] for h in hist[1:]), hist
    finally:
        c.remove(force=True)
        client.images.remove(img.id, force=True)


def test_load_garbage_raises_image_load_error(client):
    """Docker 20.10+, API 1.41: ``POST /images/load`` of a body that is not a tar answers 200 and
    puts dockerd's untar error in the stream, which docker-py raises as ``ImageLoadError``."""
    with pytest.raises(docker.errors.ImageLoadError) as e:
        client.images.load(b"this is not a tar archive")
    assert str(e.value) == "Error processing tar file(exit status 1): unexpected EOF"


def test_load_garbage_long_body_says_invalid_header(berthd, busybox):
    """Docker 20.10+, API 1.41: a non-tar body of at least one 512-byte block fails on the tar
    header: the stream's last message is ``archive/tar: invalid tar header``."""
    status, body = berthd.request("POST", "/v1.41/images/load?quiet=1", b"x" * 4096,
                                  {"Content-Type": "application/x-tar"})
    assert status == 200
    last = json.loads(body.strip().splitlines()[-1])
    msg = "Error processing tar file(exit status 1): archive/tar: invalid tar header"
    assert last == {"errorDetail": {"message": msg}, "error": msg}


def test_docker_load_garbage_cli_error(docker, tmp_path):
    """Docker 20.10+ CLI: ``docker load`` of a non-tar prints dockerd's untar error and exits 1."""
    f = tmp_path / "junk.tar"
    f.write_bytes(b"junk")
    r = docker("load", "-i", str(f))
    assert r.returncode == 1
    assert "Error processing tar file(exit status 1): unexpected EOF" in r.stderr


def test_system_df_lists_volumes_with_usage(client):
    """Docker 20.10+, API 1.41: ``GET /system/df`` lists every volume in ``Volumes`` with its
    ``UsageData`` (``Size`` in bytes, ``RefCount`` of containers using it)."""
    name = f"berth-df-{uuid.uuid4().hex[:8]}"
    vol = client.volumes.create(name)
    holder = None
    try:
        client.containers.run("busybox", ["sh", "-c", "head -c 5000 /dev/zero > /d/f"],
                              volumes={name: {"bind": "/d"}}, remove=True)
        holder = client.containers.create("busybox", "true", volumes={name: {"bind": "/d"}})
        got = [v for v in client.df()["Volumes"] if v["Name"] == name]
        assert len(got) == 1, client.df()["Volumes"]
        assert got[0]["UsageData"] == {"Size": 5000, "RefCount": 1}
    finally:
        if holder is not None:
            holder.remove(force=True)
        vol.remove(force=True)
