"""ioctl(TIOCSCTTY): make a terminal the controlling terminal of the calling session leader."""

from __future__ import annotations

import ctypes
import fcntl  # at import time: the init calls these after pivot_root, with no Python files
import os
import struct

from berth.linux._libc import check, fn

TIOCSCTTY = 0x540E

_ioctl = fn("ioctl", ctypes.c_int, ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong)


def set_controlling_tty(fd: int) -> None:
    check(_ioctl(fd, TIOCSCTTY, 0), "ioctl(TIOCSCTTY)")


TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
TIOCSWINSZ = 0x5414
TIOCGWINSZ = 0x5413


def open_pty_master(ptmx: str = "/dev/ptmx") -> tuple[int, str]:
    """Open a new pty pair's master from ``ptmx`` and unlock it; the slave is in the devpts
    instance mounted at /dev/pts. Returns (master fd, slave path). See pty(7), ptmx(4)."""
    fd = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TIOCSPTLCK, struct.pack("i", 0))
        n = struct.unpack("I", fcntl.ioctl(fd, TIOCGPTN, b"\0" * 4))[0]
    except OSError as e:
        os.close(fd)
        raise OSError(e.errno, "ioctl(TIOCGPTN)", ptmx) from None
    return fd, f"/dev/pts/{n}"


def set_winsize(fd: int, rows: int, cols: int) -> None:
    """ioctl(TIOCSWINSZ): the kernel sends SIGWINCH to the terminal's foreground group."""
    fcntl.ioctl(fd, TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def get_winsize(fd: int) -> tuple[int, int]:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, TIOCGWINSZ, b"\0" * 8))
    return rows, cols
