"""Rootless berthd with a delegated cgroup v2 subtree (issue 15): the test makes one under the
host's cgroup2 mount, chowns it to a throwaway user and starts that user's berthd inside it,
as systemd's Delegate=yes would hand one over. Containers
then get cgroups of their own there (pause, stats), and limits work with the controllers the
subtree has; on a hybrid host (memory, pids and cpu bound to v1) those skip, saying where each
controller is. A subtree whose parent withholds the controllers (made the same way, on any
host) shows what a limit without its controller does: discarded with dockerd's warning, or
``--cpus`` refused."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.rootless.user import RootlessDaemon, RootlessUser, need_tools, rootfs_tar

pytestmark = pytest.mark.root


def _cgroup2_mount() -> Path:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        if post.startswith("cgroup2 "):
            return Path(pre.split()[4])
    pytest.fail("no cgroup2 mount on this host")


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    for d in [top, *[p for p in top.rglob("*") if p.is_dir()]]:
        os.chown(d, uid, gid)
        for f in ("cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
            os.chown(d / f, uid, gid)


def _remove_tree(top: Path) -> None:
    for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [top]:
        for _ in range(50):
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                (d / "cgroup.kill").write_text("1") if (d / "cgroup.kill").exists() else None
                time.sleep(0.1)


def _delegate(top: Path, sub: Path, tar: Path) -> Iterator[tuple[RootlessDaemon, Path]]:
    """A throwaway user's berthd started in ``sub`` (made here, chowned to the user), as
    systemd's Delegate=yes would hand it over; ``top`` (``sub`` or a parent of it) goes after."""
    sub.mkdir(parents=True)
    try:
        with RootlessUser.make() as u:  # its processes go before the subtree does
            _chown_tree(sub, u.uid, u.gid)
            d = RootlessDaemon(u)
            d.cgroup = sub  # berthd starts in the delegated cgroup, as under systemd --user
            # (it moves itself into a "daemon" leaf and puts containers under "berth")
            try:
                d.start()
                d.import_busybox(tar)
                yield d, sub
            finally:
                d.stop()
    finally:
        _remove_tree(top)


@pytest.fixture(scope="module")
def delegated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RootlessDaemon, Path]]:
    need_tools()
    sub = _cgroup2_mount() / f"brl-{uuid.uuid4().hex[:8]}"
    yield from _delegate(sub, sub, rootfs_tar(tmp_path_factory.mktemp("rootfs")))


@pytest.fixture(scope="module")
def withheld(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RootlessDaemon, Path]]:
    """A delegated subtree without memory, pids, cpu, cpuset and io, on any host: its parent (the
    test's, root's) enables none of them in its cgroup.subtree_control."""
    need_tools()
    top = _cgroup2_mount() / f"brl-{uuid.uuid4().hex[:8]}"
    sub = top / "user"
    top.mkdir()
    (top / "cgroup.subtree_control").write_text("")  # a new cgroup enables nothing: stated here
    assert not set((top / "cgroup.subtree_control").read_text().split()) & set(WITHHELD)
    yield from _delegate(top, sub, rootfs_tar(tmp_path_factory.mktemp("rootfs")))


WITHHELD = ("memory", "pids", "cpu", "cpuset", "io")


def lacks(controller: str) -> str:
    """Why this host's cgroup2 cannot give ``controller`` ("" when it can): it is bound to a
    cgroup v1 hierarchy (where), or the kernel has none."""
    mount = _cgroup2_mount()
    have = (mount / "cgroup.controllers").read_text().split()
    if controller in have:
        return ""
    v1 = ""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        fields = post.split()
        if fields[0] == "cgroup" and controller in fields[-1].split(","):
            v1 = pre.split()[4]
            break
    known = {line.split()[0] for line in Path("/proc/cgroups").read_text().splitlines()[1:]}
    where = (f"bound to the cgroup v1 hierarchy at {v1} (a hybrid host)" if v1 else
             "the kernel has none" if controller not in known else "not enabled at its root")
    return (f"the host's cgroup2 ({mount}) has no {controller} controller: {where}; its cgroup2 "
            f"has {' '.join(have) or 'no controller'}")


def test_containers_get_cgroups_in_the_delegated_subtree(delegated: tuple[RootlessDaemon, Path]) -> None:
    d, sub = delegated
    info = json.loads(d.docker("info", "--format", "{{json .}}").stdout)
    assert info["CgroupDriver"] == "cgroupfs" and info["CgroupVersion"] == "2"
    assert not any("without cgroups" in w for w in info["Warnings"] or [])
    r = d.docker("run", "-d", "--name", "cg", "busybox", "sleep", "3201")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    try:
        cg = sub / "berth" / cid
        procs = (cg / "cgroup.procs").read_text().split()
        assert len(procs) == 1 and Path(f"/proc/{procs[0]}/cmdline").read_bytes().startswith(b"sleep\0003201")
        assert os.stat(cg).st_uid == d.user.subuid_start()  # made by the user's engine's root, not host root
        assert d.proc is not None and str(d.proc.pid) in (sub / "daemon" / "cgroup.procs").read_text().split()
        assert d.docker("pause", "cg").returncode == 0
        assert "frozen 1" in (cg / "cgroup.events").read_text()
        assert d.docker("unpause", "cg").returncode == 0
        assert d.docker("stats", "--no-stream", "cg").returncode == 0
    finally:
        d.docker("rm", "-f", "cg")


@pytest.mark.parametrize("controller, flag, value, file, want", [
    ("memory", "--memory", "64m", "memory.max", "67108864"),
    ("pids", "--pids-limit", "42", "pids.max", "42"),
    ("cpu", "--cpus", "0.5", "cpu.max", "50000 100000"),
])
def test_limits_work_with_the_subtrees_controllers(delegated: tuple[RootlessDaemon, Path], controller: str,
                                                   flag: str, value: str, file: str, want: str) -> None:
    d, sub = delegated
    if lacks(controller):
        pytest.skip(lacks(controller))
    (sub / "cgroup.subtree_control").write_text(f"+{controller}")
    r = d.docker("run", "-d", flag, value, "busybox", "sleep", "3202")
    assert r.returncode == 0, r.stderr
    try:
        assert (sub / "berth" / r.stdout.strip() / file).read_text().strip() == want
    finally:
        d.docker("rm", "-f", r.stdout.strip())


def test_a_limit_the_delegated_tree_cannot_apply_is_discarded_with_dockerds_warning(
        withheld: tuple[RootlessDaemon, Path]) -> None:
    """Real on any host: the subtree's parent withholds the controllers. As dockerd on a host
    without them: the limit is dropped with its warning (the CLI prints it) and the container
    runs; docker info says which limits there is no support for."""
    d, sub = withheld
    assert not set((sub / "cgroup.controllers").read_text().split()) & set(WITHHELD)
    info = json.loads(d.docker("info", "--format", "{{json .}}").stdout)
    assert info["CgroupDriver"] == "cgroupfs" and not info["MemoryLimit"] and not info["PidsLimit"]
    assert not info["CpuCfsQuota"] and not info["CPUShares"] and not info["CPUSet"]
    r = d.docker("run", "--rm", "--memory", "64m", "--pids-limit", "42", "--cpu-shares", "512",
                 "--cpuset-cpus", "0", "busybox", "cat", "/proc/self/cgroup")
    assert r.returncode == 0, r.stderr
    for w in ("memory limit capabilities or the cgroup is not mounted. Limitation discarded.",
              "PIDs limit capabilities or the cgroup is not mounted. PIDs limit discarded.",
              "CPU shares or the cgroup is not mounted. Shares discarded.",
              "cpuset or the cgroup is not mounted. Cpuset discarded."):
        assert f"WARNING: Your kernel does not support {w}" in r.stderr, r.stderr
    cid = d.docker("create", "--memory", "64m", "--pids-limit", "42", "busybox", "true").stdout.strip()
    try:
        hc = json.loads(d.docker("inspect", cid).stdout)[0]["HostConfig"]
        assert hc["Memory"] == 0 and hc["PidsLimit"] in (None, 0) and hc["MemorySwap"] == -1
    finally:
        d.docker("rm", "-f", cid)


def test_cpus_without_the_cpu_controller_is_refused_with_dockerds_message(
        withheld: tuple[RootlessDaemon, Path]) -> None:
    d, _ = withheld
    r = d.docker("run", "--rm", "--cpus", "0.5", "busybox", "true")
    assert r.returncode == 125
    assert ("NanoCPUs can not be set, as your kernel does not support CPU CFS scheduler or the cgroup is not "
            "mounted") in r.stderr
    assert d.docker("ps", "-aq").stdout == ""
    assert d.docker("run", "--rm", "busybox", "true").returncode == 0  # and berthd is still up
