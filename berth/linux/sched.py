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


class _CloneArgs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size", "tls",
        "set_tid", "set_tid_size", "cgroup")]


SYS_CLONE3 = 435  # the unified syscall table: the same number on every architecture
_SIGCHLD = 17
_clone3 = fn("syscall", ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_size_t)


def clone(flags: int) -> int:
    """clone3(2) into new namespaces ``flags``, SIGCHLD at exit: fork(2) that also makes, e.g.
    with NEWUSER|NEWPID, the child PID 1 of a pid namespace its own user namespace owns. 0 in
    the child, its pid in the parent.

    A raw syscall: Python's at-fork handlers do not run as they do for os.fork, so the caller
    must be single-threaded and the child must leave through execve(2) or os._exit."""
    args = _CloneArgs(flags=flags, exit_signal=_SIGCHLD)
    return int(check(_clone3(SYS_CLONE3, ctypes.addressof(args), ctypes.sizeof(args)), "clone3"))
