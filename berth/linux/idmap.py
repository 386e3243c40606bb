"""Idmapped mounts and user namespace maps: open_tree(2), mount_setattr(2) with
MOUNT_ATTR_IDMAP, move_mount(2) (Linux >= 5.12), and /proc/<pid>/{uid,gid}_map.

An idmapped mount shows a tree's files through a user namespace's mapping without changing
them on disk: ``tree = open_tree(path, clone=True)``, ``set_idmap(tree, userns_fd)``, then
``move_mount(tree, target)`` attaches it (possibly from another mount namespace). The three
syscalls have the same number on every architecture (the unified table).
"""

from __future__ import annotations

import ctypes
import os

from berth.linux._libc import check, cstr, fn

SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442

OPEN_TREE_CLONE = 1
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOUNT_ATTR_IDMAP = 0x00100000
MOVE_MOUNT_F_EMPTY_PATH = 0x00000004


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


_syscall = fn("syscall", ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_char_p, ctypes.c_ulong,
              ctypes.c_void_p, ctypes.c_size_t)


def open_tree(path: str | os.PathLike[str], recursive: bool = False) -> int:
    """A detached copy of the mount at ``path`` (OPEN_TREE_CLONE), close-on-exec; its fd."""
    flags = OPEN_TREE_CLONE | os.O_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    return int(check(_syscall(SYS_OPEN_TREE, AT_FDCWD, cstr(path), flags, None, 0), "open_tree",
                     os.fspath(path)))


def set_idmap(tree: int, userns_fd: int, recursive: bool = False) -> None:
    """mount_setattr(MOUNT_ATTR_IDMAP): the detached mount ``tree`` maps ids through the user
    namespace ``userns_fd``."""
    attr = _MountAttr(MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    check(_syscall(SYS_MOUNT_SETATTR, tree, b"", flags, ctypes.addressof(attr), ctypes.sizeof(attr)),
          "mount_setattr")


_move_mount = fn("syscall", ctypes.c_long, ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                 ctypes.c_char_p, ctypes.c_uint)


def move_mount(tree: int, target: str | os.PathLike[str]) -> None:
    """Attach the detached mount ``tree`` at ``target``."""
    check(_move_mount(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, cstr(target), MOVE_MOUNT_F_EMPTY_PATH),
          "move_mount", os.fspath(target))


def write_id_maps(pid: int, uid_map: str, gid_map: str) -> None:
    """Write ``/proc/<pid>/uid_map`` and ``gid_map`` (lines ``inside outside count``), once
    each, as the kernel allows; from the parent user namespace, with CAP_SET[UG]ID there, so
    setgroups(2) stays allowed inside."""
    for name, text in (("uid_map", uid_map), ("gid_map", gid_map)):
        fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
