"""Host facts the plan needs, read once per process: capability sets, cgroup mounts, /proc."""

from __future__ import annotations

import functools
import os

from berth.linux import caps as lcaps
from berth.runtime.plan import CgroupHierarchy, HostInfo

CGROUP_ROOT = "/sys/fs/cgroup"


def _unescape(s: str) -> str:
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def parse_cgroup_mounts(mountinfo: str, proc_cgroup: str) -> tuple[tuple[CgroupHierarchy, ...], bool]:
    """Cgroup mounts under /sys/fs/cgroup (the first mount of each hierarchy), and whether
    /sys/fs/cgroup itself is cgroup2. Each is matched to its line in /proc/self/cgroup."""
    keys = [line.split(":", 2)[1] for line in proc_cgroup.splitlines() if line.count(":") >= 2]
    out: list[CgroupHierarchy] = []
    seen: set[str] = set()
    v2_root = False
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        f, r = left.split(), right.split()
        if len(f) < 5 or len(r) < 3 or r[0] not in ("cgroup", "cgroup2"):
            continue
        root, mountpoint = _unescape(f[3]), _unescape(f[4])
        if mountpoint == CGROUP_ROOT and r[0] == "cgroup2":
            v2_root = True
        if os.path.dirname(mountpoint) != CGROUP_ROOT and mountpoint != CGROUP_ROOT:
            continue
        if r[0] == "cgroup2":
            key = ""
        else:
            opts = set(r[2].split(","))
            key = next((k for k in keys if k and set(k.split(",")) <= opts), "")
            if not key:
                continue
        if key in seen:
            continue
        seen.add(key)
        out.append(CgroupHierarchy(mountpoint, root, r[0], key))
    return tuple(out), v2_root


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


@functools.cache
def host_info() -> HostInfo:
    last_cap = int(_read("/proc/sys/kernel/cap_last_cap"))
    status = {k: v.strip() for k, _, v in (line.partition(":") for line in _read("/proc/self/status").splitlines())}
    cgroups, v2_root = parse_cgroup_mounts(_read("/proc/self/mountinfo"), _read("/proc/self/cgroup"))
    return HostInfo(
        cap_last_cap=last_cap,
        bounding=int(status["CapBnd"], 16),
        permitted=lcaps.capget().permitted,
        cgroups=cgroups,
        cgroup2_root=v2_root,
        has_kcore=os.path.exists("/proc/kcore"),
    )
