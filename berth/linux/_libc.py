"""The one ctypes handle on libc, and the errno -> OSError convention every wrapper uses.

Function pointers are resolved once, at import, so the container init (a forked child on the
hot path) never pays for a symbol lookup.
"""

from __future__ import annotations

import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)


def fn(name: str, restype: type | None, *argtypes: type) -> ctypes._CFuncPtr:  # type: ignore[name-defined]
    f = libc[name]  # a fresh pointer: argtypes differ per caller (ioctl)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


def check(ret: int, name: str, path: str | None = None) -> int:
    """Raise ``OSError(errno, name, path)`` when a libc call returned -1.

    The errno picks the subclass (FileNotFoundError, PermissionError...); ``strerror`` is the
    syscall's name, so callers can word the message (``mount /x: no such file or directory``).
    """
    if ret == -1:
        err = ctypes.get_errno()
        if path is None:
            raise OSError(err, name)
        raise OSError(err, name, path)
    return ret


def cstr(s: str | bytes | os.PathLike[str] | None) -> bytes | None:
    if s is None:
        return None
    return os.fsencode(s)
