"""unshare(2) and setns(2)."""

from __future__ import annotations

import ctypes

from berth.linux._libc import check, fn


class CloneFlags:
    """Clone flags as plain ints, not an ``enum.IntFlag``: an IntFlag makes (and caches) a member
    object for each new combination, 0.1-0.3 ms apiece in a freshly forked process, and the
    container init combines these flags a dozen times per start (docs/performance.md)."""

    NONE = 0
    NEWTIME = 0x00000080
    NEWNS = 0x00020000
    NEWCGROUP = 0x02000000
    NEWUTS = 0x04000000
    NEWIPC = 0x08000000
    NEWUSER = 0x10000000
    NEWPID = 0x20000000
    NEWNET = 0x40000000


_unshare = fn("unshare", ctypes.c_int, ctypes.c_int)
_setns = fn("setns", ctypes.c_int, ctypes.c_int, ctypes.c_int)


def unshare(flags: int) -> None:
    check(_unshare(int(flags)), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    check(_setns(fd, int(nstype)), "setns")
