"""close_range(2)."""

from __future__ import annotations

import ctypes
import enum

from berth.linux._libc import check, fn


class CloseRangeFlags(enum.IntFlag):
    NONE = 0
    UNSHARE = 1 << 1
    CLOEXEC = 1 << 2


_close_range = fn("close_range", ctypes.c_int, ctypes.c_uint, ctypes.c_uint, ctypes.c_int)


def close_range(first: int, last: int = 0xFFFFFFFF, flags: CloseRangeFlags | int = 0) -> None:
    check(_close_range(first, last, int(flags)), "close_range")
