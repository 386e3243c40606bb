"""``--group-add`` / ``HostConfig.GroupAdd``: supplementary groups of the container's process,
by name (resolved in the image's /etc/group) or by number, as dockerd's getUser adds them.

The test image's /etc/group has ``wheel:x:10:root``, ``www-data:x:33:`` and ``users:x:100:``.
"""

from __future__ import annotations

import json
import uuid

import pytest

pytestmark = pytest.mark.root


def _groups(out: str) -> set[int]:
    return {int(g) for g in out.split()}


def test_group_add_by_name(docker):
    """Docker 20.10+, API 1.41: `--group-add users` puts gid 100 in `id -G`."""
    r = docker("run", "--rm", "--group-add", "users", "busybox", "id", "-G")
    assert r.returncode == 0, r
    assert 100 in _groups(r.stdout)


def test_group_add_by_number_not_in_group_file(docker):
    """Docker 20.10+, API 1.41: a gid that /etc/group does not list is added as is."""
    r = docker("run", "--rm", "--group-add", "4242", "busybox", "id", "-G")
    assert r.returncode == 0, r
    assert 4242 in _groups(r.stdout)


def test_group_add_several_with_user(docker):
    """Docker 20.10+, API 1.41: with `--user www-data`, names and numbers are added after its gid."""
    r = docker("run", "--rm", "--user", "www-data", "--group-add", "users", "--group-add", "777",
               "busybox", "id", "-G")
    assert r.returncode == 0, r
    assert _groups(r.stdout) == {33, 100, 777}


def test_group_add_unknown_name_fails_start(docker):
    """Docker 28, API 1.50: an unknown group name fails the start with getUser's error, bare
    (dockerd finds it while writing the spec, before any runtime runs): `docker: Error response
    from daemon: Unable to find group nosuch: no matching entries in group file`, exit 125."""
    r = docker("run", "--rm", "--group-add", "nosuch", "busybox", "true")
    assert r.returncode == 125, r
    assert r.stderr.startswith("docker: Error response from daemon: Unable to find group nosuch: "
                               "no matching entries in group file\n"), r.stderr


def test_unknown_group_add_is_500(berthd, busybox):
    """Docker 28: the start answers 500 (errdefs.System) with the bare message."""
    body = {"Image": busybox, "Cmd": ["true"], "HostConfig": {"GroupAdd": ["nosuch"]}}
    status, raw = berthd.request("POST", "/containers/create", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    assert status == 201, raw
    cid = json.loads(raw)["Id"]
    try:
        status, raw = berthd.request("POST", f"/containers/{cid}/start")
        assert (status, json.loads(raw)) == (500, {"message": "Unable to find group nosuch: no matching entries "
                                                              "in group file"})
    finally:
        berthd.request("DELETE", f"/containers/{cid}?force=1")


def test_unknown_user_is_bare(docker):
    """Docker 28: `-u nosuch` fails the same way: `unable to find user nosuch: no matching
    entries in passwd file`, no runtime prefix, exit 125."""
    r = docker("run", "--rm", "-u", "nosuch", "busybox", "true")
    assert r.returncode == 125, r
    assert r.stderr.startswith("docker: Error response from daemon: unable to find user nosuch: "
                               "no matching entries in passwd file\n"), r.stderr


def test_group_add_applies_to_exec(docker):
    """Docker 20.10+, API 1.41: `docker exec` processes get the added groups too."""
    name = f"ga-{uuid.uuid4().hex[:8]}"
    assert docker("run", "-d", "--name", name, "--group-add", "wheel", "busybox", "sleep", "60").returncode == 0
    try:
        r = docker("exec", name, "id", "-G")
        assert r.returncode == 0, r
        assert 10 in _groups(r.stdout)
    finally:
        docker("rm", "-f", name)


def test_group_add_applies_to_exec_as_another_user(docker):
    """Docker 20.10+: `docker exec -u 1000` gets the container's numeric --group-add gids too
    (getUser adds GroupAdd for any exec user); berth dropped them once the user was resolved."""
    name = f"ga-{uuid.uuid4().hex[:8]}"
    assert docker("run", "-d", "--name", name, "--group-add", "4242", "busybox", "sleep", "60").returncode == 0
    try:
        r = docker("exec", "-u", "1000", name, "id", "-G")
        assert r.returncode == 0, r
        assert 4242 in _groups(r.stdout)
    finally:
        docker("rm", "-f", name)


def test_group_add_docker_py(berthd, busybox):
    """Docker 20.10+, API 1.41: docker-py `containers.run(group_add=[...])` output shows the gid."""
    import docker

    client = docker.DockerClient(base_url=berthd.host, version="1.41")
    out = client.containers.run(busybox, ["id", "-G"], group_add=["1234", "www-data"], remove=True)
    assert {1234, 33} <= _groups(out.decode())


def test_group_add_unknown_uid_keeps_primary_gid(docker):
    """Docker 23+ (moby getUser puts the primary gid first in AdditionalGids; 20.10 did not):
    `-u 1000 --group-add 50` for a uid with no passwd entry runs with gid 0 and the groups
    0 and 50, so busybox `id` prints `groups=0(root),50`."""
    r = docker("run", "--rm", "-u", "1000", "--group-add", "50", "busybox", "id")
    assert r.returncode == 0, r
    assert r.stdout.strip() == "uid=1000 gid=0(root) groups=0(root),50"
