"""``/containers/{id}/archive`` (docker cp, docker-py put_archive/get_archive) as dockerd does it.

dockerd copies in and out of a container in every state: for one that is not running it mounts
the rootfs, the volumes and binds, and the hostname/hosts/resolv.conf files. PUT keeps the tar's
numeric uid/gid and mode; ``copyUIDGID`` gives everything to the container's ``User``.
"""

from __future__ import annotations

import io
import tarfile
import urllib.parse
import uuid

import docker
import pytest

pytestmark = pytest.mark.root


@pytest.fixture
def made(client):
    """Containers (and volumes) made by a test, removed after it."""
    cts: list = []
    vols: list = []
    yield cts, vols
    for c in cts:
        c.remove(force=True)
    for v in vols:
        v.remove(force=True)


def _in_state(client, made, state: str, **kw):
    if state == "created":
        c = client.containers.create("busybox", ["sleep", "300"], **kw)
    elif state == "exited":
        c = client.containers.run("busybox", ["true"], detach=True, **kw)
        c.wait()
    else:
        c = client.containers.run("busybox", ["sleep", "300"], detach=True, **kw)
    made[0].append(c)
    return c


def _tar(name: str, data: bytes = b"payload\n", uid: int = 0, gid: int = 0, mode: int = 0o644,
         uname: str = "", gname: str = "", dir: bool = False) -> bytes:
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w") as t:
        ti = tarfile.TarInfo(name)
        ti.uid, ti.gid, ti.mode, ti.uname, ti.gname = uid, gid, mode, uname, gname
        if dir:
            ti.type = tarfile.DIRTYPE
            t.addfile(ti)
        else:
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    return b.getvalue()


def _member(c, path: str) -> tuple[tarfile.TarInfo, bytes]:
    bits, _ = c.get_archive(path)
    t = tarfile.open(fileobj=io.BytesIO(b"".join(bits)))
    m = t.getmembers()[0]
    f = t.extractfile(m)
    return m, f.read() if f else b""


@pytest.mark.parametrize("state", ["created", "exited", "running"])
def test_put_then_get_in_every_state(client, made, state):
    """Docker 1.8+, API 1.20: PUT, HEAD and GET /archive work whether or not the container runs."""
    c = _in_state(client, made, state)
    assert c.put_archive("/tmp", _tar("in.txt"))
    _, data = _member(c, "/tmp/in.txt")
    assert data == b"payload\n"
    assert client.api.head(client.api._url("/containers/{0}/archive", c.id),
                           params={"path": "/tmp/in.txt"}).status_code == 200


@pytest.mark.parametrize("state", ["created", "exited", "running"])
def test_put_archive_keeps_tar_uid_gid(client, made, state):
    """Docker 17.06+, API 1.30: without copyUIDGID, PUT keeps the tar's numeric uid and gid."""
    c = _in_state(client, made, state)
    assert c.put_archive("/tmp", _tar("owned.txt", uid=1234, gid=5678, uname="daemon", gname="daemon"))
    m, _ = _member(c, "/tmp/owned.txt")
    assert (m.uid, m.gid) == (1234, 5678)


def test_put_archive_keeps_mode_bits(client, made):
    """Docker 20.10+, API 1.41: PUT keeps the tar's mode, setuid and group/other write included."""
    c = _in_state(client, made, "created")
    assert c.put_archive("/tmp", _tar("suid", mode=0o4755) + b"")
    assert c.put_archive("/tmp", _tar("open", mode=0o777))
    assert _member(c, "/tmp/suid")[0].mode & 0o7777 == 0o4755
    assert _member(c, "/tmp/open")[0].mode & 0o7777 == 0o777


def test_put_archive_copy_uidgid_gives_files_to_container_user(berthd, client, made):
    """Docker 17.06+, API 1.30: copyUIDGID=1 chowns what is copied to the container's User."""
    c = _in_state(client, made, "created", user="2000:3000")
    q = urllib.parse.urlencode({"path": "/tmp", "copyUIDGID": "1"})
    status, body = berthd.request("PUT", f"/containers/{c.id}/archive?{q}", _tar("mine.txt", uid=1234, gid=5678),
                                  {"Content-Type": "application/x-tar"})
    assert status == 200, body
    m, _ = _member(c, "/tmp/mine.txt")
    assert (m.uid, m.gid) == (2000, 3000)


def test_docker_cp_archive_flag_uses_container_user(berthd, docker, made, client, tmp_path):
    """Docker 17.06+, API 1.30: `docker cp -a` into a container with --user: owned by that user."""
    c = _in_state(client, made, "created", user="2000:3000")
    src = tmp_path / "f.txt"
    src.write_text("x")
    r = docker("cp", "-a", str(src), f"{c.id}:/tmp/")
    assert r.returncode == 0, r.stderr
    m, _ = _member(c, "/tmp/f.txt")
    assert (m.uid, m.gid) == (2000, 3000)


@pytest.mark.parametrize("state", ["created", "exited"])
def test_get_archive_of_stopped_container_sees_volume(client, made, state):
    """Docker 1.8+, API 1.20: a stopped container's named volume is visible to cp."""
    v = client.volumes.create("cpvol-" + uuid.uuid4().hex[:8])
    made[1].append(v)
    w = client.containers.run("busybox", ["sh", "-c", "echo in-volume > /data/v.txt"], detach=True,
                              volumes={v.name: {"bind": "/data", "mode": "rw"}})
    made[0].append(w)
    w.wait()
    c = _in_state(client, made, state, volumes={v.name: {"bind": "/data", "mode": "rw"}})
    assert _member(c, "/data/v.txt")[1] == b"in-volume\n"


def test_put_archive_into_stopped_container_volume_lands_in_volume(client, made):
    """Docker 1.8+, API 1.20: PUT into a stopped container's volume path writes the volume."""
    v = client.volumes.create("cpvol-" + uuid.uuid4().hex[:8])
    made[1].append(v)
    c = _in_state(client, made, "exited", volumes={v.name: {"bind": "/data", "mode": "rw"}})
    assert c.put_archive("/data", _tar("put.txt"))
    out = client.containers.run("busybox", ["cat", "/data/put.txt"], remove=True,
                                volumes={v.name: {"bind": "/data", "mode": "ro"}})
    assert out == b"payload\n"


def test_get_archive_of_exited_container_hostname_file(client, made):
    """Docker 1.8+, API 1.20: an exited container's /etc/hostname is the one it ran with."""
    c = _in_state(client, made, "exited", hostname="cp-host")
    assert _member(c, "/etc/hostname")[1] == b"cp-host\n"


def test_put_archive_into_readonly_bind_is_refused(client, made, tmp_path):
    """Docker 1.8+, API 1.20: PUT under a read-only bind fails: mounted volume is marked read-only."""
    c = _in_state(client, made, "exited", volumes={str(tmp_path): {"bind": "/ro", "mode": "ro"}})
    with pytest.raises(docker.errors.APIError) as e:
        c.put_archive("/ro", _tar("x.txt"))
    assert "mounted volume is marked read-only" in str(e.value.explanation)
    assert not (tmp_path / "x.txt").exists()


def test_put_archive_into_volume_of_readonly_rootfs_container(client, made):
    """Docker 1.8+, API 1.20: with --read-only, a rw volume still takes a PUT (the rootfs does not)."""
    v = client.volumes.create("cpvol-" + uuid.uuid4().hex[:8])
    made[1].append(v)
    c = _in_state(client, made, "running", read_only=True, volumes={v.name: {"bind": "/data", "mode": "rw"}})
    assert c.put_archive("/data", _tar("ok.txt"))
    with pytest.raises(docker.errors.APIError) as e:
        c.put_archive("/tmp", _tar("no.txt"))
    assert "container rootfs is marked read-only" in str(e.value.explanation)


def test_put_archive_no_overwrite_dir_non_dir(berthd, client, made):
    """Docker 1.8+, API 1.20: noOverwriteDirNonDir refuses a file over a directory, in moby's words."""
    c = _in_state(client, made, "created")
    assert c.put_archive("/tmp", _tar("d", dir=True, mode=0o755))
    q = urllib.parse.urlencode({"path": "/tmp", "noOverwriteDirNonDir": "true"})
    status, body = berthd.request("PUT", f"/containers/{c.id}/archive?{q}", _tar("d"),
                                  {"Content-Type": "application/x-tar"})
    assert status >= 400
    assert b'cannot overwrite directory \\"/tmp/d\\" with non-directory \\"/tmp\\"' in body
