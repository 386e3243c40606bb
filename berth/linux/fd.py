"""close_range(2); SIOCOUTQ (bytes a socket has sent that its peer has not read yet);
F_SETPIPE_SZ (a pipe's capacity)."""

from __future__ import annotations

import ctypes
import enum
import fcntl
import struct
import termios

from berth.linux._libc import check, fn


class CloseRangeFlags(enum.IntFlag):
    NONE = 0
    UNSHARE = 1 << 1
    CLOEXEC = 1 << 2


_close_range = fn("close_range", ctypes.c_int, ctypes.c_uint, ctypes.c_uint, ctypes.c_int)


def close_range(first: int, last: int = 0xFFFFFFFF, flags: CloseRangeFlags | int = 0) -> None:
    check(_close_range(first, last, int(flags)), "close_range")


def unread_output(fd: int) -> int:
    """ioctl(SIOCOUTQ): on a Unix stream socket, the bytes written that the peer has not read."""
    buf = fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0")  # SIOCOUTQ == TIOCOUTQ
    return int(struct.unpack("i", buf)[0])


F_SETPIPE_SZ = 1031


def set_pipe_size(fd: int, size: int) -> int:
    """fcntl(F_SETPIPE_SZ): the pipe's capacity (rounded up to pages by the kernel); returns it.
    Pages are allocated as data is written, so a large capacity costs nothing while empty."""
    return int(fcntl.fcntl(fd, F_SETPIPE_SZ, size))
