"""ctypes bindings to libseccomp (libseccomp.so.2), enough to build a filter and export BPF.

No policy here: runtime/seccomp.py decides the rules; this module only turns them into
libseccomp calls. The library is loaded lazily, on the first call that needs it, so importing
this module costs nothing on the container start path when the compiled program is cached.

Worked sequence::

    f = Filter(SCMP_ACT_ERRNO | 1)        # seccomp_init
    f.add_arch(arch_resolve("SCMP_ARCH_X86"))
    f.add_rule(SCMP_ACT_ALLOW, syscall_resolve("read"), [])
    bpf = f.export_bpf()                  # raw struct sock_filter[] bytes
    f.release()

See seccomp_init(3), seccomp_rule_add(3), seccomp_export_bpf(3).
"""

from __future__ import annotations

import ctypes
import enum
import os
from collections.abc import Sequence

# Actions, from <seccomp.h>.
SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_KILL = SCMP_ACT_KILL_THREAD
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_NOTIFY = 0x7FC00000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_ACT_ERRNO = 0x00050000
_SCMP_ACT_TRACE = 0x7FF00000

__NR_SCMP_ERROR = -1


def act_errno(errno: int) -> int:
    return _SCMP_ACT_ERRNO | (errno & 0xFFFF)


def act_trace(msg: int) -> int:
    return _SCMP_ACT_TRACE | (msg & 0xFFFF)


class Cmp(enum.IntEnum):
    """enum scmp_compare."""

    NE = 1
    LT = 2
    LE = 3
    EQ = 4
    GE = 5
    GT = 6
    MASKED_EQ = 7


class Attr(enum.IntEnum):
    """enum scmp_filter_attr."""

    ACT_DEFAULT = 1
    ACT_BADARCH = 2
    CTL_NNP = 3
    CTL_TSYNC = 4
    API_TSKIP = 5
    CTL_LOG = 6
    CTL_SSB = 7
    CTL_OPTIMIZE = 8
    API_SYSRAWRC = 9


class ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


_lib: ctypes.CDLL | None = None


def _load() -> ctypes.CDLL:
    global _lib
    if _lib is not None:
        return _lib
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError as e:
        raise OSError(e.errno or 2, f"load libseccomp.so.2: {e}", "libseccomp.so.2") from e
    vp, u32, i, ci = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_char_p
    sigs = {
        "seccomp_init": (vp, [u32]),
        "seccomp_release": (None, [vp]),
        "seccomp_arch_add": (i, [vp, u32]),
        "seccomp_arch_exist": (i, [vp, u32]),
        "seccomp_arch_native": (u32, []),
        "seccomp_arch_resolve_name": (u32, [ci]),
        "seccomp_syscall_resolve_name": (i, [ci]),
        "seccomp_rule_add_array": (i, [vp, u32, i, ctypes.c_uint, ctypes.POINTER(ArgCmp)]),
        "seccomp_attr_set": (i, [vp, ctypes.c_int, u32]),
        "seccomp_export_bpf": (i, [vp, i]),
        "seccomp_version": (ctypes.POINTER(_Version), []),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    _lib = lib
    return lib


def version() -> tuple[int, int, int]:
    v = _load().seccomp_version().contents
    return (v.major, v.minor, v.micro)


def arch_native() -> int:
    return int(_load().seccomp_arch_native())


def arch_resolve(name: str) -> int:
    """SCMP_ARCH_X86_64 / "x86_64" -> arch token; 0 when libseccomp does not know it."""
    short = name.removeprefix("SCMP_ARCH_").lower()
    return int(_load().seccomp_arch_resolve_name(short.encode()))


def syscall_resolve(name: str) -> int:
    """Syscall number on the native arch (or a negative pseudo number); -1 if unknown."""
    return int(_load().seccomp_syscall_resolve_name(name.encode()))


def _check(rc: int, what: str, detail: str = "") -> None:
    # libseccomp returns -errno.
    if rc < 0:
        raise OSError(-rc, f"{what}: {os.strerror(-rc)}", detail or None)


class Filter:
    """One scmp_filter_ctx. Call release() (or use as a context manager) when done."""

    def __init__(self, default_action: int) -> None:
        self._lib = _load()
        ctx = self._lib.seccomp_init(default_action)
        if not ctx:
            raise OSError(22, "seccomp_init: invalid default action", hex(default_action))
        self._ctx: int | None = ctx

    def __enter__(self) -> Filter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self._ctx:
            self._lib.seccomp_release(self._ctx)
            self._ctx = None

    def set_attr(self, attr: Attr, value: int) -> None:
        _check(self._lib.seccomp_attr_set(self._ctx, int(attr), value), "seccomp_attr_set", attr.name)

    def add_arch(self, token: int) -> None:
        rc = self._lib.seccomp_arch_add(self._ctx, token)
        if rc == -17:  # EEXIST: the native arch is in every new filter
            return
        _check(rc, "seccomp_arch_add", hex(token))

    def add_rule(self, action: int, syscall: int, args: Sequence[tuple[int, Cmp, int, int]]) -> None:
        """args: (index, op, datum_a, datum_b) comparisons, all of which must match."""
        n = len(args)
        arr = (ArgCmp * max(n, 1))()
        for k, (index, op, a, b) in enumerate(args):
            arr[k].arg, arr[k].op, arr[k].datum_a, arr[k].datum_b = index, int(op), a, b
        rc = self._lib.seccomp_rule_add_array(self._ctx, action, syscall, n, arr)
        _check(rc, "seccomp_rule_add", str(syscall))

    def export_bpf(self) -> bytes:
        """The filter as a raw struct sock_filter array (8 bytes per instruction)."""
        fd = os.memfd_create("berth-seccomp", os.MFD_CLOEXEC)
        try:
            _check(self._lib.seccomp_export_bpf(self._ctx, fd), "seccomp_export_bpf")
            size = os.fstat(fd).st_size
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)
