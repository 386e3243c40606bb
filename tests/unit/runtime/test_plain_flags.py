"""The flags the container init combines on every start are plain ints (docs/performance.md,
"The start path", third round): an ``enum.IntFlag`` makes a member object for each new
combination, 0.1-0.3 ms apiece in a freshly forked process, a few ms per start in all."""

from __future__ import annotations

import enum
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from berth.linux.fd import CloseRangeFlags
from berth.linux.mount import MountFlags as MF
from berth.linux.mount import UmountFlags
from berth.linux.sched import CloneFlags
from berth.runtime import init, plan
from berth.runtime.host import host_info
from berth.oci import spec as oci


def test_combined_flags_are_plain_ints() -> None:
    for value in (MF.BIND | MF.REC | MF.NOSUID, MF.NOSUID & ~MF.RDONLY, UmountFlags.DETACH,
                  CloneFlags.NEWPID | CloneFlags.NEWNS, CloseRangeFlags.CLOEXEC):
        assert type(value) is int


def test_the_values_are_the_kernels() -> None:
    assert (MF.RDONLY, MF.BIND, MF.REC, MF.PRIVATE, MF.SLAVE) == (1, 0x1000, 0x4000, 1 << 18, 1 << 19)
    assert (CloneFlags.NEWNS, CloneFlags.NEWPID, CloneFlags.NEWUSER) == (0x20000, 0x20000000, 0x10000000)
    assert getattr(os, "CLONE_NEWNET", CloneFlags.NEWNET) == CloneFlags.NEWNET


def test_a_plans_mount_flags_and_namespaces_are_plain_ints() -> None:
    s = oci.Spec(root=oci.Root(path="/tmp/rootfs"), process=oci.Process(args=["true"]),
                 mounts=[oci.Mount(destination="/proc", type="proc", source="proc", options=["nosuid", "noexec"]),
                         oci.Mount(destination="/x", type="bind", source="/tmp", options=["rbind", "ro"])],
                 linux=oci.Linux(namespaces=[oci.Namespace(type="mount"), oci.Namespace(type="pid")]))
    p = plan.build_plan(s, host_info())
    assert p.mounts and all(type(m.flags) is int and type(m.propagation) is int for m in p.mounts)
    assert type(p.unshare) is int and type(p.root_propagation) is int


def _in_child(fn: Callable[[], str]) -> str:
    """fn's answer, run in a forked child (the signal dispositions are the child's to change)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(w, fn().encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out


def _reset_and_report() -> str:
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, lambda *_: None)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    calls: list[str] = []

    def profile(frame: Any, event: str, arg: object) -> None:
        if event == "call" and frame.f_code.co_filename == enum.__file__:
            calls.append(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        init._reset_signals()
    finally:
        sys.setprofile(None)
    status = dict(line.split(":\t") for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
    return f"{status['SigIgn']} {status['SigCgt']} {status['SigBlk']} {len(calls)}"


def test_the_inits_signal_reset_makes_no_enum_and_leaves_every_signal_default() -> None:
    """Ignored, caught and blocked signals are all back to default before execve, and no
    enum conversion ran on the way (it cost ~0.5 ms per start in a fresh fork)."""
    report = _in_child(_reset_and_report)
    ign, cgt, blk, enum_calls = report.split()
    # glibc keeps 32 and 33 for itself (a threaded process, as pytest may be, catches 33)
    user = sum(1 << (int(s) - 1) for s in signal.valid_signals())
    assert int(ign, 16) & user == 0 and int(cgt, 16) & user == 0 and int(blk, 16) & user == 0, report
    assert enum_calls == "0", report
