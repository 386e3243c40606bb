"""/proc/<pid>/mountinfo read as data: which mount a path is on, and its propagation.

Pure: the caller reads the file (the init reads its own after unsharing; berthd its own).

    m = mount_of("/var/lib/x/y", open("/proc/self/mountinfo").read())
    m.mountpoint, m.shared, m.slave     # ("/var/lib", True, False) for "shared:4"
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class MountInfo:
    mount_id: int
    mountpoint: str
    optional: tuple[str, ...]    # "shared:N", "master:N", "propagate_from:N", "unbindable"

    @property
    def shared(self) -> bool:
        return any(o.startswith("shared:") for o in self.optional)

    @property
    def slave(self) -> bool:
        return any(o.startswith("master:") for o in self.optional)


def parse(text: str) -> list[MountInfo]:
    """Each line of mountinfo(5), in order (later mounts over earlier ones on the same point)."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 7 or "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        point = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
        out.append(MountInfo(int(fields[0]), point, tuple(fields[6:sep])))
    return out


def mount_of(path: str, text: str) -> MountInfo:
    """The mount ``path`` (absolute, symlinks already resolved) is on: the longest mount point
    that contains it, the last one mounted when several share it."""
    best: MountInfo | None = None
    for m in parse(text):
        if _under(path, m.mountpoint) and (best is None or len(m.mountpoint) >= len(best.mountpoint)):
            best = m
    if best is None:
        raise ValueError(f"no mount holds {path}")
    return best


def _under(path: str, point: str) -> bool:
    return point == "/" or path == point or path.startswith(point.rstrip(os.sep) + os.sep)
