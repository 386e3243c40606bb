"""A network that does not exist yet at create, as dockerd 28 takes it: the create succeeds
(validateNetworkingConfig: "the referenced network might not exist when the container is
created"), the start looks the network up and fails with a 404, ``failed to set up container
networking: network X not found``, leaving the container "created" with that error and exit code
128 (exitUnknown); once the network exists, the same container starts on it.

Before, berthd answered the create with the 404, and the docker CLI took it for a missing image:
"Unable to find image 'busybox:latest' locally", then a pull from Docker Hub.
"""

from __future__ import annotations

import ipaddress
import json
import uuid

import pytest

pytestmark = pytest.mark.root


def _inspect(docker, ref: str) -> dict:
    r = docker("inspect", ref)
    assert r.returncode == 0, r
    return json.loads(r.stdout)[0]


def test_run_on_a_missing_network_fails_at_start(docker):
    net, name = f"nosuch-{uuid.uuid4().hex[:8]}", f"pend-{uuid.uuid4().hex[:8]}"
    r = docker("run", "--name", name, "--network", net, "busybox", "true")
    try:
        assert r.returncode == 125, r
        assert r.stderr.splitlines()[0] == \
            f"docker: Error response from daemon: failed to set up container networking: network {net} not found"
        assert "Unable to find image" not in r.stderr  # the create went through
        c = _inspect(docker, name)
        assert c["State"]["Status"] == "created"
        assert c["State"]["ExitCode"] == 128
        assert c["State"]["Error"] == f"failed to set up container networking: network {net} not found"
        assert c["HostConfig"]["NetworkMode"] == net
        ep = c["NetworkSettings"]["Networks"][net]
        assert ep["NetworkID"] == "" and ep["IPAddress"] == ""
        r = docker("start", name)
        assert r.returncode == 1 and "network " + net + " not found" in r.stderr, r
    finally:
        docker("rm", "-f", name)


def test_the_container_starts_once_the_network_exists(docker, berthd):
    net, name = f"later-{uuid.uuid4().hex[:8]}", f"pend-{uuid.uuid4().hex[:8]}"
    r = docker("create", "--name", name, "--network", net, "--network-alias", "svc", "busybox", "sleep", "30")
    assert r.returncode == 0, r
    try:
        status, body = berthd.request("POST", f"/containers/{name}/start")
        assert status == 404, body
        assert json.loads(body) == {"message": f"failed to set up container networking: network {net} not found"}
        assert _inspect(docker, name)["NetworkSettings"]["Networks"][net]["Aliases"] == ["svc"]
        assert docker("network", "create", "--subnet", "10.251.7.0/24", net).returncode == 0
        r = docker("start", name)
        assert r.returncode == 0, r
        c = _inspect(docker, name)
        ep = c["NetworkSettings"]["Networks"][net]
        assert ipaddress.ip_address(ep["IPAddress"]) in ipaddress.ip_network("10.251.7.0/24")
        assert ep["NetworkID"] == json.loads(docker("network", "inspect", net).stdout)[0]["Id"]
        assert "svc" in ep["Aliases"]
        assert c["State"]["Error"] == ""
    finally:
        docker("rm", "-f", name)
        docker("network", "rm", net)

