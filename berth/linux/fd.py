"""close_range(2); SIOCOUTQ (bytes a socket has sent that its peer has not read yet);
F_SETPIPE_SZ (a pipe's capacity); SO_PEERCRED (the process at the other end of a Unix socket)."""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct
import termios

from berth.linux._libc import check, fn


class CloseRangeFlags:
    """CloseRange flags as plain ints, not an ``enum.IntFlag``: an IntFlag makes (and caches) a member
    object for each new combination, 0.1-0.3 ms apiece in a freshly forked process, and the
    container init combines these flags a dozen times per start (docs/performance.md)."""

    NONE = 0
    UNSHARE = 1 << 1
    CLOEXEC = 1 << 2


_close_range = fn("close_range", ctypes.c_int, ctypes.c_uint, ctypes.c_uint, ctypes.c_int)


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
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


def peer_pid(sock: socket.socket) -> int:
    """getsockopt(SO_PEERCRED): the pid of the process that connected a Unix socket (0 if none)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[0])
