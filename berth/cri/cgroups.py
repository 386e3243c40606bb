"""A pod's cgroup parent, from LinuxPodSandboxConfig.cgroup_parent, as an engine CgroupParent.

The kubelet sends a cgroupfs path (``/kubepods/burstable/pod<uid>``) or, with the systemd
driver, a slice name (``kubepods-burstable-pod<uid>.slice``). A slice is expanded into its
place in the tree as runc's ExpandSlice does (each ``-`` is one level down), and then used
like a cgroupfs path: berth drives the cgroup files itself, not systemd.

    parent("kubepods-burstable-pod1.slice") == "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"
    parent("/kubepods/pod1") == "/kubepods/pod1"
"""

from __future__ import annotations

from berth.errors import InvalidArgument

SUFFIX = ".slice"


def expand_slice(name: str) -> str:
    """``a-b-c.slice`` -> ``/a.slice/a-b.slice/a-b-c.slice`` (``-.slice``: the root)."""
    if not name.endswith(SUFFIX) or "/" in name:
        raise InvalidArgument(f"invalid slice name: {name}")
    base = name[:-len(SUFFIX)]
    if base == "-":
        return "/"
    path, prefix = "", ""
    for part in base.split("-"):
        if not part:
            raise InvalidArgument(f"invalid slice name: {name}")
        path += f"/{prefix}{part}{SUFFIX}"
        prefix += part + "-"
    return path


def parent(given: str) -> str:
    """The engine CgroupParent of a pod ("" when the kubelet gave none: berth's default)."""
    if not given:
        return ""
    if "/" not in given and given.endswith(SUFFIX):
        return expand_slice(given)
    if ".." in given.split("/"):
        raise InvalidArgument(f"invalid cgroup parent: {given}")
    return given
