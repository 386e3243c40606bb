"""mount(2), umount2(2), pivot_root(2), and mount_setattr(2) on a mounted tree."""

from __future__ import annotations

import ctypes
import os

from berth.linux._libc import check, cstr, fn


class MountFlags:
    """Mount flags as plain ints, not an ``enum.IntFlag``: an IntFlag makes (and caches) a member
    object for each new combination, 0.1-0.3 ms apiece in a freshly forked process, and the
    container init combines these flags a dozen times per start (docs/performance.md)."""

    NONE = 0
    RDONLY = 0x1
    NOSUID = 0x2
    NODEV = 0x4
    NOEXEC = 0x8
    SYNCHRONOUS = 0x10
    REMOUNT = 0x20
    MANDLOCK = 0x40
    DIRSYNC = 0x80
    NOSYMFOLLOW = 0x100
    NOATIME = 0x400
    NODIRATIME = 0x800
    BIND = 0x1000
    MOVE = 0x2000
    REC = 0x4000
    SILENT = 0x8000
    UNBINDABLE = 1 << 17
    PRIVATE = 1 << 18
    SLAVE = 1 << 19
    SHARED = 1 << 20
    RELATIME = 1 << 21
    STRICTATIME = 1 << 24
    LAZYTIME = 1 << 25


class UmountFlags:
    """Umount flags as plain ints, not an ``enum.IntFlag``: an IntFlag makes (and caches) a member
    object for each new combination, 0.1-0.3 ms apiece in a freshly forked process, and the
    container init combines these flags a dozen times per start (docs/performance.md)."""

    NONE = 0
    FORCE = 1
    DETACH = 2
    EXPIRE = 4
    NOFOLLOW = 8


_mount = fn("mount", ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
            ctypes.c_ulong, ctypes.c_char_p)
_umount2 = fn("umount2", ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
_pivot_root = fn("pivot_root", ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p)
_setattr = fn("syscall", ctypes.c_long, ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint,
              ctypes.c_void_p, ctypes.c_size_t)

SYS_MOUNT_SETATTR = 442  # the same on every architecture (the unified table)
_AT_FDCWD = -100
_AT_RECURSIVE = 0x8000
# MOUNT_ATTR_RDONLY, _NOSUID, _NODEV and _NOEXEC have the values of MS_RDONLY ... MS_NOEXEC
SETATTR_FLAGS = MountFlags.RDONLY | MountFlags.NOSUID | MountFlags.NODEV | MountFlags.NOEXEC


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def mount(source: str | None, target: str | os.PathLike[str], fstype: str | None,
          flags: int = 0, data: str | None = None) -> None:
    check(_mount(cstr(source), cstr(target), cstr(fstype), int(flags), cstr(data)),
          "mount", os.fspath(target))


def umount2(target: str | os.PathLike[str], flags: int = 0) -> None:
    check(_umount2(cstr(target), int(flags)), "umount2", os.fspath(target))


def pivot_root(new_root: str | os.PathLike[str], put_old: str | os.PathLike[str]) -> None:
    check(_pivot_root(cstr(new_root), cstr(put_old)), "pivot_root", os.fspath(new_root))


def set_tree_flags(target: str | os.PathLike[str], flags: int) -> None:
    """mount_setattr(2) with AT_RECURSIVE: add ``flags`` (of SETATTR_FLAGS) to the mount at
    ``target`` and to every mount below it, in one call where each mount took a bind remount.
    Flags already set stay set. ENOSYS before Linux 5.12."""
    attr = _MountAttr(flags & SETATTR_FLAGS, 0, 0, 0)
    check(_setattr(SYS_MOUNT_SETATTR, _AT_FDCWD, cstr(target), _AT_RECURSIVE, ctypes.addressof(attr),
                   ctypes.sizeof(attr)), "mount_setattr", os.fspath(target))
