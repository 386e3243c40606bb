"""cgroup-parent: daemon.json's default and `docker run --cgroup-parent`, as dockerd's cgroupfs
driver places them: PARENT/<id>, an absolute parent below each hierarchy's root, a relative one
(`x.slice` too) below berthd's own cgroup; on cgroup v1 (this host) and v2 (berthd pointed at the
host's cgroup2 mount, as test_cgroup_v2.py does)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon

pytestmark = pytest.mark.root
DOCKER = "/usr/local/bin/docker"
CG = Path("/sys/fs/cgroup")
TAG = f"cgp{os.getpid()}"
DAEMON_PARENT = f"/berth-test-{TAG}"      # daemon.json's cgroup-parent
RUN_PARENT = f"/berth-test-{TAG}-run"     # docker run --cgroup-parent
SLICE = f"berth-test-{TAG}.slice"         # a relative, systemd-style name


def _own_cgroups(pid: int) -> dict[str, str]:
    """hierarchy key (v1: its controllers' mount dir name; v2: "") -> cgroup path of pid."""
    out = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        out[ctrls.replace("name=", "")] = path
    return out


def _rmdirs(paths: list[Path]) -> None:
    """Remove the test's parent cgroups (deepest first) once their containers' are gone."""
    for p in sorted(paths, key=lambda p: -len(p.parts)):
        deadline = time.monotonic() + 5
        while p.exists():
            try:
                p.rmdir()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def _run(d: Daemon, *args: str) -> tuple[str, int]:
    r = d.docker("run", "-d", *args, "busybox", "sleep", "60")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    return cid, int(d.docker("inspect", "-f", "{{.State.Pid}}", cid).stdout)


def _wait_gone(p: Path) -> None:
    deadline = time.monotonic() + 5
    while p.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not p.exists(), f"{p} outlived its container"


@pytest.fixture
def v1_daemon(tmp_path: Path) -> Iterator[Daemon]:
    if (CG / "cgroup.controllers").exists():
        pytest.skip("a pure cgroup v2 host: the v2 test covers it")
    conf = tmp_path / "daemon.json"
    conf.write_text(json.dumps({"cgroup-parent": DAEMON_PARENT}))
    d = Daemon(args=["--config-file", str(conf)])
    d.start()
    d.import_busybox()
    own = _own_cgroups(d.proc.pid if d.proc else 0)
    try:
        yield d
    finally:
        d.cleanup()
        made = [CG / h / p.lstrip("/") for h in ("pids", "memory", "cpu", "freezer", "blkio", "devices",
                                                  "cpuset", "cpuacct", "systemd")
                for p in (DAEMON_PARENT, RUN_PARENT, own.get(h, "/") + "/" + SLICE)]
        _rmdirs([p for p in made if p.exists()])


def test_v1_daemon_default_and_run_flag(v1_daemon: Daemon) -> None:
    d = v1_daemon
    # the daemon's parent: not recorded in the container's HostConfig (as dockerd)
    cid, pid = _run(d, "--memory", "64m")
    assert d.docker("inspect", "-f", "{{json .HostConfig.CgroupParent}}", cid).stdout.strip() == '""'
    assert _own_cgroups(pid)["pids"] == f"{DAEMON_PARENT}/{cid}"
    mem = CG / "memory" / DAEMON_PARENT.lstrip("/") / cid
    assert (mem / "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
    assert not (CG / "pids" / "berth" / cid).exists()
    # the engine finds it there: pause (freezer), top, stats, update
    assert d.docker("pause", cid).returncode == 0
    assert (CG / "freezer" / DAEMON_PARENT.lstrip("/") / cid / "freezer.state").read_text().strip() == "FROZEN"
    assert d.docker("unpause", cid).returncode == 0
    assert "sleep 60" in d.docker("top", cid).stdout
    stats = d.docker("stats", "--no-stream", "--format", "{{.MemUsage}}", cid).stdout
    assert "64MiB" in stats, stats
    assert d.docker("update", "--memory", "96m", cid).returncode == 0
    assert (mem / "memory.limit_in_bytes").read_text().strip() == str(96 << 20)
    # --cgroup-parent wins over the daemon's, and inspect shows it
    cid2, pid2 = _run(d, "--cgroup-parent", RUN_PARENT, "--pids-limit", "33")
    assert d.docker("inspect", "-f", "{{.HostConfig.CgroupParent}}", cid2).stdout.strip() == RUN_PARENT
    assert _own_cgroups(pid2)["pids"] == f"{RUN_PARENT}/{cid2}"
    assert (CG / "pids" / RUN_PARENT.lstrip("/") / cid2 / "pids.max").read_text().strip() == "33"
    d.docker("rm", "-f", cid, cid2)
    _wait_gone(mem)
    _wait_gone(CG / "pids" / RUN_PARENT.lstrip("/") / cid2)


def test_v1_relative_slice_is_below_berthd_cgroup(v1_daemon: Daemon) -> None:
    d = v1_daemon
    assert d.proc is not None
    own = _own_cgroups(d.proc.pid)
    cid, pid = _run(d, "--cgroup-parent", SLICE)
    cgs = _own_cgroups(pid)
    for h in ("pids", "memory", "cpu", "freezer"):
        assert cgs[h] == os.path.join(own[h], SLICE, cid), (h, cgs[h], own[h])
    assert d.docker("inspect", "-f", "{{.HostConfig.CgroupParent}}", cid).stdout.strip() == SLICE
    assert d.docker("stop", "-t", "1", cid).returncode == 0
    # a restart finds it again (the path is recorded with the container's state)
    assert d.docker("start", cid).returncode == 0
    pid = int(d.docker("inspect", "-f", "{{.State.Pid}}", cid).stdout)
    assert _own_cgroups(pid)["pids"] == os.path.join(own["pids"], SLICE, cid)
    # `..` cannot climb out of berthd's cgroup (runc's CleanPath)
    cid2, pid2 = _run(d, "--cgroup-parent", f"../../../{SLICE}")
    assert _own_cgroups(pid2)["pids"] == os.path.join(own["pids"], SLICE, cid2)
    d.docker("rm", "-f", cid, cid2)
    _wait_gone(CG / "pids" / own["pids"].lstrip("/") / SLICE / cid)


def _v2_root() -> Path:
    unified = CG / "unified"
    if (unified / "cgroup.controllers").exists():
        return unified
    assert (CG / "cgroup.controllers").exists(), "no cgroup2 hierarchy on this host"
    return CG


def test_v2_daemon_default_run_flag_and_slice(tmp_path: Path) -> None:
    root = _v2_root()
    conf = tmp_path / "daemon.json"
    conf.write_text(json.dumps({"cgroup-parent": DAEMON_PARENT}))
    d = Daemon(env={"BERTH_CGROUP_ROOT": str(root)}, args=["--config-file", str(conf)])
    made: list[Path] = []
    try:
        d.start()
        d.import_busybox()
        assert d.proc is not None
        own = _own_cgroups(d.proc.pid)[""]
        assert d.docker("info", "--format", "{{.CgroupVersion}}").stdout.strip() == "2"
        slice_dir = root / os.path.dirname(own).lstrip("/") / SLICE   # runc: below own's parent on v2
        made = [root / DAEMON_PARENT.lstrip("/"), root / RUN_PARENT.lstrip("/"), slice_dir]
        cid, pid = _run(d)
        cid2, pid2 = _run(d, "--cgroup-parent", RUN_PARENT)
        cid3, pid3 = _run(d, "--cgroup-parent", SLICE)
        for c, p, parent in ((cid, pid, made[0]), (cid2, pid2, made[1]), (cid3, pid3, made[2])):
            assert str(p) in (parent / c / "cgroup.procs").read_text().split(), (c, parent)
        assert d.docker("inspect", "-f", "{{.HostConfig.CgroupParent}}", cid2).stdout.strip() == RUN_PARENT
        assert d.docker("pause", cid3).returncode == 0
        assert "frozen 1" in (made[2] / cid3 / "cgroup.events").read_text()
        assert d.docker("unpause", cid3).returncode == 0
        assert d.docker("stats", "--no-stream", cid).returncode == 0
        d.docker("rm", "-f", cid, cid2, cid3)
        for c, parent in ((cid, made[0]), (cid2, made[1]), (cid3, made[2])):
            _wait_gone(parent / c)
    finally:
        d.cleanup()
        _rmdirs([p for p in made if p.exists()])
