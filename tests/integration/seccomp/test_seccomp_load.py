"""Load Docker's compiled default profile in a forked child and probe syscalls from inside it.

The child sets no_new_privs (as an unprivileged container would need), loads the filter, runs
its probes and reports "name=errno" pairs through a pipe; the pytest process is never filtered.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import platform
import time
from collections.abc import Callable

import pytest

from berth.linux import seccomp as linux_seccomp
from berth.runtime import seccomp

pytestmark = [pytest.mark.root, pytest.mark.skipif(platform.machine() != "x86_64", reason="x86_64 syscall numbers")]

DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]

PR_SET_NO_NEW_PRIVS = 38
SYS_KEYCTL = 250
SYS_CLONE3 = 435
CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000

_libc = ctypes.CDLL(None, use_errno=True)


def _errno_of(fn: Callable[[], int]) -> int:
    ctypes.set_errno(0)
    rc = fn()
    return 0 if rc != -1 else ctypes.get_errno()


def probes() -> dict[str, int]:
    out = {
        "keyctl": _errno_of(lambda: _libc.syscall(SYS_KEYCTL, 0, 0, 0, 0, 0)),
        "unshare_user": _errno_of(lambda: _libc.unshare(CLONE_NEWUSER)),
        "unshare_ns": _errno_of(lambda: _libc.unshare(CLONE_NEWNS)),
        "clone3": _errno_of(lambda: _libc.syscall(SYS_CLONE3, 0, 0)),
        "personality_bad": _errno_of(lambda: _libc.personality(0x0040000)),  # ADDR_COMPAT_LAYOUT
    }
    try:  # normal syscalls still work: file I/O, pipes, fork+wait, time
        with open("/proc/self/status") as f:
            status = f.read()
        out["seccomp_mode"] = int(status.split("Seccomp:")[1].split()[0])
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(w, b"k")
            os._exit(7)
        _, st = os.waitpid(pid, 0)
        out["fork"] = 0 if os.read(r, 1) == b"k" and os.WEXITSTATUS(st) == 7 else -1
        time.monotonic()
        out["getpid"] = 0 if os.getpid() > 0 else -1
    except OSError as e:
        out["normal"] = e.errno or -1
    return out


def run_in_child(bpf: bytes | None, *, nnp: bool = True) -> dict:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            if nnp and _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
            if bpf is not None:
                linux_seccomp.load(bpf)
            result = probes()
        except OSError as e:
            result = {"load_error": e.errno}
        except BaseException as e:  # noqa: BLE001 -- never return into pytest
            result = {"error": repr(e)}
        os.write(w, json.dumps(result).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


@pytest.fixture(scope="module")
def default_bpf() -> bytes:
    return seccomp.compile(seccomp.profile_for(DEFAULT_CAPS))


def test_default_profile_blocks_and_allows(default_bpf: bytes) -> None:
    res = run_in_child(default_bpf)
    assert res.get("seccomp_mode") == 2, res
    assert res["keyctl"] == errno.EPERM
    assert res["unshare_user"] == errno.EPERM
    assert res["unshare_ns"] == errno.EPERM
    assert res["clone3"] == errno.ENOSYS  # Docker's clone3 rule: libc falls back to clone
    assert res["personality_bad"] == errno.EPERM
    assert res["fork"] == 0 and res["getpid"] == 0


def test_without_filter_unshare_user_works() -> None:
    """Control: the same probes unfiltered, so the EPERMs above are seccomp's doing."""
    res = run_in_child(None)
    assert res["seccomp_mode"] == 0
    assert res["unshare_user"] == 0
    assert res["keyctl"] != errno.EPERM


def test_sys_admin_profile_allows_unshare() -> None:
    bpf = seccomp.compile(seccomp.profile_for(DEFAULT_CAPS + ["CAP_SYS_ADMIN"]))
    res = run_in_child(bpf)
    assert res["unshare_user"] == 0 and res["keyctl"] == errno.EPERM


def test_load_rejects_garbage() -> None:
    res = run_in_child(b"\x00" * 7)
    assert res == {"load_error": errno.EINVAL}


def test_load_needs_nnp_or_cap_sys_admin(default_bpf: bytes) -> None:
    # As root with CAP_SYS_ADMIN the kernel accepts the filter without no_new_privs.
    res = run_in_child(default_bpf, nnp=False)
    assert res.get("seccomp_mode") == 2, res


def test_compile_timing(tmp_path) -> None:
    prof = seccomp.profile_for(DEFAULT_CAPS)
    seccomp._memo.clear()
    t0 = time.perf_counter()
    bpf = seccomp.compile(prof, cache_dir=tmp_path)
    t1 = time.perf_counter()
    seccomp._memo.clear()
    assert seccomp.compile(prof, cache_dir=tmp_path) == bpf
    t2 = time.perf_counter()
    assert seccomp.compile(prof, cache_dir=tmp_path) == bpf
    t3 = time.perf_counter()
    print(f"\nseccomp compile: cold {1e3 * (t1 - t0):.2f} ms, disk cache {1e3 * (t2 - t1):.3f} ms, "
          f"memo {1e3 * (t3 - t2):.3f} ms, {len(bpf) // 8} instructions")
