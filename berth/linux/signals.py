"""Signal dispositions libc will not touch: glibc's internal signals 32 (SIGCANCEL) and 33
(SIGSETXID).

glibc's sigaction() refuses them (EINVAL), and Python's signal module leaves them out of
valid_signals(); but a process started by glibc's posix_spawn (GNU make runs its recipes so)
inherits them ignored, and ignored signals survive execve. A container's process must not
inherit that from whoever started berthd, so they are reset with the raw rt_sigaction.

    reset_internal()   # 32 and 33 back to SIG_DFL; no-op where the syscall is unknown
"""

from __future__ import annotations

import ctypes
import platform

from berth.linux._libc import fn

INTERNAL = (32, 33)
SYS_RT_SIGACTION = {"x86_64": 13, "aarch64": 134, "riscv64": 134, "ppc64le": 173, "s390x": 174}.get(platform.machine())
_syscall = fn("syscall", ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p,
              ctypes.c_size_t)


class _KernelSigaction(ctypes.Structure):  # the kernel's struct sigaction, not libc's
    _fields_ = [("handler", ctypes.c_void_p), ("flags", ctypes.c_ulong), ("restorer", ctypes.c_void_p),
                ("mask", ctypes.c_ulong)]


_DFL = _KernelSigaction(None, 0, None, 0)  # made at import: the init calls this after a fork


def reset_internal() -> None:
    """Set signals 32 and 33 to SIG_DFL for the calling process (errors ignored: best effort,
    as for the other signals)."""
    if SYS_RT_SIGACTION is None:
        return
    for sig in INTERNAL:
        _syscall(SYS_RT_SIGACTION, sig, ctypes.byref(_DFL), None, 8)
