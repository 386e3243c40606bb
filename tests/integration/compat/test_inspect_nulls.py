"""null, [] and {} in ``GET /containers/{id}/json`` as dockerd writes them: it echoes what the
client sent (the CLI's full body has ``"Dns": []``, docker-py's short one has no ``Dns``),
turns the CLI's ``MemorySwappiness: -1`` into null, takes the image's ``Volumes`` when the
request's map is empty, and omits the omitempty HostConfig fields. The references are the
wire traces 42-inspect (docker CLI 28) and 60-dockerpy-run (docker-py 7), dockerd 20.10, API 1.41.
"""

from __future__ import annotations

import json
import subprocess

import pytest

pytestmark = pytest.mark.root

ECHOED = ("Dns", "DnsOptions", "DnsSearch", "Devices", "Ulimits")


def _inspect(berthd, cid: str) -> dict:
    status, body = berthd.request("GET", f"/v1.41/containers/{cid}/json")
    assert status == 200, body
    return json.loads(body)


@pytest.fixture
def created(berthd, busybox):
    made: list[str] = []
    yield made
    for cid in made:
        berthd.request("DELETE", f"/containers/{cid}?force=1")


def test_dockerpy_short_body_leaves_lists_null(berthd, created):
    """Docker 20.10, API 1.41 (60-dockerpy-run): docker-py's create body has no Dns, Devices,
    Ulimits or PortBindings, and inspect shows each as null."""
    body = {"Tty": False, "OpenStdin": False, "StdinOnce": False, "AttachStdin": False, "AttachStdout": True,
            "AttachStderr": True, "Cmd": ["echo", "hi"], "Image": "busybox", "NetworkDisabled": False,
            "HostConfig": {"NetworkMode": "default"}}
    status, raw = berthd.request("POST", "/v1.41/containers/create", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    assert status == 201, raw
    created.append(json.loads(raw)["Id"])
    hc = _inspect(berthd, created[-1])["HostConfig"]
    assert {k: hc[k] for k in (*ECHOED, "PortBindings")} == dict.fromkeys((*ECHOED, "PortBindings"))


def test_cli_body_lists_stay_empty_and_swappiness_null(berthd, docker, created):
    """Docker 20.10, API 1.41 (42-inspect): the CLI sends [] and {} and gets them back;
    its MemorySwappiness -1 is null; Config.Volumes {} over an image without volumes is null;
    Init, Mounts, Tmpfs and Annotations (omitempty) are absent."""
    env_version = {"DOCKER_API_VERSION": "1.41"}
    r = subprocess.run(["/usr/local/bin/docker", "create", "busybox", "true"], capture_output=True, text=True,
                       env={**berthd.env, **env_version})
    assert r.returncode == 0, r
    created.append(r.stdout.strip())
    out = _inspect(berthd, created[-1])
    hc = out["HostConfig"]
    assert {k: hc[k] for k in ECHOED} == dict.fromkeys(ECHOED, [])
    assert hc["PortBindings"] == {}
    assert hc["MemorySwappiness"] is None
    assert out["Config"]["Volumes"] is None
    assert not {"Init", "Mounts", "Tmpfs", "Annotations"} & hc.keys()


def test_cli_values_are_kept(docker, created):
    """Docker 20.10+: what the CLI set is shown as given (--dns, --ulimit, -v, --memory-swappiness 10)."""
    r = docker("create", "--dns", "127.0.0.1", "--ulimit", "nofile=100:200", "-v", "/data",
               "--memory-swappiness", "10", "busybox", "true")
    assert r.returncode == 0, r
    created.append(r.stdout.strip())
    out = json.loads(docker("inspect", created[-1]).stdout)[0]
    assert out["HostConfig"]["Dns"] == ["127.0.0.1"]
    assert out["HostConfig"]["Ulimits"] == [{"Name": "nofile", "Hard": 200, "Soft": 100}]
    assert out["HostConfig"]["MemorySwappiness"] == 10
    assert out["Config"]["Volumes"] == {"/data": {}}
