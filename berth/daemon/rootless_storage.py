"""A rootless engine's storage driver, chosen once at start (before the fork server, whose
shims inherit the choice through the environment, ``state/rootless.py``): kernel overlayfs
with ``userxattr`` where this kernel mounts it in the engine's user namespace (Linux >= 5.11),
else fuse-overlayfs (``runtime/fuse_overlay.py``); ``BERTH_ROOTLESS_STORAGE=fuse-overlayfs``
(or ``overlay2``) decides instead. ``docker info``'s Driver says which.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from berth.linux import mount as lmount
from berth.state.rootless import FUSE, STORAGE_ENV

log = logging.getLogger("berthd")
DRIVERS = ("overlay2", FUSE)


class StorageError(Exception):
    """A storage driver that was asked for and cannot be used."""


def choose(exec_root: Path) -> str:
    """The driver (also left in the environment for the shims). Raises StorageError."""
    forced = os.environ.get(STORAGE_ENV, "")
    if forced and forced not in DRIVERS:
        raise StorageError(f"{STORAGE_ENV}={forced}: not one of {', '.join(DRIVERS)}")
    driver = forced or ("overlay2" if kernel_overlay(exec_root) else FUSE)
    if driver == FUSE and shutil.which(FUSE) is None:
        if forced:
            raise StorageError(f"{STORAGE_ENV}={forced}: fuse-overlayfs not found (apt-get install fuse-overlayfs)")
        log.warning("this kernel cannot mount overlayfs in a user namespace (Linux 5.11 can), and "
                    "fuse-overlayfs is not installed (apt-get install fuse-overlayfs): containers cannot start")
        driver = "overlay2"
    if driver == FUSE and not os.access("/dev/fuse", os.R_OK | os.W_OK):
        raise StorageError("fuse-overlayfs needs /dev/fuse open to users (sudo chmod 0666 /dev/fuse)")
    os.environ[STORAGE_ENV] = driver
    return driver


def kernel_overlay(exec_root: Path) -> bool:
    """Whether an overlayfs with ``userxattr`` mounts here (tried in a scratch directory)."""
    top = Path(tempfile.mkdtemp(prefix="overlay-probe-", dir=exec_root))
    try:
        for d in ("lower", "upper", "work", "merged"):
            (top / d).mkdir()
        opts = f"lowerdir={top / 'lower'},upperdir={top / 'upper'},workdir={top / 'work'},userxattr"
        try:
            lmount.mount("overlay", str(top / "merged"), "overlay", 0, opts)
        except OSError:
            return False
        lmount.umount2(str(top / "merged"), lmount.UmountFlags.DETACH)
        return True
    finally:
        shutil.rmtree(top, ignore_errors=True)
