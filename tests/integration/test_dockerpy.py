"""The engine core through docker-py 7 (the Python SDK) against a real berthd."""

from __future__ import annotations

import docker
import pytest

pytestmark = pytest.mark.root


def test_run_returns_output(client):
    assert client.containers.run("busybox", "echo hello", remove=True) == b"hello\n"


def test_run_nonzero_raises_container_error(client):
    with pytest.raises(docker.errors.ContainerError) as e:
        client.containers.run("busybox", ["sh", "-c", "echo oops >&2; exit 4"], remove=True, stderr=True)
    assert e.value.exit_status == 4


def test_detach_logs_wait_remove(client):
    c = client.containers.run("busybox", ["sh", "-c", "echo one; echo two"], detach=True, labels={"t": "py"})
    assert c.wait()["StatusCode"] == 0
    assert c.logs() == b"one\ntwo\n"
    c.reload()
    assert c.status == "exited" and c.labels == {"t": "py"}
    assert c.id in [x.id for x in client.containers.list(all=True, filters={"label": "t=py"})]
    c.remove()
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(c.id)


def test_stop_kill_and_attrs(client):
    c = client.containers.run("busybox", "sleep 60", detach=True, mem_limit="32m", nano_cpus=500_000_000)
    try:
        c.reload()
        assert c.status == "running"
        assert c.attrs["HostConfig"]["Memory"] == 32 * 1024 * 1024
        assert c.attrs["HostConfig"]["NanoCpus"] == 500_000_000
        assert c.name in [x.name for x in client.containers.list()]
        c.stop(timeout=1)
        assert c.wait()["StatusCode"] == 137
    finally:
        c.remove(force=True)


def test_logs_stream(client):
    c = client.containers.run("busybox", ["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.2; done"], detach=True)
    try:
        lines = b"".join(c.logs(stream=True, follow=True))
        assert lines == b"1\n2\n3\n"
    finally:
        c.remove(force=True)


def test_images_and_errors(client):
    imgs = client.images.list()
    assert any("busybox:latest" in i.tags for i in imgs)
    img = client.images.get("busybox")
    assert img.attrs["Config"]["Cmd"] == ["sh"]
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("nosuchimage:latest")
    with pytest.raises(docker.errors.NotFound):
        client.containers.get("nosuchcontainer")
    with pytest.raises(docker.errors.APIError) as e:
        client.containers.create("busybox", "true", name="bad name")
    assert e.value.status_code == 400


def test_version_and_info(client):
    v = client.version()
    assert v["ApiVersion"] and v["Os"] == "linux"
    info = client.info()
    assert info["Driver"] == "overlay2"
    assert client.ping() is True
