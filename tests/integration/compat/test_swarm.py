"""Swarm endpoints on a node in no swarm answer as a non-swarm dockerd does: 503 with the
messages of moby's daemon/cluster (errNoManager, errNoSwarm), never 404 "page not found"."""

from __future__ import annotations

import json

import docker
import pytest

pytestmark = pytest.mark.root

NOT_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
               'to connect this node to swarm and try again.')
NOT_IN_SWARM = "This node is not part of a swarm"

MANAGER_ENDPOINTS = [
    ("GET", "/swarm"), ("POST", "/swarm/update?version=1"), ("GET", "/swarm/unlockkey"),
    ("POST", "/swarm/unlock"),
    ("GET", "/nodes"), ("GET", "/nodes/abc"), ("DELETE", "/nodes/abc"), ("POST", "/nodes/abc/update?version=1"),
    ("GET", "/services"), ("POST", "/services/create"), ("GET", "/services/abc"), ("DELETE", "/services/abc"),
    ("POST", "/services/abc/update?version=1"), ("GET", "/services/abc/logs?stdout=1"),
    ("GET", "/tasks"), ("GET", "/tasks/abc"), ("GET", "/tasks/abc/logs?stdout=1"),
    ("GET", "/secrets"), ("POST", "/secrets/create"), ("GET", "/secrets/abc"), ("DELETE", "/secrets/abc"),
    ("POST", "/secrets/abc/update?version=1"),
    ("GET", "/configs"), ("POST", "/configs/create"), ("GET", "/configs/abc"), ("DELETE", "/configs/abc"),
    ("POST", "/configs/abc/update?version=1"),
]


@pytest.fixture
def client(berthd):
    c = docker.DockerClient(base_url=berthd.host, timeout=60)
    yield c
    c.close()


@pytest.mark.parametrize("method,path", MANAGER_ENDPOINTS, ids=[f"{m} {p}" for m, p in MANAGER_ENDPOINTS])
def test_manager_endpoint_is_503_not_a_manager(berthd, method, path):
    """Docker 17.06+, API 1.30+: swarm-manager endpoints on a node in no swarm are 503
    "This node is not a swarm manager. Use "docker swarm init" ..."."""
    body = b"{}" if method == "POST" else None
    status, out = berthd.request(method, "/v1.41" + path, body,
                                 {"Content-Type": "application/json"} if body else None)
    assert (status, json.loads(out)) == (503, {"message": NOT_MANAGER})


def test_swarm_leave_is_503_not_part_of_a_swarm(berthd):
    """Docker 1.12+, API 1.24+: POST /swarm/leave with no swarm is 503 "This node is not part of a swarm"."""
    status, out = berthd.request("POST", "/v1.41/swarm/leave?force=1")
    assert (status, json.loads(out)) == (503, {"message": NOT_IN_SWARM})


def test_dockerpy_leave_force_tidies_up(client):
    """Docker 20.10+, API 1.41: docker-py's swarm.leave(force=True) succeeds on a node in no
    swarm (docker-py swallows the 503), as test suites' tidy-up code expects."""
    assert client.swarm.leave(force=True) is True


def test_dockerpy_leave_raises_api_error(client):
    """Docker 20.10+, API 1.41: swarm.leave() without force raises APIError 503 with the message."""
    with pytest.raises(docker.errors.APIError) as e:
        client.swarm.leave()
    assert e.value.status_code == 503 and e.value.explanation == NOT_IN_SWARM


def test_dockerpy_services_list_raises_not_manager(client):
    """Docker 20.10+, API 1.41: services.list() raises APIError 503 "not a swarm manager"."""
    with pytest.raises(docker.errors.APIError) as e:
        client.services.list()
    assert e.value.status_code == 503 and e.value.explanation == NOT_MANAGER


def test_cli_node_ls(docker):
    """Docker 20.10+, API 1.41: `docker node ls` prints dockerd's error and exits 1."""
    r = docker("node", "ls")
    assert r.returncode == 1
    assert r.stderr.strip() == f"Error response from daemon: {NOT_MANAGER}"


def test_info_swarm_inactive(client):
    """Docker 1.12+, API 1.24+: /info says Swarm.LocalNodeState "inactive", no node ID."""
    sw = client.info()["Swarm"]
    assert sw["LocalNodeState"] == "inactive" and sw["NodeID"] == "" and sw["ControlAvailable"] is False
