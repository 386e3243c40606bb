"""sethostname(2)."""

from __future__ import annotations

import ctypes

from berth.linux._libc import check, fn

_sethostname = fn("sethostname", ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t)


def sethostname(name: str) -> None:
    b = name.encode()
    check(_sethostname(b, len(b)), "sethostname", name)
