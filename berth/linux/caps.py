"""capget(2) and capset(2), version 3 (64-bit sets)."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from berth.linux._libc import check, fn

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_Data2 = _Data * 2
_capget = fn("capget", ctypes.c_int, ctypes.POINTER(_Header), ctypes.POINTER(_Data))
_capset = fn("capset", ctypes.c_int, ctypes.POINTER(_Header), ctypes.POINTER(_Data))


@dataclass(frozen=True)
class CapSets:
    """Three capability sets as 64-bit masks (bit n = capability n)."""

    effective: int
    permitted: int
    inheritable: int


def capget(pid: int = 0) -> CapSets:
    hdr = _Header(_LINUX_CAPABILITY_VERSION_3, pid)
    data = _Data2()
    check(_capget(ctypes.byref(hdr), data), "capget")
    return CapSets(data[0].effective | data[1].effective << 32,
                   data[0].permitted | data[1].permitted << 32,
                   data[0].inheritable | data[1].inheritable << 32)


def capset(sets: CapSets) -> None:
    hdr = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    m = 0xFFFFFFFF
    data = _Data2(_Data(sets.effective & m, sets.permitted & m, sets.inheritable & m),
                  _Data(sets.effective >> 32, sets.permitted >> 32, sets.inheritable >> 32))
    check(_capset(ctypes.byref(hdr), data), "capset")
