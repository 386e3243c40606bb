"""Container cgroups on cgroup v1 and v2 (cgroupfs driver, as runc's).

Terms: a *hierarchy* is one mounted cgroup tree. On v1 each controller (cpu, memory, pids, ...)
or named hierarchy (name=systemd) has its own mount under /sys/fs/cgroup; a container's cgroup
is one directory per hierarchy. On v2 there is one tree (the *unified* hierarchy) and one
directory; controllers must be enabled top-down through each parent's cgroup.subtree_control.
A hybrid host (v1 controllers plus a controller-less cgroup2 at /sys/fs/cgroup/unified) counts
as v1, as for runc and Docker.

`path` is the OCI linux.cgroupsPath: absolute paths are below each hierarchy's mount point
(`/berth/<id>` -> /sys/fs/cgroup/memory/berth/<id>); relative ones are below this process's
own cgroup in that hierarchy on v1, and below its parent on v2 (as runc: a v2 cgroup that holds
processes cannot enable controllers for its children).

    layout = detect()                     # cached per root for this process
    cg = open_cgroup("/berth/" + cid, layout)
    cg.create(spec.linux.resources)       # dict or struct, OCI field names
    cg.add(init_pid)
    ...
    cg.kill_all(signal.SIGKILL); cg.destroy()
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from berth.errors import InvalidArgument, Unavailable
from berth.runtime.cgroups._common import (
    Cgroup,
    blkio_weight_to_io_weight,
    device_rule_line,
    shares_to_weight,
    v2_swap_max,
)

__all__ = [
    "Cgroup", "Layout", "detect", "open_cgroup", "shares_to_weight", "blkio_weight_to_io_weight",
    "v2_swap_max", "device_rule_line", "delegated", "controllers",
]

# BERTH_CGROUP_ROOT points berth at another cgroup mount: a cgroup2 mount next to v1
# controllers (hybrid hosts) runs containers through the v2 code on a v1 host.
DEFAULT_ROOT = Path(os.environ.get("BERTH_CGROUP_ROOT") or "/sys/fs/cgroup")

_V1_CONTROLLERS = frozenset({
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "net_prio", "blkio",
    "perf_event", "hugetlb", "pids", "rdma", "misc",
})


@dataclass(frozen=True)
class Layout:
    """Where the cgroup hierarchies of this host are mounted.

    version 2: `root` is the unified mount and `hierarchies` is empty.
    version 1: `hierarchies` maps each controller (and "name=<x>" for named hierarchies) to its
    mount point; co-mounted controllers (cpu,cpuacct) share one. `unified` is the hybrid-mode
    cgroup2 mount, if any (informational: berth does not use it on v1).
    """

    version: int
    root: Path
    hierarchies: dict[str, Path] = field(default_factory=dict)
    unified: Path | None = None

    def mounts(self) -> list[Path]:
        """Each v1 hierarchy's mount point once."""
        seen: dict[Path, None] = {}
        for p in self.hierarchies.values():
            seen.setdefault(p, None)
        return list(seen)


_layouts: dict[str, Layout] = {}


def detect(root: Path = DEFAULT_ROOT) -> Layout:
    """The cgroup layout under root; cheap after the first call (cached per process)."""
    key = str(root)
    layout = _layouts.get(key)
    if layout is None:
        layout = _layouts[key] = _detect(Path(root))
    return layout


def delegated(root: Path = DEFAULT_ROOT) -> bool:
    """True when this process may make cgroups under root: always for host root; for a
    rootless engine only on a cgroup v2 tree it was handed (systemd's ``Delegate=yes``, or a
    subtree chowned to the user), never on v1."""
    try:
        layout = detect(root)
    except Unavailable:
        return False
    if layout.version != 2:
        return False
    return os.access(layout.root, os.W_OK) and os.access(layout.root / "cgroup.procs", os.W_OK)


def controllers(root: Path = DEFAULT_ROOT) -> frozenset[str]:
    """The controllers a cgroup v2 tree at root may give its children (its cgroup.controllers);
    empty where there is none to read."""
    try:
        layout = detect(root)
        return frozenset((layout.root / "cgroup.controllers").read_text().split()) if layout.version == 2 \
            else frozenset()
    except (Unavailable, OSError):
        return frozenset()


def blkio_weight(root: Path = DEFAULT_ROOT) -> bool:
    """Whether a block I/O weight can be applied here (dockerd's sysinfo BlkioWeight): v1's
    blkio.weight (CFQ) or blkio.bfq.weight (BFQ) in the blkio hierarchy, v2's io controller."""
    try:
        layout = detect(root)
    except Unavailable:
        return False
    if layout.version == 2:
        return "io" in controllers(root)
    d = layout.hierarchies.get("blkio")
    return d is not None and ((d / "blkio.weight").exists() or (d / "blkio.bfq.weight").exists())


def _detect(root: Path) -> Layout:
    if (root / "cgroup.controllers").exists():
        return Layout(version=2, root=root, unified=root)
    hierarchies, unified = _from_mountinfo(root)
    if not hierarchies and unified is None:
        hierarchies, unified = _from_dirs(root)  # a fake root in tests, or an odd mount setup
    if not hierarchies:
        if unified is not None:
            return Layout(version=2, root=unified, unified=unified)
        raise Unavailable(f"no cgroup hierarchy found under {root}")
    return Layout(version=1, root=root, hierarchies=hierarchies, unified=unified)


def _from_mountinfo(root: Path) -> tuple[dict[str, Path], Path | None]:
    prefix = str(root).rstrip("/") + "/"
    hierarchies: dict[str, Path] = {}
    unified = None
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            text = f.read().decode()
    except FileNotFoundError:
        return {}, None
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        fstype, _, rest = post.partition(" ")
        if fstype not in ("cgroup", "cgroup2"):
            continue
        mnt = pre.split(" ", 5)[4].replace("\\040", " ")
        if not (mnt + "/").startswith(prefix):
            continue
        if fstype == "cgroup2":
            unified = unified or Path(mnt)
            continue
        for opt in rest.rpartition(" ")[2].split(","):
            if opt in _V1_CONTROLLERS or opt.startswith("name="):
                hierarchies.setdefault(opt, Path(mnt))
    return hierarchies, unified


def _from_dirs(root: Path) -> tuple[dict[str, Path], Path | None]:
    hierarchies: dict[str, Path] = {}
    unified = None
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except FileNotFoundError:
        return {}, None
    for e in entries:
        if not e.is_dir():
            continue
        if os.path.exists(os.path.join(e.path, "cgroup.controllers")):
            unified = unified or Path(e.path)
            continue
        target = Path(os.path.realpath(e.path))
        for name in e.name.split(","):
            if name in _V1_CONTROLLERS:
                hierarchies.setdefault(name, target)
            elif name == "systemd":
                hierarchies.setdefault("name=systemd", target)
    return hierarchies, unified


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path per hierarchy key ("" for v2), from /proc/self/cgroup."""
    out: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(",") if ctrls else [""]:
                out[c] = path
    return out


def _clean(path: str) -> str:
    if not path or "\0" in path:
        raise InvalidArgument(f"invalid cgroup path {path!r}")
    norm = os.path.normpath(path)
    if norm.startswith("..") or "/../" in norm + "/" or norm in (".", "/"):
        raise InvalidArgument(f"invalid cgroup path {path!r}")
    return norm


def open_cgroup(path: str, layout: Layout | None = None) -> Cgroup:
    """The cgroup for OCI cgroupsPath `path` (nothing is created until create())."""
    layout = layout or detect()
    norm = _clean(path)
    own = None if norm.startswith("/") else _own_cgroups()
    if layout.version == 2:
        from berth.runtime.cgroups.v2 import V2Cgroup

        rel = norm if own is None else os.path.join(os.path.dirname(own.get("", "/")), norm)
        return V2Cgroup(path, layout.root, rel)
    from berth.runtime.cgroups.v1 import V1Cgroup

    rels = {}
    for key in layout.hierarchies:
        rels[key] = norm if own is None else os.path.join(own.get(key, "/"), norm)
    return V1Cgroup(path, layout, rels)
