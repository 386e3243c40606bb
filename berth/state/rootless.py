"""Whether this process runs nested in a user namespace (a rootless engine and its children,
``daemon/rootless.py``), as /proc/self/{uid,gid}_map show it, and what that changes in the
engine's layout: the xattr namespace overlayfs reads in layers and writable layers
(``user.overlay.*`` with the ``userxattr`` mount option, not ``trusted.overlay.*``), and the
gids a container's sysctls may name.
"""

from __future__ import annotations

import functools
import os

NET_ENV = "BERTH_ROOTLESS_NET"   # the tool that connects the engine's namespace: pasta or slirp4netns
_IDENTITY = (0, 0, 4294967295)


def _lines(kind: str) -> list[tuple[int, int, int]]:
    with open(f"/proc/self/{kind}_map") as f:
        return [(int(a), int(b), int(c)) for a, b, c in (line.split() for line in f if line.strip())]


@functools.cache
def nested() -> bool:
    """True inside a user namespace other than the host's (a rootless berthd and its children)."""
    return _lines("uid") != [_IDENTITY]


@functools.cache
def max_gid() -> int:
    """The highest gid of the contiguous range from 0 that this namespace maps."""
    top = -1
    for inside, _, count in sorted(_lines("gid")):
        if inside > top + 1:
            break
        top = max(top, inside + count - 1)
    return top


def overlay_prefix() -> str:
    """The xattr namespace overlayfs reads here: ``trusted.overlay.`` on the host's user
    namespace; ``user.overlay.`` nested, where trusted.* cannot be set and the overlay is
    mounted with ``userxattr`` (Linux >= 5.11)."""
    return "user.overlay." if nested() else "trusted.overlay."


def overlay_options() -> str:
    """What this namespace's overlay mounts add to their options (``,userxattr`` nested)."""
    return ",userxattr" if nested() else ""


def net_driver() -> str:
    """What connects a rootless engine's network namespace to the host ("" when not rootless)."""
    return os.environ.get(NET_ENV, "")


STORAGE_ENV = "BERTH_ROOTLESS_STORAGE"   # "fuse-overlayfs": containers' rootfs through FUSE
FUSE = "fuse-overlayfs"


def fuse_storage() -> bool:
    """True when a rootless engine's container rootfs is fuse-overlayfs, not kernel overlayfs
    (``daemon/rootless_storage.py`` decides at start; shims inherit the environment)."""
    return os.environ.get(STORAGE_ENV) == FUSE
