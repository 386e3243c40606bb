"""A pod's /dev/shm: the tmpfs berthd mounts in a sandbox's directory at RunPodSandbox, which
each container of the pod gets as its /dev/shm (a bind), so POSIX shared memory is the pod's
(containerd's ``sandboxShm``: 64 MiB, nosuid, nodev, noexec, mode 1777); its unmount, and the
ones mounted below a directory (the recovery's sweep after a ``kill -9``).

    mount(d / "shm")                       # idempotent
    unmount(d / "shm")                     # every mount stacked there; nothing mounted: no-op
    mounted(data_root, "shm")              # [Path(".../containers/<id>/shm"), ...]
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from berth.linux.mount import MountFlags, UmountFlags, mount as _mount, umount2
from berth.runtime import mountinfo

SIZE = 64 << 20  # containerd's defaultShmSize (and Docker's)
_FLAGS = MountFlags.NOSUID | MountFlags.NODEV | MountFlags.NOEXEC


def mount(path: Path, size: int = SIZE) -> None:
    """The pod's tmpfs at ``path`` (made 0700 if missing; its root is 1777)."""
    os.makedirs(path, 0o700, exist_ok=True)
    if not os.path.ismount(path):
        _mount("shm", path, "tmpfs", _FLAGS, f"mode=1777,size={size}")


def unmount(path: Path) -> None:
    """Detach whatever is mounted at ``path`` (lazily, as containerd: a container still
    holding it keeps it until it exits); a missing or plain directory is fine."""
    while True:
        try:
            umount2(path, UmountFlags.DETACH | UmountFlags.NOFOLLOW)
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOENT):  # not (or no longer) a mount point
                return
            raise


def mounted(below: Path, name: str) -> list[Path]:
    """The mount points called ``name`` below ``below`` in berthd's mount namespace."""
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        table = f.read()
    prefix = str(below).rstrip("/") + "/"
    points = {m.mountpoint for m in mountinfo.parse(table)}
    return sorted(Path(p) for p in points if p.startswith(prefix) and os.path.basename(p) == name)
