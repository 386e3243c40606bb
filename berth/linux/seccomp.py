"""Installing a compiled seccomp BPF program on the calling thread: prctl(PR_SET_SECCOMP).

The program comes from runtime/seccomp.compile(); this module only hands it to the kernel.
The kernel accepts it only if the thread has no_new_privs set or holds CAP_SYS_ADMIN in its
user namespace (seccomp(2), "SECCOMP_SET_MODE_FILTER"). Call it as late as possible before
execve, after privileged setup, because from then on the filter applies to the caller too.
"""

from __future__ import annotations

import ctypes
import os

PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
_SOCK_FILTER_SIZE = 8  # struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }
_BPF_MAXINSNS = 4096


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_prctl.restype = ctypes.c_int
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]


def load(bpf: bytes) -> None:
    """Install bpf (a struct sock_filter array) as a seccomp filter for this thread.

    Raises OSError(errno, "seccomp", ...): EINVAL for a malformed program, EACCES when neither
    no_new_privs nor CAP_SYS_ADMIN is present.
    """
    n, rem = divmod(len(bpf), _SOCK_FILTER_SIZE)
    if rem or n == 0 or n > _BPF_MAXINSNS:
        raise OSError(22, "seccomp", f"bad BPF program length {len(bpf)} bytes")
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(n, ctypes.addressof(buf))
    if _prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "seccomp", f"prctl(PR_SET_SECCOMP): {os.strerror(err)}")
