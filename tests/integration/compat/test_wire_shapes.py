"""Answers compared with what dockerd 20.10 sends on the wire (shared/reference/wire and the
Engine API definition): fields present, their types, and query values read as Docker reads them.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

pytestmark = pytest.mark.root


def test_events_since_zero_replays_history(berthd, client):
    """Docker 20.10+, API 1.41: `docker events --since 0` replays the buffered events: the
    daemon reads since=0 as the Unix epoch, not as "no since"."""
    name = f"ev-{uuid.uuid4().hex[:8]}"
    client.volumes.create(name).remove()
    until = int(time.time()) + 1
    status, body = berthd.request("GET", f"/v1.41/events?since=0&until={until}")
    assert status == 200
    names = [e["Actor"]["ID"] for e in map(json.loads, body.splitlines()) if e["Type"] == "volume"]
    assert names.count(name) == 2  # create and destroy


RESOURCES_1_41 = ("BlkioWeightDevice", "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps",
                  "BlkioDeviceWriteIOps", "CpuCount", "CpuPercent", "IOMaximumIOps", "IOMaximumBandwidth",
                  "DeviceRequests", "KernelMemoryTCP")


@pytest.mark.parametrize("field", RESOURCES_1_41)
def test_inspect_host_config_has_resource_field(client, field):
    """Docker 20.10, API 1.41: container inspect's HostConfig carries every Resources field
    (reference/wire/60-dockerpy-run.md), so `docker inspect -f '{{.HostConfig.X}}'` and
    ``attrs["HostConfig"]["X"]`` work for a container created without them."""
    c = client.containers.create("busybox", "true")
    try:
        hc = client.api.inspect_container(c.id)["HostConfig"]
        assert field in hc
    finally:
        c.remove(force=True)


def test_inspect_host_config_kernel_memory_at_1_41(berthd, client):
    """Docker 20.10, API 1.41: HostConfig has ``KernelMemory`` (0 when unset); deprecated in 1.42."""
    c = client.containers.create("busybox", "true")
    try:
        status, body = berthd.request("GET", f"/v1.41/containers/{c.id}/json")
        assert status == 200
        assert json.loads(body)["HostConfig"]["KernelMemory"] == 0
    finally:
        c.remove(force=True)


def _raw_head(berthd, method: str, path: str, body: bytes) -> str:
    """Send one request with Upgrade: tcp on a fresh socket and return the response head."""
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(str(berthd.sock))
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
              f"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    s.close()
    return head.split(b"\r\n\r\n")[0].decode()


def test_exec_start_101_carries_server_headers(berthd, client):
    """Docker 20.10, API 1.41 (reference/wire/37-exec-it.md): the 101 of exec start carries
    Api-Version, Docker-Experimental, Ostype and Server; the attach 101 does not."""
    c = client.containers.run("busybox", "sleep 30", detach=True)
    try:
        ex = client.api.exec_create(c.id, "true")
        head = _raw_head(berthd, "POST", f"/v1.41/exec/{ex['Id']}/start", b'{"Detach":false,"Tty":false}')
        assert head.startswith("HTTP/1.1 101")
        for h in ("Api-Version:", "Docker-Experimental:", "Ostype: linux", "Server:"):
            assert h in head, head
        attach = _raw_head(berthd, "POST", f"/v1.41/containers/{c.id}/attach?stream=1&stdout=1", b"")
        assert attach.startswith("HTTP/1.1 101") and "Api-Version:" not in attach
    finally:
        c.remove(force=True)
