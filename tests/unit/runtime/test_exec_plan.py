"""An exec's Plan from the fields planned once per container (``ExecContext.exec_plan``) is the
Plan ``exec_spec`` + ``build_plan`` make, in every field the exec's process uses (pure)."""

from __future__ import annotations

import os

import msgspec
import pytest

from berth.oci import spec as oci
from berth.runtime.container import exec_spec
from berth.runtime.defaults import ANNOTATION_USER, build_spec
from berth.runtime.execproc import _EXEC_FIELDS, ExecContext, _base_fields
from berth.runtime.plan import HostInfo, Plan

HOST = HostInfo(cap_last_cap=40, bounding=(1 << 41) - 1, permitted=(1 << 41) - 1, cgroups=(),
                cgroup2_root=False, has_kcore=True)
BPF = b"\x06\x00\x00\x00\x00\x00\xff\x7f"  # ret ALLOW: any bytes do, the plan only carries them


def _spec(user: str = "", nnp: bool = True, term: bool = False) -> oci.Spec:
    env = ["PATH=/bin", "A=1", *(["TERM=dumb"] if term else []), "A=0"]
    spec = build_spec(args=["sleep", "60"], env=env, cwd="/w", user=user,
                      hostname="h", rootfs="/r", tty=False, hostname_file="/c/hostname", hosts_file="/c/hosts",
                      resolv_file="/c/resolv.conf", cgroups_path="/berth/x", seccomp="unconfined")
    assert spec.process is not None
    rl = [oci.Rlimit(type="RLIMIT_NOFILE", soft=1024, hard=2048)]
    process = msgspec.structs.replace(spec.process, noNewPrivileges=nnp, rlimits=rl)
    return msgspec.structs.replace(spec, process=process)


def _context(spec: oci.Spec) -> ExecContext:
    # the caller's own pid: no namespace differs, no fd is opened
    ctx = ExecContext(os.getpid(), HOST, BPF, (), None, spec=spec, base=_base_fields(spec, HOST, BPF))
    assert ctx.base is not None and ctx.fds() == ()
    return ctx


def _used(plan: Plan) -> tuple[object, ...]:
    return tuple(getattr(plan, f) for f in (*_EXEC_FIELDS, "args", "terminal", "seccomp_bpf", "console"))


CASES = [
    dict(args=["true"], env=[], cwd="", tty=False),
    dict(args=["sh", "-c", "echo $A"], env=["A=2", "B=3"], cwd="/tmp", tty=False),
    dict(args=["sh"], env=["PATH=/usr/bin"], cwd="", tty=True),  # TERM from the container stays
    dict(args=["sh"], env=["TERM=vt100", "C="], cwd="/", tty=True),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("user,nnp,term", [("", True, False), ("", False, True), ("nobody", True, True),
                                           ("1000:1000", False, False)])
def test_exec_plan_from_base_is_the_planned_one(case: dict, user: str, nnp: bool, term: bool) -> None:
    spec = _spec(user, nnp, term)
    ctx = _context(spec)
    fast = ctx.exec_plan(user="", privileged=False, **case)
    full = ctx.plan(exec_spec(spec, user="", privileged=False, **case))
    assert _used(fast) == _used(full)
    assert fast.seccomp_early == (not nnp)  # without no_new_privs the filter is loaded first


def test_exec_plan_for_another_user_or_privileged_is_planned_in_full() -> None:
    spec = _spec("", True)
    ctx = _context(spec)
    for user, privileged in (("nobody", False), ("0:0", False), ("", True)):
        got = ctx.exec_plan(args=["id"], env=[], cwd="", user=user, tty=False, privileged=privileged)
        want = ctx.plan(exec_spec(spec, args=["id"], env=[], cwd="", user=user, tty=False, privileged=privileged))
        assert got == want
    assert ctx.exec_plan(args=["id"], env=[], cwd="", user="nobody", tty=False,
                         privileged=False).resolve_user == "nobody"


def test_a_named_container_user_is_resolved_by_each_exec() -> None:
    spec = _spec("nobody", True)
    assert (spec.annotations or {}).get(ANNOTATION_USER) == "nobody"
    assert _context(spec).exec_plan(args=["id"], env=[], cwd="", user="", tty=False,
                                    privileged=False).resolve_user == "nobody"
