"""A container's processes start with every signal at its default, whatever berthd inherited.

glibc's posix_spawn leaves its internal signals 32 and 33 ignored in the child, and GNU make
runs its recipes with it: a berthd started from a Makefile (``make demo``, CI's ``make test``)
had both ignored, and ignored signals survive execve. libc's sigaction and Python's signal
module cannot reset them; dockerd's containers (runc, Go) start with none ignored."""

from __future__ import annotations

import sys

import pytest

from tests.integration.daemon import Daemon, suite_args

pytestmark = pytest.mark.root

# what posix_spawn leaves: 32 and 33 ignored (the raw rt_sigaction: libc's refuses them), then exec
IGNORE_32_33 = ("import ctypes, os, sys; from berth.linux.signals import SYS_RT_SIGACTION as nr; "
                "libc = ctypes.CDLL(None); sa = (ctypes.c_ulong * 4)(1, 0, 0, 0); "  # SIG_IGN
                "[libc.syscall(nr, s, ctypes.byref(sa), None, 8) for s in (32, 33)]; "
                "os.execvp(sys.argv[1], sys.argv[1:])")


def _ignored(text: str) -> int:
    return int(next(line for line in text.splitlines() if line.startswith("SigIgn:")).split()[1], 16)


def test_signals_ignored_by_berthds_starter_do_not_reach_containers() -> None:
    d = Daemon(args=suite_args())
    d.launcher = [sys.executable, "-c", IGNORE_32_33]
    d.start()
    try:
        assert _ignored(open(f"/proc/{d.proc.pid}/status").read()) & (3 << 31), "the launcher left 32 and 33 ignored"
        d.import_busybox()
        p = d.docker("run", "--rm", "busybox", "cat", "/proc/self/status")
        assert p.returncode == 0, p.stderr
        assert _ignored(p.stdout) == 0, p.stdout  # the container's own process (the init's exec)
        assert d.docker("run", "-d", "--name", "sigs", "busybox", "sleep", "60").returncode == 0
        p = d.docker("exec", "sigs", "cat", "/proc/self/status")
        assert p.returncode == 0, p.stderr
        assert _ignored(p.stdout) == 0, p.stdout  # an exec (berth-nsexec, or the Python child without it)
    finally:
        d.cleanup()
