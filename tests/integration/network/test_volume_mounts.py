"""Volumes and mounts through the real docker CLI: named, anonymous (and rm -v), the image's
VOLUME with copy-up, binds (read-only enforced), --mount, --tmpfs, the local driver's tmpfs,
--volumes-from, --read-only with writable volumes, in-use protection, ls/inspect/prune."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

pytestmark = pytest.mark.root


def uid() -> str:
    return uuid.uuid4().hex[:8]


def ok(r):
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.fixture
def cleanup(docker):
    names: list[tuple[str, str]] = []
    yield names
    for kind, name in reversed(names):
        if kind == "container":
            docker("rm", "-f", "-v", name)
        elif kind == "image":
            docker("rmi", "-f", name)
        else:
            docker(kind, "rm", "-f", name)


def test_named_volume_outlives_its_container(docker, cleanup):
    vol = f"data-{uid()}"
    cleanup.append(("volume", vol))
    ok(docker("run", "--rm", "-v", f"{vol}:/data", "busybox", "sh", "-c", "echo kept > /data/f"))
    assert ok(docker("run", "--rm", "-v", f"{vol}:/data:ro", "busybox", "cat", "/data/f")) == "kept\n"
    info = json.loads(ok(docker("volume", "inspect", vol)))[0]
    assert info["Driver"] == "local" and info["Mountpoint"].endswith(f"/volumes/{vol}/_data")
    assert vol in ok(docker("volume", "ls", "-q")).split()


def test_volume_in_use_cannot_be_removed(docker, cleanup):
    vol, name = f"busy-{uid()}", f"c-{uid()}"
    cleanup += [("volume", vol), ("container", name)]
    ok(docker("create", "--name", name, "-v", f"{vol}:/data", "busybox", "true"))
    r = docker("volume", "rm", vol)
    assert r.returncode != 0 and "volume is in use" in r.stderr
    ok(docker("rm", name))
    ok(docker("volume", "rm", vol))


def test_anonymous_volume_and_rm_v(docker, cleanup):
    name = f"anon-{uid()}"
    cleanup.append(("container", name))
    ok(docker("run", "--name", name, "-v", "/scratch", "busybox", "sh", "-c", "echo x > /scratch/f"))
    mounts = json.loads(ok(docker("inspect", name)))[0]["Mounts"]
    assert len(mounts) == 1 and mounts[0]["Type"] == "volume" and mounts[0]["Destination"] == "/scratch"
    vol = mounts[0]["Name"]
    assert vol in ok(docker("volume", "ls", "-q")).split()
    ok(docker("rm", "-v", name))
    assert vol not in ok(docker("volume", "ls", "-q")).split()


def test_image_volume_gets_the_image_content(docker, berthd, cleanup):
    tag = f"volimg-{uid()}:latest"
    cleanup.append(("image", tag))
    tar = berthd.base / "rootfs.tar"
    ok(docker("import", "--change", 'VOLUME ["/etc"]', "--change", 'CMD ["sh"]', str(tar), tag))
    name = f"cu-{uid()}"
    cleanup.append(("container", name))
    out = ok(docker("run", "--name", name, tag, "sh", "-c", "grep -c root /etc/passwd; cat /etc/hostname; "
                    "grep -c localhost /etc/hosts"))
    words = out.split()
    assert words[0] == "1" and words[-1] == "2", out   # image content, and /etc/hosts still on top
    info = json.loads(ok(docker("inspect", name)))[0]
    vol = [m for m in info["Mounts"] if m["Destination"] == "/etc"][0]
    assert os.path.exists(os.path.join(vol["Source"], "passwd"))
    # --rm removes the anonymous volume with the container.
    before = set(ok(docker("volume", "ls", "-q")).split())
    ok(docker("run", "--rm", tag, "true"))
    assert set(ok(docker("volume", "ls", "-q")).split()) == before


@pytest.mark.host_userns("the bind's source is under pytest's root-only (0700) tmp dir: the container's root "
                        "is not the host's and cannot search it")
def test_bind_mounts_read_only_enforced(docker, tmp_path):
    (tmp_path / "in.txt").write_text("from host\n")
    out = ok(docker("run", "--rm", "-v", f"{tmp_path}:/mnt:ro,Z", "busybox", "sh", "-c",
                    "cat /mnt/in.txt; touch /mnt/new 2>&1 || echo denied"))
    assert "from host" in out and "Read-only file system" in out and "denied" in out
    # rslave needs a shared or slave source (dockerd checks at start); this host's / is private
    subprocess.run(["mount", "--bind", str(tmp_path), str(tmp_path)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(tmp_path)], check=True)
        ok(docker("run", "--rm", "-v", f"{tmp_path}:/mnt:rw,rslave", "busybox", "sh", "-c", "echo back > /mnt/out.txt"))
    finally:
        subprocess.run(["umount", "-l", str(tmp_path)], check=False)
    assert (tmp_path / "out.txt").read_text() == "back\n"
    out = ok(docker("run", "--rm", "--mount", f"type=bind,source={tmp_path},target=/b,readonly",
                    "busybox", "sh", "-c", "cat /b/in.txt; touch /b/x 2>&1 || true"))
    assert "from host" in out and "Read-only file system" in out
    r = docker("run", "--rm", "--mount", f"type=bind,source={tmp_path}/missing,target=/b", "busybox", "true")
    assert r.returncode != 0 and "bind source path does not exist" in r.stderr


def test_tmpfs_mounts(docker, cleanup):
    out = ok(docker("run", "--rm", "--tmpfs", "/run/x:size=1m", "--mount", "type=tmpfs,target=/t,tmpfs-size=2097152",
                    "busybox", "sh", "-c", "grep -E ' /run/x | /t ' /proc/mounts"))
    lines = out.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("tmpfs ") for line in lines), out
    assert "size=1024k" in out and "size=2048k" in out
    vol = f"tv-{uid()}"
    cleanup.append(("volume", vol))
    ok(docker("volume", "create", "--driver", "local", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
              "--opt", "o=size=3m", vol))
    out = ok(docker("run", "--rm", "-v", f"{vol}:/v", "busybox", "grep", " /v ", "/proc/mounts"))
    assert out.startswith("tmpfs /v tmpfs") and "size=3072k" in out


def test_volumes_from_and_read_only_root(docker, cleanup):
    src, vol = f"src-{uid()}", f"vf-{uid()}"
    cleanup += [("container", src), ("volume", vol)]
    ok(docker("create", "--name", src, "-v", f"{vol}:/shared", "busybox", "true"))
    ok(docker("run", "--rm", "--volumes-from", src, "busybox", "sh", "-c", "echo via > /shared/f"))
    out = ok(docker("run", "--rm", "--read-only", "--volumes-from", f"{src}:ro", "--tmpfs", "/tmp",
                    "--mount", f"type=volume,source={vol},target=/rw",
                    "busybox", "sh", "-c", "cat /shared/f; touch /x 2>&1; touch /shared/y 2>&1; "
                                           "touch /tmp/ok && echo tmp-ok; touch /rw/ok && echo vol-ok"))
    assert out.count("Read-only file system") == 2 and "via" in out and "tmp-ok" in out and "vol-ok" in out


def test_volume_ls_filters_and_prune(docker, cleanup):
    keep, drop = f"keep-{uid()}", f"drop-{uid()}"
    cleanup += [("volume", keep), ("volume", drop)]
    ok(docker("volume", "create", "--label", "tier=a", keep))
    ok(docker("volume", "create", drop))
    assert ok(docker("volume", "ls", "-q", "--filter", "label=tier=a")).split() == [keep]
    assert keep in ok(docker("volume", "ls", "-q", "--filter", "dangling=true")).split()
    r = docker("volume", "create", "--driver", "nosuch", f"x-{uid()}")
    assert r.returncode != 0 and "not found" in r.stderr
    # API >= 1.42: without -a, prune takes anonymous volumes only; named ones stay.
    ok(docker("volume", "prune", "-f", "--filter", "label!=tier=a"))
    names = ok(docker("volume", "ls", "-q")).split()
    assert keep in names and drop in names
    out = ok(docker("volume", "prune", "-a", "-f", "--filter", "label!=tier=a"))
    names = ok(docker("volume", "ls", "-q")).split()
    assert keep in names and drop not in names, out
