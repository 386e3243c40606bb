"""prctl(2) operations the container init needs: bounding set, ambient set, keep-caps, no_new_privs."""

from __future__ import annotations

import ctypes

from berth.linux._libc import check, fn

PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

_ul = ctypes.c_ulong
_prctl = fn("prctl", ctypes.c_int, ctypes.c_int, _ul, _ul, _ul, _ul)


def set_keepcaps(on: bool) -> None:
    check(_prctl(PR_SET_KEEPCAPS, int(on), 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")


def capbset_read(cap: int) -> bool:
    return bool(check(_prctl(PR_CAPBSET_READ, cap, 0, 0, 0), "prctl(PR_CAPBSET_READ)"))


def capbset_drop(cap: int) -> None:
    check(_prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "prctl(PR_CAPBSET_DROP)")


def cap_ambient_clear_all() -> None:
    check(_prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "prctl(PR_CAP_AMBIENT_CLEAR_ALL)")


def cap_ambient_raise(cap: int) -> None:
    check(_prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0), "prctl(PR_CAP_AMBIENT_RAISE)")


def set_no_new_privs() -> None:
    check(_prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


def get_no_new_privs() -> bool:
    return bool(check(_prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), "prctl(PR_GET_NO_NEW_PRIVS)"))


def set_pdeathsig(sig: int) -> None:
    check(_prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def set_dumpable(on: bool) -> None:
    """PR_SET_DUMPABLE: whether the process's owner (without CAP_SYS_PTRACE over its memory's
    user namespace) may open its /proc/<pid>/ns/*; a change of uid turns it off."""
    check(_prctl(PR_SET_DUMPABLE, int(on), 0, 0, 0), "prctl(PR_SET_DUMPABLE)")


def get_dumpable() -> bool:
    return bool(check(_prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_GET_DUMPABLE)"))


def set_name(name: str) -> None:
    """PR_SET_NAME: the thread's comm (what ps shows), at most 15 bytes."""
    buf = ctypes.create_string_buffer(name.encode()[:15])
    check(_prctl(15, ctypes.addressof(buf), 0, 0, 0), "prctl(PR_SET_NAME)")


def set_child_subreaper() -> None:
    check(_prctl(36, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")
