"""A bind's propagation checked at start as dockerd 28 checks it (moby daemon/oci_linux.go
WithMounts: ensureShared for shared/rshared, ensureSharedOrSlave for slave/rslave; an error
there is a System error: 500, and `docker run` exits 125), and the daemon root's rule at
create (daemon/volumes_linux.go validateBindDaemonRoot, API >= 1.32: a source in the daemon
root, or holding it, is rslave unless asked; only rslave or rshared may be asked: 400).

This host's / is a private mount: the sources the tests want shared or slave are bind mounts
they make and remove.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.root


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def _mountpoint(path: Path) -> str:
    return subprocess.run(["findmnt", "-n", "-o", "TARGET", "-T", str(path)], check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def shared_and_slave(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(a shared bind mount, a slave of it), both removed afterwards."""
    shared, slave = tmp_path / "shared", tmp_path / "slave"
    shared.mkdir()
    slave.mkdir()
    made: list[Path] = []
    try:
        _sh("mount", "--bind", str(shared), str(shared))
        made.append(shared)
        _sh("mount", "--make-private", str(shared))
        _sh("mount", "--make-shared", str(shared))
        _sh("mount", "--bind", str(shared), str(slave))
        made.append(slave)
        _sh("mount", "--make-slave", str(slave))
        yield shared, slave
    finally:
        for m in reversed(made):
            subprocess.run(["umount", "-l", str(m)], check=False)


def _mnt_line(docker, *args: str) -> str:
    r = docker("run", "--rm", *args, "busybox", "grep", " /mnt ", "/proc/self/mountinfo")
    assert r.returncode == 0, r
    return r.stdout


def test_rshared_and_rslave_on_sources_that_can(docker, shared_and_slave):
    """Docker 28, API 1.50: a shared source carries rshared (the container's /mnt is shared),
    a slave one rslave (the container's /mnt is a slave); --mount bind-propagation the same."""
    shared, slave = shared_and_slave
    assert "shared:" in _mnt_line(docker, "-v", f"{shared}:/mnt:rshared")
    assert "master:" in _mnt_line(docker, "-v", f"{slave}:/mnt:rslave")
    assert "master:" in _mnt_line(docker, "--mount", f"type=bind,src={shared},dst=/mnt,bind-propagation=rslave")


def test_refused_at_start_on_a_private_source(docker, berthd, tmp_path):
    """Docker 28, API 1.50: the create succeeds, the start answers 500 `path <src> is mounted on
    <mountpoint> but it is not a shared mount` (`... not a shared or slave mount` for rslave),
    `docker run` prints it and exits 125; the container stays created, with State.Error."""
    import docker as dockerpy

    mp = _mountpoint(tmp_path)
    r = docker("run", "--rm", "-v", f"{tmp_path}:/mnt:rshared", "busybox", "true")
    assert r.returncode == 125, r
    assert (f"Error response from daemon: path {tmp_path} is mounted on {mp} but it is not a shared mount"
            in r.stderr), r.stderr
    r = docker("run", "--rm", "--mount", f"type=bind,src={tmp_path},dst=/mnt,bind-propagation=rslave",
               "busybox", "true")
    assert r.returncode == 125, r
    assert (f"Error response from daemon: path {tmp_path} is mounted on {mp} but it is not a shared or slave mount"
            in r.stderr), r.stderr
    client = dockerpy.APIClient(base_url=berthd.host)
    name = f"prop-{uuid.uuid4().hex[:8]}"
    c = client.create_container("busybox", "true", name=name,
                                host_config=client.create_host_config(binds=[f"{tmp_path}:/mnt:rslave"]))
    try:
        with pytest.raises(dockerpy.errors.APIError) as e:
            client.start(c["Id"])
        assert e.value.status_code == 500
        assert e.value.explanation == f"path {tmp_path} is mounted on {mp} but it is not a shared or slave mount"
        state = client.inspect_container(c["Id"])["State"]
        assert state["Status"] == "created" and "not a shared or slave mount" in state["Error"]
    finally:
        client.remove_container(c["Id"], force=True)


def test_daemon_root_sources(docker, berthd):
    """Docker 28 (validateBindDaemonRoot, and WithMounts' fallback): a source in the daemon
    root gets rslave when none is asked and starts on a private mount; asking rprivate there
    is refused at create (400; `docker run` exits 125); asking rslave is checked at start."""
    src = berthd.data_root / f"bindsrc-{uuid.uuid4().hex[:8]}"
    src.mkdir()
    name = f"prop-{uuid.uuid4().hex[:8]}"
    try:
        r = docker("run", "--name", name, "-v", f"{src}:/mnt", "busybox", "true")
        assert r.returncode == 0, r
        mounts = json.loads(docker("inspect", name).stdout)[0]["Mounts"]
        assert [m["Propagation"] for m in mounts] == ["rslave"]
        r = docker("run", "--rm", "--mount", f"type=bind,src={src},dst=/mnt,bind-propagation=rprivate", "busybox",
                   "true")
        assert r.returncode == 125, r
        assert ('Error response from daemon: invalid mount config: must use either propagation mode "rslave" or '
                f'"rshared" when mount source is within the daemon root, daemon root: "{berthd.data_root}", '
                f'bind mount source: "{src}", propagation: "rprivate"') in r.stderr, r.stderr
        r = docker("run", "--rm", "-v", f"{src}:/mnt:rslave", "busybox", "true")
        assert r.returncode == 125 and "but it is not a shared or slave mount" in r.stderr, r
    finally:
        docker("rm", "-f", name)
        src.rmdir()
