"""prlimit(2) on the calling process (or another), with the rlimit resources named as in the OCI spec."""

from __future__ import annotations

import ctypes
import enum

from berth.linux._libc import check, fn


class Resource(enum.IntEnum):
    CPU = 0
    FSIZE = 1
    DATA = 2
    STACK = 3
    CORE = 4
    RSS = 5
    NPROC = 6
    NOFILE = 7
    MEMLOCK = 8
    AS = 9
    LOCKS = 10
    SIGPENDING = 11
    MSGQUEUE = 12
    NICE = 13
    RTPRIO = 14
    RTTIME = 15


class _Rlimit(ctypes.Structure):
    _fields_ = [("cur", ctypes.c_uint64), ("max", ctypes.c_uint64)]


_prlimit = fn("prlimit", ctypes.c_int, ctypes.c_int, ctypes.c_int,
              ctypes.POINTER(_Rlimit), ctypes.POINTER(_Rlimit))


def setrlimit(resource: Resource | int, soft: int, hard: int, pid: int = 0) -> None:
    """Set a limit of process ``pid`` (0: the caller)."""
    new = _Rlimit(soft & 0xFFFFFFFFFFFFFFFF, hard & 0xFFFFFFFFFFFFFFFF)
    check(_prlimit(pid, int(resource), ctypes.byref(new), None), "prlimit", Resource(resource).name)


def getrlimit(resource: Resource | int) -> tuple[int, int]:
    old = _Rlimit()
    check(_prlimit(0, int(resource), None, ctypes.byref(old)), "prlimit", Resource(resource).name)
    return old.cur, old.max
