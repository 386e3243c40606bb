"""``docker exec`` with berth's own runtime: a process forked straight into a running container.

``ExecContext`` holds what every exec into one container shares (host facts, the seccomp
program, the cgroup's files, the init's namespace fds), worked out once per container by the
shim; ``spawn_exec`` forks one process from it (one fork, inside the container's pid and time
namespaces; the child plans, joins the cgroup and the other namespaces, the user namespace
last, and takes the init's security steps); ``exec_failure`` reads what a child reported when
its execve did not happen. The exec's spec itself is ``container.exec_spec`` (pure).
"""

from __future__ import annotations

import dataclasses
import marshal
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from berth.linux import sched
from berth.linux.sched import CloneFlags
from berth.oci.spec import Spec, decode_spec
from berth.runtime import _sync, init, nsexec
from berth.runtime.container import SetupFailed, _NamespacesBack, _open_cgroup, _seccomp_bpf, exec_spec
from berth.runtime.host import host_info
from berth.runtime.plan import CapPlan, CgroupHierarchy, HostInfo, Plan, PlanError, build_plan

_EXEC_NAMESPACES = (("ipc", CloneFlags.NEWIPC), ("uts", CloneFlags.NEWUTS), ("net", CloneFlags.NEWNET),
                    ("cgroup", CloneFlags.NEWCGROUP), ("mnt", CloneFlags.NEWNS), ("user", CloneFlags.NEWUSER))
_NS_FILES_BY_NAME = (("pid", CloneFlags.NEWPID), ("time", CloneFlags.NEWTIME))  # joined around fork()
# What an exec's process uses of its Plan (init.run_exec_now), besides args, terminal and the
# seccomp program: the rest of a Plan is the init's (mounts, devices, sysctls...).
_EXEC_FIELDS = ("rlimits", "uid", "gid", "additional_gids", "resolve_user", "group_add", "cwd", "env", "umask",
                "no_new_privs", "seccomp_early", "caps")
_INIT_ONLY: dict[str, Any] = dict(rootfs="", overlay=None, root_propagation=0, root_readonly=False, prefork_unshare=0,
                  prefork_join=(), unshare=0, join=(), hostname=None, loopback=False, mounts=(), cgroups=(),
                  cgroup2_root=False, cgroupns=False, dev_tmpfs=False, devices=(), symlinks=(), console=None,
                  masked=(), readonly=(), sysctls=(), oom_score_adj=None)


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
                 spec_bytes: bytes | None = None, base: tuple[Any, ...] | None = None) -> None:
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
        # The Plan fields of the container's own exec (no -u, not --privileged), planned once
        # by ``prepare``: such an exec's child builds its Plan from them instead of decoding
        # the spec and planning (~1.3 ms of CPU and ~280 copy-on-write faults per exec).
        self.base = base
        self.bpf_fd: int | None = None  # the BPF program in a memfd, for berth-nsexec (made at its first exec)
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
                spec = decode_spec(spec_bytes)
                host, bpf, procs, tasks = _context_facts(spec, seccomp_cache)
                data = marshal.dumps((dataclasses.astuple(host), bpf, procs, tasks, _base_fields(spec, host, bpf)))
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
        host_t, bpf, procs, tasks, base = marshal.loads(data)
        vals = dict(zip((f.name for f in dataclasses.fields(HostInfo)), host_t))
        vals["cgroups"] = tuple(CgroupHierarchy(*h) for h in vals["cgroups"])
        return cls(init_pid, HostInfo(**vals), bpf, procs, tasks, spec_bytes=spec_bytes, base=base)

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

    def exec_plan(self, *, args: list[str], env: list[str], cwd: str, user: str, tty: bool,
                  privileged: bool) -> Plan:
        """The Plan of one exec's process (``container.exec_spec``'s rules): from the fields
        planned once (``base``) for the container's own user without --privileged, else
        planned from the spec."""
        if self.base is None or user or privileged or not args:
            # decoded, not kept: planned in the shim (berth-nsexec), the spec's objects would stay
            spec = self.spec if self._spec is not None or self._spec_bytes is None else decode_spec(self._spec_bytes)
            return self.plan(exec_spec(spec, args=args, env=env, cwd=cwd, user=user, tty=tty,
                                       privileged=privileged))
        fields = dict(zip(_EXEC_FIELDS, self.base))
        merged: dict[str, str] = {}
        for e in [*fields["env"], *env]:  # exec_spec's merge: the exec's value wins, in place
            merged[e.partition("=")[0]] = e
        if tty and "TERM" not in merged:
            merged["TERM"] = "TERM=xterm"
        caps = fields["caps"]
        fields.update(env=tuple(merged.values()), cwd=cwd or fields["cwd"],
                      caps=CapPlan(*caps) if caps is not None else None)
        return Plan(**_INIT_ONLY, **fields, args=tuple(args), terminal=tty, seccomp_bpf=self.bpf)

    def seccomp_fd(self) -> int | None:
        """The BPF program in a memfd that each berth-nsexec reads (None: no seccomp)."""
        if self.bpf and self.bpf_fd is None:
            fd = os.memfd_create("berth-seccomp", os.MFD_CLOEXEC)
            os.write(fd, self.bpf)
            self.bpf_fd = fd
        return self.bpf_fd

    def close(self) -> None:
        if self.bpf_fd is not None:
            os.close(self.bpf_fd)
            self.bpf_fd = None
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


def _base_fields(spec: Spec, host: Any, bpf: bytes | None) -> tuple[Any, ...] | None:
    """The ``_EXEC_FIELDS`` of an exec of the container's own user, not --privileged, as
    built-in values (marshal); None when such an exec cannot be planned (its error is then
    the exec's own, planned in full)."""
    try:
        plan = build_plan(exec_spec(spec, args=["-"], env=[], cwd="", user="", tty=False, privileged=False), host,
                          seccomp_bpf=bpf)
    except PlanError:
        return None
    values = [getattr(plan, name) for name in _EXEC_FIELDS]
    values[-1] = dataclasses.astuple(plan.caps) if plan.caps is not None else None
    return tuple(values)


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
    caller (the shim, a raw clone3 without Python's at-fork hooks), inside the container's pid
    (and time) namespace, and no handshake.
    Returns its pid at once; it is the caller's child (reap it).

    In the child, ``build`` returns the Plan of its process (the caller's own clean-up after
    fork goes there too), then the child joins the container's cgroup itself (v1 ``tasks``,
    which skips the kernel's global threadgroup lock; v2 ``cgroup.procs``), its other
    namespaces, and takes the init's security steps (rlimits, user, no_new_privs, seccomp,
    capabilities) before execve. ``report`` (the write end of a CLOEXEC pipe) is how the
    caller learns the outcome without waiting here: EOF alone when execve succeeded, one
    framed SetupError or ExecError before EOF when it did not (``exec_failure``)."""
    with _JoinNamespaceFds(context.fork_ns):
        # clone3(2), not os.fork(): Python's at-fork hooks (random's reseed, threading's and
        # logging's lock re-inits, ...) cost the child ~1 ms of CPU and ~150 copy-on-write
        # faults of the shim's pages per exec (docs/performance.md, "exec"); the shim is
        # single-threaded and the child leaves only through execve or os._exit.
        pid = sched.clone(0)
        if pid == 0:  # pragma: no cover (the child)
            init.run_exec_now(build, stdio, report, context.ns_fds, console_socket,
                              context.self_join or context.procs)
    return pid


def spawn_exec_native(context: ExecContext, plan: Plan, *, stdio: tuple[int, int, int], report: int,
                      console_socket: int | None = None) -> int | None:
    """``spawn_exec`` without Python in the child: the shim planned the process (``plan``),
    berth-nsexec (runtime/nsexec) takes the same steps in C and reports the same way. Started
    with posix_spawn (vfork) inside the container's pid namespace. None when the program is
    not there (not built, ``BERTH_NSEXEC=0``) or cannot serve this exec (a time namespace: a
    vfork child cannot enter one): the caller takes the Python path."""
    path = nsexec.binary()
    if path is None or any(flag == CloneFlags.NEWTIME for _, flag in context.fork_ns):
        return None
    bpf_fd = context.seccomp_fd() if plan.seccomp_bpf else None
    argv = nsexec.describe(plan, stdio=stdio, report=report, console=console_socket, bpf_fd=bpf_fd,
                           ns_fds=context.ns_fds, cgroup_files=context.self_join or context.procs)
    keep = (*stdio, report, *(fd for fd, _ in context.ns_fds), *(() if bpf_fd is None else (bpf_fd,)),
            *(() if console_socket is None else (console_socket,)))
    with _JoinNamespaceFds(context.fork_ns):
        return nsexec.spawn(path, argv, keep)


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
