"""berth-nsexec: the C program that sets up an exec's process between fork and execve.

This module owns the program's build (``build``: the system cc, once per source, into this
directory under a name keyed by the source's hash; the builds of older sources pruned but the
newest of them, which a running berthd may use), finding it (``binary``: None when it was
never built, or when ``BERTH_NSEXEC=0``), the description of one exec it reads from its argv
(``describe``: a Plan's exec fields, the fds to join and use) and starting it (``spawn``:
posix_spawn, so vfork in glibc: no page-table copy and no Python in the child). The steps it
takes are init.run_exec_now's, in C (berth-nsexec.c); execproc.spawn_exec_native is the caller.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from berth.runtime.plan import Plan

SOURCE = Path(__file__).with_name("berth-nsexec.c")
_CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror", "-fno-strict-aliasing")
# bits of the flags argument (berth-nsexec.c F_*)
_TERMINAL, _NNP, _SECCOMP_EARLY, _CAPS, _DROP_IF_NOT_ROOT, _RESOLVE_USER = 1, 2, 4, 8, 16, 32
_U64 = 0xFFFFFFFFFFFFFFFF
_SIGNALS = tuple(sorted(int(s) for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)))
_target: Path | None = None
_found: str | None = None


def target() -> Path:
    """Where the program built from the current source lives (the name says which source)."""
    global _target
    if _target is None:
        digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
        _target = SOURCE.with_name(f"berth-nsexec-{digest}")
    return _target


def binary() -> str | None:
    """The program's path, or None: not built (no cc), or ``BERTH_NSEXEC=0`` (the Python path)."""
    global _found
    if os.environ.get("BERTH_NSEXEC") == "0":
        return None
    if _found is None:
        path = str(target())
        if not os.access(path, os.X_OK):
            return None
        _found = path
    return _found


def build(cc: str | None = None) -> Path | None:
    """Compile the program if this source's build is missing; its path, or None without a C
    compiler or when the compiler fails (then execs take the Python path). Static when libc.a
    is there (no dynamic loader at each exec), else dynamic. Atomic: a temporary name, then
    rename, so concurrent builders (two berthds) race harmlessly."""
    dest = target()
    if dest.exists():
        return dest
    cc = cc or os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}")
    try:
        for extra in (("-static",), ()):
            done = subprocess.run([cc, *_CFLAGS, *extra, "-o", str(tmp), str(SOURCE)], capture_output=True)
            if done.returncode == 0:
                os.chmod(tmp, 0o755)
                os.rename(tmp, dest)
                prune(dest)
                return dest
        sys.stderr.write(f"berth-nsexec: {cc} failed: {done.stderr.decode(errors='replace')[-2000:]}\n")
        return None
    except OSError as e:
        sys.stderr.write(f"berth-nsexec: cannot build {dest}: {e}\n")
        return None
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def prune(dest: Path, keep: int = 2) -> None:
    """Remove the builds of older sources beside ``dest``, the ``keep`` newest (``dest`` among
    them) staying: a berthd of the previous source may still be running and spawning its build."""
    builds = []
    for p in dest.parent.glob("berth-nsexec-*"):
        try:
            builds.append((p.stat().st_mtime, p != dest, p))
        except FileNotFoundError:
            continue
    builds.sort(key=lambda b: (not b[1], b[0]), reverse=True)  # dest first, then the newest
    for _, _, p in builds[keep:]:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def describe(plan: Plan, *, stdio: tuple[int, int, int], report: int, console: int | None,
             bpf_fd: int | None, ns_fds: tuple[tuple[int, int], ...], cgroup_files: tuple[str, ...]) -> list[str]:
    """The program's argv for one exec (berth-nsexec.c ``parse`` reads it in this order)."""
    caps = plan.caps
    flags = ((_TERMINAL if plan.terminal else 0) | (_NNP if plan.no_new_privs else 0)
             | (_SECCOMP_EARLY if plan.seccomp_early else 0) | (_CAPS if caps is not None else 0)
             | (_DROP_IF_NOT_ROOT if caps is not None and caps.drop_if_not_root else 0)
             | (_RESOLVE_USER if plan.resolve_user is not None else 0))
    sets = ((caps.bounding, caps.effective, caps.permitted, caps.inheritable, caps.ambient, caps.last_cap)
            if caps is not None else (0, 0, 0, 0, 0, -1))
    bpf = plan.seccomp_bpf if bpf_fd is not None else None
    # the env execve gets (init._main: one entry per name, the last value in the first place)
    env = [f"{k}={v}" for k, v in dict(e.partition("=")[::2] for e in plan.env).items()]
    out = ["berth-nsexec", str(report), *map(str, stdio), str(-1 if console is None else console),
           str(-1 if bpf is None else bpf_fd), str(len(bpf) if bpf else 0), str(flags),
           str(plan.uid), str(plan.gid), str(plan.umask), *(str(v) for v in sets),
           plan.resolve_user or "", plan.cwd]
    out += [str(len(ns_fds)), *(str(v) for pair in ns_fds for v in pair)]
    out += [str(len(cgroup_files)), *cgroup_files]
    out += [str(len(plan.rlimits)), *(str(v & _U64) for triple in plan.rlimits for v in triple)]
    out += [str(len(plan.additional_gids)), *map(str, plan.additional_gids)]
    out += [str(len(plan.group_add)), *plan.group_add]
    out += [str(len(env)), *env]
    out += [str(len(plan.args)), *plan.args]
    return out


def spawn(path: str, argv: list[str], keep: tuple[int, ...]) -> int:
    """Start the program (posix_spawn: vfork and execve, no Python in between), with ``keep``
    inherited at their numbers (dup2 onto itself clears FD_CLOEXEC), nothing else but the
    caller's non-CLOEXEC fds (the program marks those CLOEXEC before its execve). Its pid."""
    actions = [(os.POSIX_SPAWN_DUP2, fd, fd) for fd in dict.fromkeys(keep)]
    # Every signal to its default and none blocked (init._reset_signals: Python ignores SIGPIPE
    # and SIGXFSZ, and ignored signals survive execve), done by glibc's child: one call each.
    return os.posix_spawn(path, argv, {}, file_actions=actions, setsigmask=(), setsigdef=_SIGNALS)

