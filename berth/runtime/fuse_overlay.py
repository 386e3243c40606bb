"""A container's rootfs through fuse-overlayfs (Debian's package of that name): a rootless
engine's storage where the kernel cannot mount overlayfs in a user namespace, or when
``BERTH_ROOTLESS_STORAGE=fuse-overlayfs`` asks for it (``state/rootless.py``).

The shim mounts it over the container's rootfs directory in the engine's mount namespace
before the init is forked (``container.create``), as it does for an external runtime; the
init then bind-mounts that directory instead of mounting overlayfs, and fuse-overlayfs (a
daemon of the engine's, not a process of the container) serves it from the same layer, upper
and work directories. It goes when the rootfs is unmounted: at the container's exit or
removal (``engine/runtimes.py``'s cleanup).
"""

from __future__ import annotations

import errno
import shutil
import subprocess

from berth.errors import RuntimeFailure
from berth.linux import mount as lmount


def mount(options: str, target: str) -> None:
    """Mount the overlay ``options`` (the kernel's lowerdir/upperdir/workdir) at ``target``.
    Raises RuntimeFailure with fuse-overlayfs's words."""
    binary = shutil.which("fuse-overlayfs")
    if binary is None:
        raise RuntimeFailure("fuse-overlayfs not found: apt-get install fuse-overlayfs")
    opts = ",".join(o for o in options.split(",") if o != "userxattr")   # the kernel's only
    release(target)   # a mount a killed shim left
    r = subprocess.run([binary, "-o", opts, target], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeFailure(f"fuse-overlayfs: {(r.stderr or r.stdout).strip() or f'exit {r.returncode}'}")


def release(target: str) -> None:
    """Unmount it (nothing when none is there); fuse-overlayfs then exits."""
    try:
        lmount.umount2(target, lmount.UmountFlags.DETACH)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise
