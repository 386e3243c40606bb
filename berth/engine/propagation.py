"""Whether a bind's host source can carry the propagation asked for: a shared bind needs a
shared source mount, a slave bind a shared or slave one (containerd's ``ensureShared`` and
``ensureSharedOrSlave``, in its words). The source's mount is found in berthd's
/proc/self/mountinfo.

    ensure("/mnt/data", "rshared")   # Conflict unless the mount /mnt/data is on is shared
"""

from __future__ import annotations

import os

from berth.errors import Conflict
from berth.runtime import mountinfo

_MOUNTINFO = "/proc/self/mountinfo"


def ensure(source: str, propagation: str, table: str | None = None) -> None:
    """Raise Conflict when ``source``'s mount cannot propagate as ``propagation`` asks
    (``table``: the mountinfo text, read from berthd's own when not given)."""
    if propagation not in ("shared", "rshared", "slave", "rslave"):
        return
    if table is None:
        with open(_MOUNTINFO, encoding="utf-8") as f:
            table = f.read()
    path = os.path.realpath(source)
    m = mountinfo.mount_of(path, table)
    if propagation.endswith("shared"):
        if not m.shared:
            raise Conflict(f'path "{path}" is mounted on "{m.mountpoint}" but it is not a shared mount')
    elif not (m.shared or m.slave):
        raise Conflict(f'path "{path}" is mounted on "{m.mountpoint}" but it is not a shared or slave mount')
