"""Processes exec'd into a running container (``docker exec``): the context every exec of one
container shares (``ExecContext``: spec, host facts, seccomp program, cgroup and namespace
fds, worked out once), the exec's spec (``exec_spec``) and the fork that joins the init's
namespaces, the user namespace last (``exec_process``).
"""

from __future__ import annotations

import dataclasses
import marshal
import os
from pathlib import Path
from typing import Any

import msgspec

from berth.linux import sched
from berth.linux.sched import CloneFlags
from berth.oci import spec as oci
from berth.oci.spec import Spec, decode_spec
from berth.runtime import _sync, init
from berth.runtime import caps as capmod
from berth.runtime.container import (ExecFailed, SetupFailed, _kill_and_reap, _NamespacesBack, _open_cgroup,
                                     _seccomp_bpf)
from berth.runtime.defaults import ANNOTATION_USER
from berth.runtime.host import host_info
from berth.runtime.plan import CgroupHierarchy, HostInfo, PlanError, build_plan


_EXEC_NAMESPACES = (("ipc", CloneFlags.NEWIPC), ("uts", CloneFlags.NEWUTS), ("net", CloneFlags.NEWNET),
                    ("cgroup", CloneFlags.NEWCGROUP), ("mnt", CloneFlags.NEWNS), ("user", CloneFlags.NEWUSER))


def _ns_differs(pid: int, name: str) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/{name}").st_ino != os.stat(f"/proc/self/ns/{name}").st_ino
    except FileNotFoundError:
        return False


class ExecContext:
    """What every exec into one running container shares, worked out once.

    The shim keeps one per container (made at its first exec, closed when the init exits) so
    that each ``docker exec`` does not re-compute host facts and the seccomp program, re-open
    the cgroup, re-read the spec or re-open the init's namespaces. Its exec helper children
    inherit it (fork). Small on purpose: the raw spec bytes (decoded in the helper), the BPF
    program, a few paths and fds; ``prepare`` does the Python work in a throwaway child, since
    every object allocated in the shim dirties pages it shares copy-on-write (measured: ~1.7 MB
    of private memory when done in the shim itself).
    """

    def __init__(self, init_pid: int, host: Any, bpf: bytes | None, procs: tuple[str, ...],
                 self_join: tuple[str, ...] | None, spec: Spec | None = None,
                 spec_bytes: bytes | None = None) -> None:
        self.init_pid = init_pid
        self.host = host
        self.bpf = bpf  # an exec's seccomp is its container's
        self.procs = procs  # the cgroup's cgroup.procs files (one per v1 hierarchy)
        # cgroup v1: the exec child moves *itself* (one thread, pid 0) through each hierarchy's
        # ``tasks`` file, which skips the kernel's global threadgroup lock; writing a pid to
        # cgroup.procs takes it and waits for an RCU grace period (10-25 ms here, measured).
        self.self_join = self_join
        self._spec = spec
        self._spec_bytes = spec_bytes
        opened: list[int] = []
        try:
            self.ns_fds = tuple((_open_ns(init_pid, name, opened), int(flag))
                                for name, flag in _EXEC_NAMESPACES if _ns_differs(init_pid, name))
            self.fork_ns = tuple((_open_ns(init_pid, n, opened), int(f))
                                 for n, f in _NS_FILES_BY_NAME if _ns_differs(init_pid, n))
        except BaseException:
            for fd in opened:
                os.close(fd)
            raise

    @classmethod
    def direct(cls, spec: Spec, init_pid: int, seccomp_cache: Path | None = None) -> ExecContext:
        host, bpf, procs, tasks = _context_facts(spec, seccomp_cache)
        return cls(init_pid, host, bpf, procs, tasks, spec=spec)

    @classmethod
    def prepare(cls, spec_bytes: bytes, init_pid: int, seccomp_cache: Path | None = None) -> ExecContext:
        """As ``direct``, but the work (and its garbage) happens in a short-lived child. The
        answer comes back through marshal (built in: importing pickle in the shim alone costs
        it more private memory than all the rest)."""

        r, w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child)
            code = 1
            try:
                host, bpf, procs, tasks = _context_facts(decode_spec(spec_bytes), seccomp_cache)
                data = marshal.dumps((dataclasses.astuple(host), bpf, procs, tasks))
                while data:
                    data = data[os.write(w, data):]
                code = 0
            except BaseException as e:  # noqa: BLE001
                try:
                    os.write(w, b"E" + (str(e) or type(e).__name__).encode()[:4000])
                except OSError:
                    pass
            finally:
                os._exit(code)
        os.close(w)
        chunks = []
        try:
            while True:
                chunk = os.read(r, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(r)
            os.waitpid(pid, 0)
        data = b"".join(chunks)
        if not data or data[:1] == b"E":
            raise SetupFailed(data[1:].decode(errors="replace") or "cannot prepare exec", "plan")
        host_t, bpf, procs, tasks = marshal.loads(data)
        vals = dict(zip((f.name for f in dataclasses.fields(HostInfo)), host_t))
        vals["cgroups"] = tuple(CgroupHierarchy(*h) for h in vals["cgroups"])
        return cls(init_pid, HostInfo(**vals), bpf, procs, tasks, spec_bytes=spec_bytes)

    @property
    def spec(self) -> Spec:
        if self._spec is None:
            assert self._spec_bytes is not None
            self._spec = decode_spec(self._spec_bytes)
        return self._spec

    def fds(self) -> tuple[int, ...]:
        return tuple(fd for fd, _ in (*self.ns_fds, *self.fork_ns))

    def join_cgroup(self) -> None:
        """Move the calling process into the container's cgroup through cgroup.procs, so that
        what it forks next starts there (when the child cannot move itself cheaply, see
        ``self_join``). This waits for an RCU grace period, so the exec helper does it in a
        thread while it plans."""
        for path in self.procs:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(fd, str(os.getpid()).encode())
                finally:
                    os.close(fd)
            except OSError:
                pass  # the container's cgroup is gone: it is stopping

    def plan(self, spec: Spec) -> Any:
        try:
            return build_plan(spec, self.host, seccomp_bpf=self.bpf)
        except PlanError as e:
            raise SetupFailed(str(e), "plan") from e

    def close(self) -> None:
        for fd in self.fds():
            try:
                os.close(fd)
            except OSError:
                pass
        self.ns_fds = self.fork_ns = ()


def _context_facts(spec: Spec, seccomp_cache: Path | None
                   ) -> tuple[Any, bytes | None, tuple[str, ...], tuple[str, ...] | None]:
    """(host facts, seccomp BPF, cgroup.procs paths, v1 tasks paths or None)."""
    host = host_info()
    bpf = _seccomp_bpf(spec, seccomp_cache)
    cgroup = _open_cgroup(spec)
    dirs = list(dict.fromkeys(str(d) for d in cgroup.paths().values())) if cgroup is not None else []
    procs = tuple(os.path.join(d, "cgroup.procs") for d in dirs)
    tasks = tuple(os.path.join(d, "tasks") for d in dirs) if cgroup is not None and cgroup.version == 1 else None
    return host, bpf, procs, tasks


def _open_ns(pid: int, name: str, opened: list[int]) -> int:
    fd = os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    opened.append(fd)
    return fd


class _JoinNamespaceFds(_NamespacesBack):
    """Enter the pid/time namespaces (already-open fds) for the next fork(); leave right after."""

    def __init__(self, join: tuple[tuple[int, int], ...]) -> None:
        self._join = join
        self._restore = []

    def __enter__(self) -> None:
        for fd, flag in self._join:
            self._save(flag)
            sched.setns(fd, flag)


def exec_process(spec: Spec, init_pid: int, *, stdin: int, stdout: int, stderr: int,
                 seccomp_cache: Path | None = None, console_socket: int | None = None,
                 context: ExecContext | None = None, plan: Any = None, in_cgroup: bool = False) -> int:
    """Run ``spec.process`` inside the running container whose PID 1 is ``init_pid``.

    ``spec`` is the container's spec with the exec's process in it: the same capabilities
    (unless privileged), seccomp, rlimits and no_new_privs as the init. The new process joins
    every namespace of the init and its cgroup. Returns its pid once execve succeeded; the
    process is the caller's child (reap it).

    With ``context`` (see ExecContext) nothing is re-read or re-opened; ``plan`` is the plan of
    ``spec`` when the caller already made it; ``in_cgroup`` says the caller already joined the
    container's cgroup (ExecContext.join_cgroup), so the child starts in it.

    Raises:
        SetupFailed: the process could not be set up (e.g. an unknown user).
        ExecFailed: execve failed (``executable file not found in $PATH``).
    """
    own: list[int] = []  # fds opened here (closed here); a context's stay open
    if context is None:
        context = ExecContext.direct(spec, init_pid, seccomp_cache)
        own = list(context.fds())
    if plan is None:
        try:
            plan = context.plan(spec)
        except BaseException:
            if own:
                context.close()
            raise
    ns_fds = context.ns_fds
    join_procs = not in_cgroup and context.self_join is None
    self_join = () if in_cgroup else (context.self_join or ())
    ctl_r, ctl_w = os.pipe2(os.O_CLOEXEC)
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    try:
        with _JoinNamespaceFds(context.fork_ns):
            pid = os.fork()
            if pid == 0:  # pragma: no cover (the child)
                init.run_exec(plan, (stdin, stdout, stderr), ctl_r, report_w, ns_fds,
                              console_socket if plan.terminal else None, self_join)
    except BaseException:
        for fd in (ctl_r, ctl_w, report_r, report_w, *own):
            os.close(fd)
        raise
    for fd in (ctl_r, report_w, *own):
        os.close(fd)
    try:
        if join_procs:
            for path in context.procs:
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
                    try:
                        os.write(fd, str(pid).encode())
                    finally:
                        os.close(fd)
                except OSError:
                    pass  # the container's cgroup is gone: it is stopping
        os.write(ctl_w, _sync.GO)
        msg = _sync.recv(report_r)
        if isinstance(msg, _sync.Ready):
            os.write(ctl_w, _sync.START)
            msg = _sync.recv(report_r)
            if msg is None:
                return pid
    except BaseException:
        _kill_and_reap(pid)
        raise
    finally:
        os.close(ctl_w)
        os.close(report_r)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    if isinstance(msg, _sync.ExecError):
        raise ExecFailed(msg.message)
    if isinstance(msg, _sync.SetupError):
        raise SetupFailed(msg.message if msg.step == "user" else f"{msg.step}: {msg.message}",
                          msg.step, msg.errno)
    raise SetupFailed("exec process exited before it was set up", "init")


_NS_FILES_BY_NAME = (("pid", CloneFlags.NEWPID), ("time", CloneFlags.NEWTIME))


def exec_spec(spec: Spec, *, args: list[str], env: list[str], cwd: str, user: str, tty: bool,
              privileged: bool) -> Spec:
    """The container's spec with an exec's process in it (pure): Docker's rules for
    ``docker exec``: the container's environment plus ``env``, its user and working
    directory unless given, and every capability when ``privileged``."""


    base = spec.process or oci.Process()
    merged: dict[str, str] = {}
    for e in [*base.env, *env]:
        merged[e.partition("=")[0]] = e
    if tty and "TERM" not in merged:
        merged["TERM"] = "TERM=xterm"
    notes = dict(spec.annotations or {})
    u = base.user
    c = base.capabilities or oci.Capabilities()
    root = ANNOTATION_USER in notes or u.uid == 0
    if user:
        name, sep, group = user.partition(":")
        notes.pop(ANNOTATION_USER, None)
        uid = int(name) if name.isdigit() else None
        gid = int(group) if group.isdigit() else 0
        if uid is None or not (sep and group.isdigit()):
            notes[ANNOTATION_USER] = user  # resolved by the exec child in the container's /etc
        u = oci.User(uid=uid or 0, gid=gid, umask=u.umask, additionalGids=[gid])
        root = uid is None or uid == 0  # Docker: a numeric non-root uid gets no capabilities
    caps_list = list(capmod.tweak(capmod.DEFAULT_CAPS, [], [], True)) if privileged else list(c.bounding or [])
    caps = oci.Capabilities(bounding=caps_list, effective=caps_list if root else None,
                            permitted=caps_list if root else None)
    process = msgspec.structs.replace(
        base, terminal=tty, user=u, args=list(args), env=list(merged.values()), cwd=cwd or base.cwd or "/",
        capabilities=caps)
    return msgspec.structs.replace(spec, process=process, annotations=notes or None)
