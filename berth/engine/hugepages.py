"""Hugepage limits (the CRI's ``hugepage_limits``; the Docker API has none): the page sizes this
host has, and the limits written into a container's OCI spec when its cgroups can hold them
(the hugetlb controller: a v1 hierarchy, or enabled on the cgroup2 mount berth uses). Without
the controller the limits are left out, as containerd's ``tolerate_missing_hugetlb_controller``
does (the kubelet sends a limit, 0 when unasked, for every size the node has).

    sizes()                                  # {"2MB", "1GB"}
    apply(spec, {"2MB": 4 << 20})            # spec.linux.resources.hugepageLimits
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from berth.errors import Unavailable
from berth.oci.spec import HugepageLimit
from berth.runtime.cgroups import detect

SYS_HUGEPAGES = Path("/sys/kernel/mm/hugepages")
_UNITS = ((1 << 20, "GB"), (1 << 10, "MB"), (1, "KB"))


def size_name(kib: int) -> str:
    """2048 (kB) -> "2MB", as the hugetlb files and the kubelet name a page size."""
    for factor, unit in _UNITS:
        if kib % factor == 0:
            return f"{kib // factor}{unit}"
    raise ValueError(kib)


def sizes(root: Path = SYS_HUGEPAGES) -> set[str]:
    """The page sizes of this host (``hugepages-2048kB`` -> ``2MB``)."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return set()
    return {size_name(int(n[len("hugepages-"):-len("kB")])) for n in names
            if n.startswith("hugepages-") and n.endswith("kB")}


def controller_available() -> bool:
    """Whether berth's cgroups have the hugetlb controller."""
    try:
        layout = detect()
    except Unavailable:
        return False
    if layout.version == 1:
        return "hugetlb" in layout.hierarchies
    try:
        return "hugetlb" in (layout.root / "cgroup.controllers").read_text().split()
    except OSError:
        return False


def apply(spec: Any, limits: dict[str, int]) -> None:
    """Put ``limits`` (page size -> bytes) into ``spec`` when the controller is there."""
    r = spec.linux.resources if spec.linux is not None else None
    if not limits or r is None or not controller_available():
        return
    r.hugepageLimits = [HugepageLimit(pageSize=size, limit=limit) for size, limit in sorted(limits.items())]
