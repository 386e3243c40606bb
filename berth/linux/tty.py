"""ioctl(TIOCSCTTY): make a terminal the controlling terminal of the calling session leader."""

from __future__ import annotations

import ctypes

from berth.linux._libc import check, fn

TIOCSCTTY = 0x540E

_ioctl = fn("ioctl", ctypes.c_int, ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong)


def set_controlling_tty(fd: int) -> None:
    check(_ioctl(fd, TIOCSCTTY, 0), "ioctl(TIOCSCTTY)")
