"""Bring a network interface up with SIOCGIFFLAGS/SIOCSIFFLAGS (no netlink, no tools).

Only the container init uses this, for ``lo`` in a fresh network namespace.
"""

from __future__ import annotations

import ctypes
import enum
import os

from berth.linux._libc import check, fn

AF_INET = 2
SOCK_DGRAM = 2
SOCK_CLOEXEC = 0o2000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914


class IfFlags(enum.IntFlag):
    UP = 0x1
    BROADCAST = 0x2
    LOOPBACK = 0x8
    RUNNING = 0x40


class _Ifreq(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * 16), ("flags", ctypes.c_short), ("_pad", ctypes.c_byte * 22)]


_socket = fn("socket", ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int)
_ioctl = fn("ioctl", ctypes.c_int, ctypes.c_int, ctypes.c_ulong, ctypes.POINTER(_Ifreq))


def get_if_flags(name: str) -> IfFlags:
    fd = check(_socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket")
    try:
        req = _Ifreq(name.encode())
        check(_ioctl(fd, SIOCGIFFLAGS, ctypes.byref(req)), "ioctl(SIOCGIFFLAGS)", name)
        return IfFlags(req.flags & 0xFFFF)
    finally:
        os.close(fd)


def set_link_up(name: str) -> None:
    """ioctl(SIOCSIFFLAGS) adding IFF_UP to the interface's flags."""
    fd = check(_socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket")
    try:
        req = _Ifreq(name.encode())
        check(_ioctl(fd, SIOCGIFFLAGS, ctypes.byref(req)), "ioctl(SIOCGIFFLAGS)", name)
        req.flags |= IfFlags.UP
        check(_ioctl(fd, SIOCSIFFLAGS, ctypes.byref(req)), "ioctl(SIOCSIFFLAGS)", name)
    finally:
        os.close(fd)
