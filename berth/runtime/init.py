"""The container init: runs in the child after fork, applies a Plan, then execs the process.

Nothing here parses the spec or imports anything: the parent did the work (STYLE §3). The
sequence follows runc's standard_init_linux.go:

    wait for the parent -> join the cgroup (v1; on v2 the parent did) -> join/unshare namespaces -> lo up, hostname
    -> rootfs (mounts, /dev, pivot_root) -> sysctls, cwd, read-only/masked paths, ro root
    -> rlimits, oom_score_adj -> user lookup -> no_new_privs -> seccomp (early, without nnp)
    -> bounding set, setgroups/setgid/setuid, chdir, capset, ambient -> PATH lookup
    -> mark fds CLOEXEC -> report Ready -> block until start -> seccomp (with nnp) -> execve

Any failure before Ready is reported as SetupError; after start, as ExecError. ``run`` never
returns: the child always leaves through os._exit.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # C module: signal.signal() converts to enums
import dataclasses
import os
import signal
import socket
from collections.abc import Callable, Iterable

from berth.linux import caps as lcaps
from berth.linux import fd as lfd
from berth.linux import idmap as lidmap
from berth.linux import net as lnet
from berth.linux import prctl
from berth.linux import rlimit as lrlimit
from berth.linux import sched
from berth.linux import signals as lsignals
from berth.linux import tty as ltty
from berth.linux import uts
from berth.runtime import _sync, rootfs, users
from berth.runtime.plan import FORK_NAMESPACES, Plan

try:  # the colleague's loader; imported here so the child never imports
    from berth.linux import seccomp as lseccomp
except ImportError:  # pragma: no cover
    lseccomp = None  # type: ignore[assignment]


class _Step:
    """The name of the step in progress, for the SetupError message."""

    name = "start"


def step_name() -> str:
    """The setup step in progress (or the last one)."""
    return _Step.name


def describe(e: OSError) -> str:
    """``mount /x: no such file or directory``: the call (when a linux/ wrapper raised it), the
    path, and the errno text, lowercase as in runc's messages."""
    text = os.strerror(e.errno) if e.errno else str(e)
    text = text[:1].lower() + text[1:]
    call = e.strerror if e.strerror and e.strerror != os.strerror(e.errno or 0) else ""
    what = " ".join(str(p) for p in (call, e.filename) if p)
    return f"{what}: {text}" if what else text


def _stdio(fds: tuple[int, int, int]) -> None:
    # dup first: a target of dup2 may be one of the other sources.
    tmp = [os.dup(fd) for fd in fds]
    for i, fd in enumerate(tmp):
        os.dup2(fd, i)
        os.close(fd)


def _cgroup_paths() -> dict[str, str]:
    out: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, key, path = line.rstrip("\n").split(":", 2)
            out[key] = path
    return out


def enter_namespaces(join: Iterable[tuple[str, int]], unshare: int) -> None:
    """setns into each ``(path, flag)`` of ``join``, then unshare the ``unshare`` flags."""
    for path, flag in join:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            sched.setns(fd, flag)
        finally:
            os.close(fd)
    if unshare:
        sched.unshare(unshare)


def _namespaces(plan: Plan) -> None:
    enter_namespaces(plan.join, plan.unshare)


def _read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _user(plan: Plan) -> tuple[int, int, tuple[int, ...], str]:
    passwd = users.parse_passwd(_read_text("/etc/passwd"))
    groups = users.parse_group(_read_text("/etc/group")) if plan.resolve_user or plan.group_add else []
    added = users.additional_groups(plan.group_add, groups) if plan.group_add else ()
    if plan.resolve_user is not None:
        u = users.resolve(plan.resolve_user, passwd, groups)
        # the numeric --group-add gids come after the spec's own gid (dockerd's getUser adds
        # GroupAdd to the user's groups, for the init and for an exec's -u alike)
        extra = plan.additional_gids[1:]
        return u.uid, u.gid, tuple(dict.fromkeys(u.additional_gids + extra + added)), u.home
    gids = tuple(dict.fromkeys(plan.additional_gids + added))
    return plan.uid, plan.gid, gids, users.home_of(plan.uid, passwd)


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _oom_score_adj(value: int, path: str = "/proc/self/oom_score_adj") -> None:
    # Lowering it needs CAP_SYS_RESOURCE; leave an equal value alone.
    if _read_text(path).strip() != str(value):
        _write(path, str(value))


def _setgroups_allowed() -> bool:
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() != "deny"
    except OSError:
        return True


def _drop_privileges(plan: Plan, uid: int, gid: int, groups: tuple[int, ...]) -> None:
    caps = plan.caps
    if caps is not None:
        for n in range(caps.last_cap + 1):
            if not caps.bounding & (1 << n):
                prctl.capbset_drop(n)
        prctl.set_keepcaps(True)
    try:
        os.setgroups(list(groups))
    except PermissionError:
        # A rootless engine's single-id map denies setgroups(2): no gid but 0 exists there,
        # and the groups the engine was started with (unmapped) stay, as with podman.
        if _setgroups_allowed():
            raise
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    try:
        os.chdir(plan.cwd)
        cwd_done = True
    except PermissionError:
        cwd_done = False
    if caps is not None:
        eff, perm, amb = caps.effective, caps.permitted, caps.ambient
        if caps.drop_if_not_root and uid != 0:
            eff = perm = amb = 0
        lcaps.capset(lcaps.CapSets(eff, perm, caps.inheritable))
        prctl.cap_ambient_clear_all()
        for n in range(caps.last_cap + 1):
            if amb & (1 << n):
                prctl.cap_ambient_raise(n)
        prctl.set_keepcaps(False)
    if not cwd_done:
        os.chdir(plan.cwd)


# Worked out at import (in the fork server, before any fork): signal.valid_signals() and
# signal.signal() go through enum conversions, 0.4-0.6 ms per init in a fresh fork (py-spy).
_RESET = tuple(sorted(int(s) for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)))
_SIG_DFL, _SIG_SETMASK = int(signal.SIG_DFL), int(signal.SIG_SETMASK)


def _reset_signals() -> None:
    # Python ignores SIGPIPE and SIGXFSZ, and ignored signals survive execve.
    for sig in _RESET:
        try:
            _signal.signal(sig, _SIG_DFL)
        except (OSError, ValueError):
            pass
    lsignals.reset_internal()  # 32 and 33: ignored when berthd's starter used posix_spawn (make)
    _signal.pthread_sigmask(_SIG_SETMASK, ())


def _console(sock: int, bind: bool = True) -> None:
    """A pty from the container's own devpts instance (so ``tty`` says /dev/pts/0), made the
    controlling terminal and stdio; the slave is bound over /dev/console (as runc does) and
    the master goes to the shim over ``sock`` (SCM_RIGHTS)."""
    master, slave_path = ltty.open_pty_master("/dev/ptmx")
    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    if bind:
        try:
            if not os.path.lexists("/dev/console"):
                os.close(os.open("/dev/console", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
            rootfs.bind_console(slave_path, "/dev/console")
        except OSError:
            pass  # a read-only /dev: no /dev/console, the terminal still works
    s = socket.socket(fileno=sock)
    try:
        socket.send_fds(s, [b"m"], [master])
    finally:
        s.close()
        os.close(master)
    for i in range(3):
        os.dup2(slave, i)
    if slave > 2:
        os.close(slave)
    ltty.set_controlling_tty(0)


_sysfs = -1  # a detached sysfs of the container's network namespace (host_net_steps)
_MOUNT_ATTRS = 0xF  # MS_RDONLY, NOSUID, NODEV, NOEXEC have MOUNT_ATTR_*'s values


def host_net_steps(plan: Plan) -> int:
    """In a user namespace, what needs the host's root in the container's (host-owned) network
    namespace, the caller's now: the net.* sysctls, and a detached sysfs of it (its devices, not
    the host's; only its owner's root may mount it), attached in the rootfs later; -1: none."""
    _Step.name = "sysctl"
    for path, value in plan.sysctls:
        if path.startswith("/proc/sys/net/"):  # the netns is the host's user namespace's
            _write(path, value)
    sysfs = next((s for s in plan.mounts if s.fstype == "sysfs"), None)
    if sysfs is None or plan.unshare & sched.CloneFlags.NEWNET:
        return -1
    _Step.name = "sysfs"
    return lidmap.fsmount_new("sysfs", sysfs.flags & _MOUNT_ATTRS)


def host_process_steps(plan: Plan, pid: int = 0) -> None:
    """In a user namespace, what needs the host's root over process ``pid`` (0: this one):
    rlimits (raising a hard limit needs the host's CAP_SYS_RESOURCE) and oom_score_adj."""
    _Step.name = "rlimits"
    for res, soft, hard in plan.rlimits:
        lrlimit.setrlimit(res, soft, hard, pid)
    if plan.oom_score_adj is not None:
        _Step.name = "oom_score_adj"
        _oom_score_adj(plan.oom_score_adj, f"/proc/{pid or 'self'}/oom_score_adj")


def _become_userns_root() -> None:
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def _enter_userns(plan: Plan, userns: tuple[int, ...], report: int) -> Plan:
    """In a user namespace. Cloned into a new one (``userns[0]`` -1): the parent did the
    host's part (container._clone_init); become its root and unshare the rest, owned by it.
    Joining one (fd ``userns[0]``, another container's): join the given (host-owned)
    namespaces and do the host's part while still host root, setns into it, become its root,
    then unshare the rest; a new pid namespace takes a fork: this process tells the parent the
    pid of its child (the container's PID 1) and exits; the child goes on.

    The container's root cannot search berth's directories (root's, 0710), so the rootfs'
    directory becomes the cwd first (as the host's uid 0, the owner, before the setresuid): the
    plan returned names the rootfs relative to it, as the overlay options and ``idmap_lower``
    already do."""
    os.chdir(os.path.dirname(plan.rootfs))
    plan = dataclasses.replace(plan, rootfs=os.path.basename(plan.rootfs))
    if userns[0] < 0:
        _Step.name = "userns"
        _become_userns_root()
        _Step.name = "namespaces"
        sched.unshare(plan.unshare & ~FORK_NAMESPACES)
        return plan
    enter_namespaces(plan.join, 0)
    global _sysfs
    _sysfs = host_net_steps(plan)
    host_process_steps(plan)
    _Step.name = "userns"
    sched.setns(userns[0], sched.CloneFlags.NEWUSER)
    _become_userns_root()
    _Step.name = "namespaces"
    sched.unshare(plan.unshare)
    if plan.unshare & FORK_NAMESPACES:
        pid = os.fork()
        if pid:
            _sync.send(report, _sync.Forked(pid=pid))
            os._exit(0)
        os.setsid()  # PID 1 leads the session its terminal (if any) is the controlling tty of
        if plan.terminal and os.isatty(0):
            ltty.set_controlling_tty(0)
    return plan


def _setup(plan: Plan, ctl: int, console: int | None = None, cgroup_tasks: tuple[str, ...] = (),
           userns: tuple[int, ...] = (), report: int = -1, sysfs: int = -1) -> tuple[str | None, str, list[str]]:
    """Everything up to the wait for start. -> (exec error, path, env). With ``cgroup_tasks``
    (v1) the init joins its cgroup itself, first thing (see container._self_join_tasks).
    ``userns``: the user namespace's fd (-1: cloned into it), then the idmapped trees
    (plan.userns_trees); ``sysfs``: the detached sysfs the parent made (host_net_steps)."""
    global _sysfs
    _sysfs = sysfs
    step = _Step
    step.name = "sync"
    if ctl is not None and _sync.wait_byte(ctl) != _sync.GO:
        os._exit(1)
    if cgroup_tasks:
        step.name = "cgroup"
        _join_cgroup_tasks(cgroup_tasks, strict=True)
    cg_paths = _cgroup_paths() if plan.cgroups else {}
    step.name = "namespaces"
    if plan.userns is not None:
        plan = _enter_userns(plan, userns, report)
    else:
        _namespaces(plan)
    if plan.loopback:
        step.name = "loopback"
        lnet.set_link_up("lo")
    if plan.hostname:
        step.name = "sethostname"
        uts.sethostname(plan.hostname)
    # no /proc in the container (a pod's bare pause): its sysctls and oom_score_adj now,
    # through berthd's /proc (the same namespaces: this process is in them already)
    own_proc = any(m.dest == "/proc" for m in plan.mounts)
    if not own_proc:
        _proc_writes(plan)
    step.name = "rootfs"
    trees = list(userns[1:])
    rootfs.enter_rootfs(plan, trees)
    rootfs.apply_mounts(plan, cg_paths, trees, _sysfs)
    rootfs.apply_dev(plan)
    step.name = "pivot_root"
    rootfs.pivot(plan.rootfs)
    if console is not None:
        step.name = "console"
        _console(console)
    if own_proc:
        _sysctls(plan)
    step.name = "cwd"
    os.makedirs(plan.cwd, 0o755, exist_ok=True)
    step.name = "rootfs"
    rootfs.finalize(plan)
    if plan.userns is None:
        step.name = "rlimits"
        for res, soft, hard in plan.rlimits:
            lrlimit.setrlimit(res, soft, hard)
    if plan.oom_score_adj is not None and plan.userns is None and own_proc:
        step.name = "oom_score_adj"
        _oom_score_adj(plan.oom_score_adj)
    return _become_process(plan)


def _sysctls(plan: Plan) -> None:
    _Step.name = "sysctl"
    for path, value in plan.sysctls:
        if plan.userns is None or not path.startswith("/proc/sys/net/"):
            _write(path, value)


def _proc_writes(plan: Plan) -> None:
    """Sysctls and oom_score_adj before the rootfs, for a container without /proc."""
    _sysctls(plan)
    if plan.oom_score_adj is not None and plan.userns is None:
        _Step.name = "oom_score_adj"
        _oom_score_adj(plan.oom_score_adj)


def _become_process(plan: Plan) -> tuple[str | None, str, list[str]]:
    """The last steps of the init and of an exec alike: user, privileges, seccomp."""
    step = _Step
    step.name = "user"
    uid, gid, groups, home = _user(plan)
    env = list(plan.env)
    if not any(e.startswith("HOME=") for e in env):
        env.append("HOME=" + home)
    if plan.no_new_privs:
        step.name = "no_new_privs"
        prctl.set_no_new_privs()
    if plan.seccomp_early and plan.seccomp_bpf:
        step.name = "seccomp"
        lseccomp.load(plan.seccomp_bpf)
    step.name = "capabilities"
    _drop_privileges(plan, uid, gid, groups)
    os.umask(plan.umask)
    return _before_exec(plan, env)


def _before_exec(plan: Plan, env: list[str]) -> tuple[str | None, str, list[str]]:
    _Step.name = "exec"
    try:
        path, error = users.lookup_path(plan.args[0], env), None
    except users.ExecNotFound as e:
        path, error = plan.args[0], str(e)
    _reset_signals()
    lfd.close_range(3, flags=lfd.CloseRangeFlags.CLOEXEC)
    return error, path, env


def _join_cgroup_tasks(tasks: tuple[str, ...], strict: bool = False) -> None:
    """Move this (single-threaded) process into a cgroup through each v1 ``tasks`` file (or,
    for an exec on v2, ``cgroup.procs``: ``0`` is the writer itself).
    An exec tolerates a cgroup that is gone (its container is stopping); the init (``strict``)
    must never run outside its cgroup."""
    for path in tasks:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            if strict:
                raise
            continue
        try:
            os.write(fd, b"0")
        except (ProcessLookupError, FileNotFoundError):
            if strict:
                raise
        finally:
            os.close(fd)


def _setup_exec(plan: Plan, ctl: int | None, namespaces: tuple[tuple[int, int], ...],
                console: int | None, cgroup_tasks: tuple[str, ...] = ()) -> tuple[str | None, str, list[str]]:
    """An exec'd process: join the container's cgroup (``cgroup_tasks``) and namespaces
    (already in its pid namespace, see execproc.spawn_exec), then the
    same security steps as the init."""
    step = _Step
    step.name = "sync"
    if ctl is not None and _sync.wait_byte(ctl) != _sync.GO:
        os._exit(1)
    if cgroup_tasks:
        step.name = "cgroup"
        _join_cgroup_tasks(cgroup_tasks)
    step.name = "rlimits"  # before the user namespace: raising a hard limit needs host caps
    for res, soft, hard in plan.rlimits:
        lrlimit.setrlimit(res, soft, hard)
    step.name = "namespaces"
    # The mount namespace comes after the others: it also moves root and cwd; the user
    # namespace last: joining the others needs the host's capabilities.
    for fd, flag in namespaces:
        sched.setns(fd, flag)
        os.close(fd)
        if flag == sched.CloneFlags.NEWUSER:
            os.setgroups([])
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
    if console is not None:
        step.name = "console"
        _console(console, bind=False)
    return _become_process(plan)


def run_exec_now(build: Callable[[], Plan], stdio: tuple[int, int, int], report: int,
                 namespaces: tuple[tuple[int, int], ...], console: int | None,
                 cgroup_files: tuple[str, ...] = ()) -> None:
    """An exec'd process forked straight from the shim (``execproc.spawn_exec``), already in
    the container's pid namespace: build its plan (``build``), join the cgroup itself through
    ``cgroup_files``, then set up and execve with no handshake: the parent learns of success
    by EOF on ``report`` (CLOEXEC), of a failure by one SetupError or ExecError. Never returns."""
    try:
        _Step.name = "plan"
        plan = build()
    except BaseException as e:  # noqa: BLE001 - reported, never raised into the parent's code
        try:
            _sync.send(report, _sync.SetupError(step="plan", message=str(e) or type(e).__name__))
        finally:
            os._exit(1)
    _main(plan, stdio, None, report,
          lambda: _setup_exec(plan, None, namespaces, console if plan.terminal else None, cgroup_files))


def run(plan: Plan, stdio: tuple[int, int, int], ctl: int, report: int, console: int | None = None,
        cgroup_tasks: tuple[str, ...] = (), userns: tuple[int, ...] = (), sysfs: int = -1) -> None:
    """The child's whole life; never returns."""
    _main(plan, stdio, ctl, report, lambda: _setup(plan, ctl, console, cgroup_tasks, userns, report, sysfs))


def _main(plan: Plan, stdio: tuple[int, int, int], ctl: int | None, report: int,
          setup: Callable[[], tuple[str | None, str, list[str]]]) -> None:
    code = 1
    try:
        _stdio(stdio)
        os.setsid()
        if plan.terminal and os.isatty(0):
            ltty.set_controlling_tty(0)
        try:
            error, path, env = setup()
        except users.UnknownUser as e:
            _sync.send(report, _sync.SetupError(step=_Step.name, message=str(e)))
            return
        except OSError as e:
            _sync.send(report, _sync.SetupError(step=_Step.name, message=describe(e), errno=e.errno or 0))
            return
        except Exception as e:  # report anything: the parent must never hang
            _sync.send(report, _sync.SetupError(step=_Step.name, message=f"{type(e).__name__}: {e}"))
            return
        if ctl is not None:  # no handshake for an exec forked by the shim itself
            _sync.send(report, _sync.Ready())
            if _sync.wait_byte(ctl) != _sync.START:
                return
        if error is not None:
            _sync.send(report, _sync.ExecError(message=error))
            code = 127
            return
        if not plan.seccomp_early and plan.seccomp_bpf:
            try:
                lseccomp.load(plan.seccomp_bpf)
            except OSError as e:
                _sync.send(report, _sync.ExecError(message=f"load seccomp filter: {describe(e)}"))
                return
        try:
            os.execve(path, list(plan.args), dict(e.partition("=")[::2] for e in env))
        except OSError as e:
            msg = os.strerror(e.errno or 0)
            _sync.send(report, _sync.ExecError(message=f'exec: "{plan.args[0]}": {msg[:1].lower() + msg[1:]}'))
            code = 127 if e.errno == 2 else 126
    except BaseException:  # noqa: BLE001 - nothing may escape into the parent's code
        code = 1
    finally:
        os._exit(code)
