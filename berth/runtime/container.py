"""Create and start a container from an OCI spec: the runtime's public interface.

Lifecycle (the shim drives it; single-threaded, synchronous, never the asyncio daemon):

    init = create(spec, stdin=0, stdout=w, stderr=w)   # init is set up, blocked before execve
    init.start()                                        # execve; raises ExecFailed
    os.waitpid(init.pid, 0)                             # the caller reaps PID 1
    delete(spec)                                        # remove the cgroup

``create`` does the work (host facts, seccomp compilation, the cgroup, the plan) before fork;
the child only applies the plan (``init.run``). PID and time namespaces apply to children
only, so the parent enters them around ``fork()`` and returns to its own right after: the
forked child is then PID 1 of its namespace *and* the caller's direct child; in a new user
namespace the child is cloned into it and its pid namespace at once (``_clone_init``), and the
caller does what needs the host's root. Processes exec'd
into a running container: ``exec_spec`` here (their spec), execproc.py (their fork).
"""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from berth.errors import RuntimeFailure
from berth.linux import sched
from berth.linux.sched import CloneFlags
from berth.oci import spec as oci
from berth.oci.spec import DeviceCgroup, Spec
from berth.runtime import _sync, fuse_overlay, init, seccomp
from berth.runtime import caps as capmod
from berth.runtime.cgroups import open_cgroup
from berth.runtime.defaults import ANNOTATION_USER
from berth.runtime.host import host_info
from berth.runtime.plan import FORK_NAMESPACES, Plan, PlanError, build_plan
from berth.runtime.userns import UserNamespace, open_trees
from berth.state import rootless

_NS_FILES = {int(CloneFlags.NEWPID): "pid", int(CloneFlags.NEWTIME): "time"}
_T = TypeVar("_T")


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
        """SIGKILL the init before start, reap it and remove its cgroup (its shim may be gone
        too: nobody else would)."""
        self._close()
        _kill_and_reap(self.pid)
        try:
            _destroy(self.cgroup)
        except OSError:
            pass  # the shim, if alive, removes it again when it records the exit

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


_JOIN_FILES = {int(CloneFlags.NEWNET): "net", int(CloneFlags.NEWIPC): "ipc", int(CloneFlags.NEWUTS): "uts",
               int(CloneFlags.NEWNS): "mnt", int(CloneFlags.NEWCGROUP): "cgroup", **_NS_FILES}


class _JoinedNamespaces(_NamespacesBack):
    """Join the container's host-owned namespaces (``plan.join``) for a clone; leave them right after."""

    def __init__(self, join: tuple[tuple[str, int], ...]) -> None:
        self._join = join
        self._restore = []

    def __enter__(self) -> None:
        for _, flag in self._join:
            self._restore.append((os.open(f"/proc/self/ns/{_JOIN_FILES[flag]}", os.O_RDONLY | os.O_CLOEXEC), flag))
        init.enter_namespaces(self._join, 0)


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
    if plan.overlay and rootless.fuse_storage():
        try:
            fuse_overlay.mount(plan.overlay, plan.rootfs)
        except RuntimeFailure as e:
            raise SetupFailed(str(e), "rootfs") from e
        plan = dataclasses.replace(plan, overlay=None)   # the init binds the mounted rootfs
    cgroup = _open_cgroup(spec)
    if cgroup is not None:
        try:
            cgroup.create(_with_runc_devices(spec.linux.resources) if spec.linux else None)
        except BaseException:
            _destroy(cgroup)  # a limit that cannot be set must not leave the directory behind
            raise
    tasks = _self_join_tasks(cgroup)
    try:
        userns = _user_namespace(plan)
    except BaseException:
        _destroy(cgroup)
        raise
    try:
        if userns and userns[0] < 0:
            return _clone_init(plan, (stdin, stdout, stderr), console_socket, cgroup, tasks, userns[1:])
        return _fork_init(plan, (stdin, stdout, stderr), console_socket, cgroup, tasks, userns)
    finally:
        for fd in userns:
            if fd >= 0:
                os.close(fd)


def _fork_init(plan: Plan, stdio: tuple[int, int, int], console_socket: int | None, cgroup: Any | None,
               tasks: tuple[str, ...], userns: tuple[int, ...]) -> Init:
    ctl_r, ctl_w = os.pipe2(os.O_CLOEXEC)
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    try:
        with _ForkNamespaces(plan.prefork_unshare, plan.prefork_join):
            pid = os.fork()
            if pid == 0:  # pragma: no cover (the child; measured by integration tests)
                init.run(plan, stdio, ctl_r, report_w, console_socket if plan.terminal else None, tasks, userns)
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
        if isinstance(msg, _sync.Forked):  # a user namespace's PID 1 (init._enter_userns)
            os.waitpid(pid, 0)
            pid = msg.pid
            msg = _sync.recv(report_r)
    except BaseException:
        _fail(pid, ctl_w, report_r, cgroup)
        raise
    return _ready(pid, msg, ctl_w, report_r, cgroup)


def _clone_init(plan: Plan, stdio: tuple[int, int, int], console_socket: int | None, cgroup: Any | None,
                tasks: tuple[str, ...], trees: tuple[int, ...]) -> Init:
    """The init in a user namespace of its own, made by clone3(2) together with its pid (and
    time) namespace, so that the child is PID 1 at once (one fork, not two). The child cannot
    do what needs the host's root any more: this process does it, in the container's
    (host-owned) namespaces around the clone (the net.* sysctls, a detached sysfs), then over
    the child (its id maps, rlimits, oom_score_adj) and the trees (idmapped through its user
    namespace) before it lets it go."""
    ctl_r, ctl_w = os.pipe2(os.O_CLOEXEC)
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    sysfs = -1
    try:
        with _JoinedNamespaces(plan.join):
            sysfs = _host_step(init.host_net_steps, plan)
            pid = sched.clone(CloneFlags.NEWUSER | (plan.unshare & FORK_NAMESPACES))
            if pid == 0:  # pragma: no cover (the child; measured by integration tests)
                init.run(plan, stdio, ctl_r, report_w, console_socket if plan.terminal else None, tasks,
                         (-1, *trees), sysfs)
    except BaseException:
        for fd in (ctl_r, ctl_w, report_r, report_w):
            os.close(fd)
        _destroy(cgroup)
        raise
    finally:
        if sysfs >= 0:
            os.close(sysfs)
    os.close(ctl_r)
    os.close(report_w)
    try:
        _map_user_namespace(plan, pid, trees)
        _host_step(init.host_process_steps, plan, pid)
        if cgroup is not None and not tasks:
            cgroup.add(pid)
        os.write(ctl_w, _sync.GO)
        msg = _sync.recv(report_r)
    except BaseException:
        _fail(pid, ctl_w, report_r, cgroup)
        raise
    return _ready(pid, msg, ctl_w, report_r, cgroup)


def _host_step(step: Callable[..., _T], plan: Plan, *args: int) -> _T:
    try:
        return step(plan, *args)
    except OSError as e:
        raise SetupFailed(f"{init.step_name()}: {init.describe(e)}", init.step_name(), e.errno or 0) from e


def _ready(pid: int, msg: _sync.Message | None, ctl_w: int, report_r: int, cgroup: Any | None) -> Init:
    """The init that reported ``msg``, or SetupFailed with what it said."""
    if isinstance(msg, _sync.Ready):
        return Init(pid, ctl_w, report_r, cgroup)
    _fail(pid, ctl_w, report_r, cgroup)
    if isinstance(msg, _sync.SetupError):
        raise SetupFailed(f"{msg.step}: {msg.message}" if msg.step not in ("user",) else msg.message,
                          msg.step, msg.errno)
    raise SetupFailed("container init exited before it was set up", "init")


def _user_namespace(plan: Plan) -> tuple[int, ...]:
    """The fds the init needs for a user namespace: the namespace to join (-1: a new one,
    ``_clone_init``), then one tree per ``plan.userns_trees``;
    () without one. Raises SetupFailed."""
    if plan.userns is None:
        return ()
    if not plan.userns_path:
        try:
            return (-1, *open_trees(plan.userns_trees))
        except OSError as e:
            raise SetupFailed(f"userns: open mount source: {init.describe(e)}", "userns", e.errno or 0) from e
    try:  # another container's, whose namespaces this one joins
        ns = UserNamespace(os.open(plan.userns_path, os.O_RDONLY | os.O_CLOEXEC))
    except OSError as e:
        raise SetupFailed(f"userns: open user namespace: {init.describe(e)}", "userns", e.errno or 0) from e
    try:
        trees = ns.trees(plan.userns_trees)
    except OSError as e:
        ns.close()
        raise SetupFailed(f"userns: open mount source: {init.describe(e)}", "userns", e.errno or 0) from e
    return (ns.fd, *trees)


def _map_user_namespace(plan: Plan, pid: int, trees: tuple[int, ...]) -> None:
    """The init ``pid`` was cloned into its user namespace: write its maps, idmap ``trees``
    through it."""
    assert plan.userns is not None
    try:
        ns = UserNamespace.of_process(pid, plan.userns)
    except OSError as e:
        raise SetupFailed(f"userns: write id maps: {init.describe(e)}", "userns", e.errno or 0) from e
    try:
        ns.idmap(trees, plan.userns_trees)
    except OSError as e:
        raise SetupFailed(f"userns: idmap mount source: {init.describe(e)}", "userns", e.errno or 0) from e
    finally:
        ns.close()


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
        # the container's --group-add gids (after its own gid) stay, as dockerd's getUser adds GroupAdd
        extra = (u.additionalGids or [])[1:]
        u = oci.User(uid=uid or 0, gid=gid, umask=u.umask, additionalGids=list(dict.fromkeys([gid, *extra])))
        root = uid is None or uid == 0  # Docker: a numeric non-root uid gets no capabilities
    caps_list = list(capmod.tweak(capmod.DEFAULT_CAPS, [], [], True)) if privileged else list(c.bounding or [])
    caps = oci.Capabilities(bounding=caps_list, effective=caps_list if root else None,
                            permitted=caps_list if root else None)
    process = msgspec.structs.replace(
        base, terminal=tty, user=u, args=list(args), env=list(merged.values()), cwd=cwd or base.cwd or "/",
        capabilities=caps)
    # mounts=[]: an exec joins the mounts the init made; planning them would stat every source
    return msgspec.structs.replace(spec, process=process, annotations=notes or None, mounts=[])
