"""Whether a bind's host source can carry the propagation asked for: a shared bind needs a
shared source mount, a slave bind a shared or slave one. Two wordings: containerd's
(``ensure``, for CRI mounts) and dockerd's (``ensure_bind``, checked at a container's start
as its ``WithMounts`` does, with its exceptions for the daemon root). The source's mount is
found in berthd's /proc/self/mountinfo.

    ensure("/mnt/data", "rshared")   # Conflict unless the mount /mnt/data is on is shared
    daemon_root_propagation("/var/lib/berth/x", "", "/var/lib/berth")   # -> "rslave"
"""

from __future__ import annotations

import os

from berth.errors import Conflict, Internal, InvalidArgument
from berth.runtime import mountinfo

_MOUNTINFO = "/proc/self/mountinfo"
_SHARED = ("shared", "rshared")
_SLAVE = ("slave", "rslave")


def _mount_of(path: str, table: str | None) -> mountinfo.MountInfo:
    if table is None:
        with open(_MOUNTINFO, encoding="utf-8") as f:
            table = f.read()
    return mountinfo.mount_of(path, table)


def ensure(source: str, propagation: str, table: str | None = None) -> None:
    """Raise Conflict when ``source``'s mount cannot propagate as ``propagation`` asks
    (``table``: the mountinfo text, read from berthd's own when not given)."""
    if propagation not in _SHARED + _SLAVE:
        return
    path = os.path.realpath(source)
    m = _mount_of(path, table)
    if propagation in _SHARED:
        if not m.shared:
            raise Conflict(f'path "{path}" is mounted on "{m.mountpoint}" but it is not a shared mount')
    elif not (m.shared or m.slave):
        raise Conflict(f'path "{path}" is mounted on "{m.mountpoint}" but it is not a shared or slave mount')


def _related(source: str, root: str) -> bool:
    """dockerd's test, string prefixes both ways (not path components)."""
    return source.startswith(root) or root.startswith(source)


def daemon_root_propagation(source: str, given: str, root: str) -> str:
    """The propagation a new bind of ``source`` gets (``given``: the one asked for, "" when
    none), by dockerd's ``validateBindDaemonRoot``: a source in the daemon root (or holding
    it) is ``rslave`` unless asked, and only rslave or rshared may be asked; "" when the rule
    does not apply. Raises InvalidArgument in dockerd's words."""
    if not _related(source, root):
        return given
    if not given:
        return "rslave"
    if given in ("rslave", "rshared"):
        return given
    raise InvalidArgument('invalid mount config: must use either propagation mode "rslave" or "rshared" when '
                          f'mount source is within the daemon root, daemon root: "{root}", bind mount source: '
                          f'"{source}", propagation: "{given}"')


def ensure_bind(source: str, propagation: str, root: str, automatic: bool, table: str | None = None) -> None:
    """At a start: raise Internal (dockerd answers 500) when the mount ``source`` is on cannot
    carry ``propagation``, in dockerd's words. A slave bind that berthd made slave itself
    (``automatic``: a source in the daemon root, no propagation asked) falls back silently."""
    if propagation not in _SHARED + _SLAVE:
        return
    m = _mount_of(os.path.realpath(source), table)
    if propagation in _SHARED:
        if not m.shared:
            raise Internal(f"path {source} is mounted on {m.mountpoint} but it is not a shared mount")
    elif not (m.shared or m.slave) and not (automatic and _related(source, root)):
        raise Internal(f"path {source} is mounted on {m.mountpoint} but it is not a shared or slave mount")
