"""Create and start a container from an OCI spec: the runtime's public interface.

Lifecycle (the shim drives it; single-threaded, synchronous, never the asyncio daemon):

    init = create(spec, stdin=0, stdout=w, stderr=w)   # init is set up, blocked before execve
    init.start()                                        # execve; raises ExecFailed
    os.waitpid(init.pid, 0)                             # the caller reaps PID 1
    delete(spec)                                        # remove the cgroup

``create`` does the work (host facts, seccomp compilation, the cgroup, the plan) before fork;
the child only applies the plan (``init.run``). PID and time namespaces apply to children
only, so the parent enters them around ``fork()`` and returns to its own right after: the
forked child is then PID 1 of its namespace *and* the caller's direct child.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from berth.errors import RuntimeFailure
from berth.linux import sched
from berth.linux.sched import CloneFlags
from berth.oci.spec import Spec
from berth.runtime import _sync, init
from berth.runtime.host import host_info
from berth.runtime.plan import PlanError, build_plan

_NS_FILES = {int(CloneFlags.NEWPID): "pid", int(CloneFlags.NEWTIME): "time"}


class SetupFailed(RuntimeFailure):
    """The init could not set the container up; str() says which step and why."""

    def __init__(self, message: str, step: str = "", errno: int = 0) -> None:
        super().__init__(message)
        self.step = step
        self.errno = errno


class ExecFailed(RuntimeFailure):
    """execve of the container process failed; str() is Docker's text, e.g.
    ``exec: "nosuchcmd": executable file not found in $PATH``."""


class Init:
    """The container's PID 1, set up and blocked before execve."""

    def __init__(self, pid: int, ctl: int, report: int, cgroup: Any | None) -> None:
        self.pid = pid
        self.cgroup = cgroup
        self._ctl: int | None = ctl
        self._report: int | None = report

    def start(self) -> None:
        """Let the init execve; return once it did. Raises ExecFailed (the init then exits)."""
        if self._ctl is None or self._report is None:
            raise RuntimeFailure("container already started or aborted")
        try:
            os.write(self._ctl, _sync.START)
            msg = _sync.recv(self._report)
        except BrokenPipeError:
            msg = None
        finally:
            self._close()
        if isinstance(msg, _sync.ExecError):
            raise ExecFailed(msg.message)

    def abort(self) -> None:
        """SIGKILL the init before start and reap it."""
        self._close()
        _kill_and_reap(self.pid)

    def _close(self) -> None:
        for fd in (self._ctl, self._report):
            if fd is not None:
                os.close(fd)
        self._ctl = self._report = None


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _open_cgroup(spec: Spec) -> Any | None:
    path = spec.linux.cgroupsPath if spec.linux else None
    if not path:
        return None
    from berth.runtime.cgroups import open_cgroup  # the colleague's module

    return open_cgroup(path)


def _seccomp_bpf(spec: Spec, cache: Path | None) -> bytes | None:
    if spec.linux is None or spec.linux.seccomp is None:
        return None
    from berth.runtime import seccomp  # the colleague's module

    return seccomp.compile(spec.linux.seccomp, cache)


def _console(stdin: int, terminal: bool) -> str | None:
    return os.ttyname(stdin) if terminal and os.isatty(stdin) else None


class _ForkNamespaces:
    """Enter the pid/time namespaces for the next fork(); leave them right after."""

    def __init__(self, unshare: int, join: tuple[tuple[str, int], ...]) -> None:
        self._flags = unshare | sum(f for _, f in join)
        self._unshare, self._join = unshare, join
        self._restore: list[tuple[int, int]] = []

    def __enter__(self) -> None:
        for flag, name in _NS_FILES.items():
            if self._flags & flag:
                self._restore.append((os.open(f"/proc/self/ns/{name}", os.O_RDONLY | os.O_CLOEXEC), flag))
        for path, flag in self._join:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                sched.setns(fd, flag)
            finally:
                os.close(fd)
        if self._unshare:
            sched.unshare(self._unshare)

    def __exit__(self, *exc: object) -> None:
        # setns to our own namespace resets "pid_for_children" to it (setns(2)).
        for fd, flag in self._restore:
            try:
                sched.setns(fd, flag)
            finally:
                os.close(fd)


def create(spec: Spec, *, stdin: int, stdout: int, stderr: int,
           seccomp_cache: Path | None = None) -> Init:
    """Set the container up and leave its init blocked before execve.

    Raises:
        SetupFailed: the spec cannot be run, or the init failed a setup step.
    """
    try:
        bpf = _seccomp_bpf(spec, seccomp_cache)
        plan = build_plan(spec, host_info(), seccomp_bpf=bpf,
                          console=_console(stdin, bool(spec.process and spec.process.terminal)))
    except PlanError as e:
        raise SetupFailed(str(e), "plan") from e
    cgroup = _open_cgroup(spec)
    if cgroup is not None:
        cgroup.create(spec.linux.resources if spec.linux else None)
    ctl_r, ctl_w = os.pipe2(os.O_CLOEXEC)
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    try:
        with _ForkNamespaces(plan.prefork_unshare, plan.prefork_join):
            pid = os.fork()
            if pid == 0:  # pragma: no cover (the child; measured by integration tests)
                init.run(plan, (stdin, stdout, stderr), ctl_r, report_w)
    except BaseException:
        for fd in (ctl_r, ctl_w, report_r, report_w):
            os.close(fd)
        _destroy(cgroup)
        raise
    os.close(ctl_r)
    os.close(report_w)
    try:
        if cgroup is not None:
            cgroup.add(pid)
        os.write(ctl_w, _sync.GO)
        msg = _sync.recv(report_r)
    except BaseException:
        _fail(pid, ctl_w, report_r, cgroup)
        raise
    if isinstance(msg, _sync.Ready):
        return Init(pid, ctl_w, report_r, cgroup)
    _fail(pid, ctl_w, report_r, cgroup)
    if isinstance(msg, _sync.SetupError):
        raise SetupFailed(f"{msg.step}: {msg.message}" if msg.step not in ("user",) else msg.message,
                          msg.step, msg.errno)
    raise SetupFailed("container init exited before it was set up", "init")


def _fail(pid: int, ctl: int, report: int, cgroup: Any | None) -> None:
    os.close(ctl)
    os.close(report)
    _kill_and_reap(pid)
    _destroy(cgroup)


def _destroy(cgroup: Any | None) -> None:
    if cgroup is not None:
        cgroup.destroy()


def delete(spec: Spec) -> None:
    """Remove the container's cgroup after its init exited (idempotent)."""
    _destroy(_open_cgroup(spec))


def oom_killed(spec: Spec) -> bool:
    cgroup = _open_cgroup(spec)
    return bool(cgroup is not None and cgroup.oom_killed())
