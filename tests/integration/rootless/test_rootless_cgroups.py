"""Rootless berthd with a delegated cgroup v2 subtree (issue 15): the test makes one under the
host's cgroup2 mount, chowns it to a throwaway user and starts that user's berthd inside it,
as systemd's Delegate=yes would hand one over. Containers
then get cgroups of their own there (pause, stats), and limits work with the controllers the
subtree has."""

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


@pytest.fixture(scope="module")
def delegated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RootlessDaemon, Path]]:
    need_tools()
    tar = rootfs_tar(tmp_path_factory.mktemp("rootfs"))
    sub = _cgroup2_mount() / f"brl-{uuid.uuid4().hex[:8]}"
    sub.mkdir()
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
        _remove_tree(sub)


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
    if controller not in (sub.parent / "cgroup.controllers").read_text().split():
        pytest.skip(f"the host's cgroup2 has no {controller} controller (a hybrid host: v1 holds it)")
    (sub / "cgroup.subtree_control").write_text(f"+{controller}")
    r = d.docker("run", "-d", flag, value, "busybox", "sleep", "3202")
    assert r.returncode == 0, r.stderr
    try:
        assert (sub / "berth" / r.stdout.strip() / file).read_text().strip() == want
    finally:
        d.docker("rm", "-f", r.stdout.strip())
