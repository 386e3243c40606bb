"""Fake cgroup roots in tmp_path: directories and files shaped like cgroupfs.

cgroupfs creates a cgroup's files by itself on mkdir; a fake cannot, so tests create the files
they expect to be written up front and read them back afterwards.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from berth.runtime.cgroups import Layout, detect

V1_HIERARCHIES = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd")

V1_FILES = {
    "cpu": ["cgroup.procs", "cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.stat"],
    "cpuacct": ["cgroup.procs", "cpuacct.usage", "cpuacct.stat", "cpuacct.usage_percpu"],
    "cpuset": ["cgroup.procs", "cpuset.cpus", "cpuset.mems"],
    "memory": ["cgroup.procs", "memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.soft_limit_in_bytes",
               "memory.oom_control", "memory.swappiness", "memory.usage_in_bytes", "memory.max_usage_in_bytes",
               "memory.failcnt", "memory.stat"],
    "devices": ["cgroup.procs", "devices.allow", "devices.deny"],
    "freezer": ["cgroup.procs", "freezer.state"],
    "blkio": ["cgroup.procs", "blkio.weight", "blkio.throttle.read_bps_device",
              "blkio.throttle.io_service_bytes_recursive"],
    "pids": ["cgroup.procs", "pids.max", "pids.current"],
    "systemd": ["cgroup.procs"],
}

V2_FILES = ["cgroup.procs", "cgroup.controllers", "cgroup.subtree_control", "cgroup.events", "cgroup.freeze",
            "cgroup.kill", "cpu.stat", "cpu.weight", "cpu.max", "cpuset.cpus", "cpuset.mems", "memory.max",
            "memory.swap.max", "memory.low", "memory.high", "memory.current", "memory.events", "memory.stat", "pids.max",
            "pids.current", "io.weight", "io.max", "io.stat", "hugetlb.2MB.max"]


def touch(d: Path, names: list[str], content: str = "") -> None:
    d.mkdir(parents=True, exist_ok=True)
    for n in names:
        (d / n).write_text(content)


def read(p: Path) -> str:
    return p.read_text()


@pytest.fixture
def v1_root(tmp_path: Path) -> Path:
    root = tmp_path / "cgroup"
    for h in V1_HIERARCHIES:
        touch(root / h, ["cgroup.procs"])
    (root / "cpuset" / "cpuset.cpus").write_text("0-3\n")
    (root / "cpuset" / "cpuset.mems").write_text("0\n")
    (root / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    return root


@pytest.fixture
def v1_layout(v1_root: Path) -> Layout:
    layout = detect(v1_root)
    assert layout.version == 1
    return layout


def make_v1_cgroup_files(root: Path, rel: str) -> dict[str, Path]:
    """Pre-create every file a v1 cgroup at `rel` would have; returns hierarchy -> dir."""
    dirs = {}
    for h, files in V1_FILES.items():
        d = root / h / rel.lstrip("/")
        touch(d, files)
        dirs[h] = d
    (dirs["memory"] / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    return dirs


@pytest.fixture
def v2_root(tmp_path: Path) -> Path:
    root = tmp_path / "unified"
    touch(root, ["cgroup.procs", "cgroup.subtree_control"])
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids\n")
    return root


def make_v2_cgroup_files(root: Path, rel: str) -> Path:
    parts = rel.strip("/").split("/")
    d = root
    for p in parts[:-1]:
        d = d / p
        touch(d, ["cgroup.procs", "cgroup.subtree_control"])
        (d / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids\n")
    d = d / parts[-1]
    touch(d, V2_FILES)
    (d / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids\n")
    return d
