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

import dataclasses
import marshal
import os
import signal
from pathlib import Path
from collections.abc import Callable
from typing import Any

import msgspec

from berth.errors import RuntimeFailure
from berth.linux import sched
from berth.linux.sched import CloneFlags
from berth.oci import spec as oci
from berth.oci.spec import DeviceCgroup, Spec, decode_spec
from berth.runtime import _sync, init, seccomp
from berth.runtime import caps as capmod
from berth.runtime.cgroups import open_cgroup
from berth.runtime.defaults import ANNOTATION_USER
from berth.runtime.host import host_info
from berth.runtime.plan import CgroupHierarchy, HostInfo, Plan, PlanError, build_plan

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

    return open_cgroup(path)


# runc's AllowedDevices (libcontainer/specconv): always allowed after the spec's own rules,
# so a container can open /dev/ptmx and its ptys (and mknod anything, as "m").
_RUNC_DEVICES = (("c", None, None, "m"), ("b", None, None, "m"), ("c", 136, None, "rwm"),
                 ("c", 5, 2, "rwm"), ("c", 10, 200, "rwm"))


def _with_runc_devices(resources: Any) -> Any:
    if resources is None or not resources.devices:
        return resources

    extra = [DeviceCgroup(allow=True, type=t, major=ma, minor=mi, access=acc) for t, ma, mi, acc in _RUNC_DEVICES]
    return msgspec.structs.replace(resources, devices=[*resources.devices, *extra])


def _seccomp_bpf(spec: Spec, cache: Path | None) -> bytes | None:
    if spec.linux is None or spec.linux.seccomp is None:
        return None
    return seccomp.compile(spec.linux.seccomp, cache)


def _console(stdin: int, terminal: bool) -> str | None:
    return os.ttyname(stdin) if terminal and os.isatty(stdin) else None


class _NamespacesBack:
    """Leaving: setns back to the namespaces saved in ``_restore`` (fds of /proc/self/ns/*)."""

    _restore: list[tuple[int, int]]

    def _save(self, flag: int) -> None:
        self._restore.append((os.open(f"/proc/self/ns/{_NS_FILES[flag]}", os.O_RDONLY | os.O_CLOEXEC), flag))

    def __exit__(self, *exc: object) -> None:
        # setns to our own namespace resets "pid_for_children" to it (setns(2)).
        for fd, flag in self._restore:
            try:
                sched.setns(fd, flag)
            finally:
                os.close(fd)


class _ForkNamespaces(_NamespacesBack):
    """Enter the pid/time namespaces for the next fork(); leave them right after."""

    def __init__(self, unshare: int, join: tuple[tuple[str, int], ...]) -> None:
        self._flags = unshare | sum(f for _, f in join)
        self._unshare, self._join = unshare, join
        self._restore = []

    def __enter__(self) -> None:
        for flag in _NS_FILES:
            if self._flags & flag:
                self._save(flag)
        init.enter_namespaces(self._join, self._unshare)


def create(spec: Spec, *, stdin: int, stdout: int, stderr: int,
           seccomp_cache: Path | None = None, console_socket: int | None = None) -> Init:
    """Set the container up and leave its init blocked before execve.

    With ``process.terminal`` and a ``console_socket`` (a Unix socket fd), the init allocates
    a pty in the container's own /dev/pts and sends its master back over the socket.

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
        try:
            cgroup.create(_with_runc_devices(spec.linux.resources) if spec.linux else None)
        except BaseException:
            _destroy(cgroup)  # a limit that cannot be set must not leave the directory behind
            raise
    tasks = _self_join_tasks(cgroup)
    ctl_r, ctl_w = os.pipe2(os.O_CLOEXEC)
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    try:
        with _ForkNamespaces(plan.prefork_unshare, plan.prefork_join):
            pid = os.fork()
            if pid == 0:  # pragma: no cover (the child; measured by integration tests)
                init.run(plan, (stdin, stdout, stderr), ctl_r, report_w,
                         console_socket if plan.terminal else None, tasks)
    except BaseException:
        for fd in (ctl_r, ctl_w, report_r, report_w):
            os.close(fd)
        _destroy(cgroup)
        raise
    os.close(ctl_r)
    os.close(report_w)
    try:
        if cgroup is not None and not tasks:
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


def _self_join_tasks(cgroup: Any | None) -> tuple[str, ...]:
    """cgroup v1: the ``tasks`` files through which the init moves *itself* into its cgroup.

    Writing another process's pid to ``cgroup.procs`` takes the kernel's global threadgroup
    rwsem for writing, which waits for an RCU grace period whenever no other migration happened
    in the last few ms: 8-20 ms on every ``docker run`` here (measured). A single-threaded
    process moving itself (``0`` to ``tasks``) skips that lock (cgroup_procs_write_start).
    cgroup v2 has no such file: the parent writes ``cgroup.procs`` there."""
    if cgroup is None or cgroup.version != 1:
        return ()
    return tuple(os.path.join(d, "tasks") for d in dict.fromkeys(str(p) for p in cgroup.paths().values()))


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


# -- exec ------------------------------------------------------------------------------------------

_EXEC_NAMESPACES = (("ipc", CloneFlags.NEWIPC), ("uts", CloneFlags.NEWUTS), ("net", CloneFlags.NEWNET),
                    ("cgroup", CloneFlags.NEWCGROUP), ("mnt", CloneFlags.NEWNS))


def _ns_differs(pid: int, name: str) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/{name}").st_ino != os.stat(f"/proc/self/ns/{name}").st_ino
    except FileNotFoundError:
        return False


class ExecContext:
    """What every exec into one running container shares, worked out once.

    The shim keeps one per container (made at its first exec, closed when the init exits) so
    that each ``docker exec`` does not re-compute host facts and the seccomp program, re-open
    the cgroup, re-read the spec or re-open the init's namespaces. Each exec's process, forked
    by the shim, inherits it. Small on purpose: the raw spec bytes (decoded in that child), the BPF
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
    def prepare(cls, spec_bytes: bytes, init_pid: int, seccomp_cache: Path | None = None) -> ExecContext:
        """Work the facts out in a short-lived child (its garbage dies with it). The
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

    def plan(self, spec: Spec) -> Plan:
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


def spawn_exec(context: ExecContext, build: Callable[[], Plan], *, stdio: tuple[int, int, int], report: int,
               console_socket: int | None = None) -> int:
    """Fork a process of the running container described by ``context``: one fork from the
    caller (the shim), inside the container's pid (and time) namespace, and no handshake.
    Returns its pid at once; it is the caller's child (reap it).

    In the child, ``build`` returns the Plan of its process (the caller's own clean-up after
    fork goes there too), then the child joins the container's cgroup itself (v1 ``tasks``,
    which skips the kernel's global threadgroup lock; v2 ``cgroup.procs``), its other
    namespaces, and takes the init's security steps (rlimits, user, no_new_privs, seccomp,
    capabilities) before execve. ``report`` (the write end of a CLOEXEC pipe) is how the
    caller learns the outcome without waiting here: EOF alone when execve succeeded, one
    framed SetupError or ExecError before EOF when it did not (``exec_failure``)."""
    with _JoinNamespaceFds(context.fork_ns):
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child)
            init.run_exec_now(build, stdio, report, context.ns_fds, console_socket,
                              context.self_join or context.procs)
    return pid


def exec_failure(report: bytes) -> str:
    """What an exec child reported before EOF (see spawn_exec), as Docker's error text."""
    try:
        msg = _sync.decode_framed(report)
    except (ValueError, msgspec.DecodeError):
        msg = None
    if isinstance(msg, _sync.ExecError):
        return msg.message
    if isinstance(msg, _sync.SetupError):
        return msg.message if msg.step in ("user", "plan") else f"{msg.step}: {msg.message}"
    return "exec process exited before it was set up"


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
    # mounts=[]: an exec joins the mounts the init made; planning them would stat every source
    return msgspec.structs.replace(spec, process=process, annotations=notes or None, mounts=[])
