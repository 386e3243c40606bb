"""profile_for() against what dockerd 20.10.24 actually put in config.json, and compile().

data/seccomp-default.v20.10.24.json is moby's profiles/seccomp/default.json at v20.10.24
(Apache-2.0). data/docker-20.10.24-resolved.json holds, for three `docker run` variants, the
bounding capability set and the linux.seccomp section copied from the config.json that dockerd
generated (shared/reference/security/docker-run-*.config.json).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from berth.runtime import seccomp

DATA = Path(__file__).with_name("data")
PROFILE_20_10 = json.loads((DATA / "seccomp-default.v20.10.24.json").read_text())
RESOLVED = json.loads((DATA / "docker-20.10.24-resolved.json").read_text())
DEFAULT_CAPS = RESOLVED["default"]["capabilities"]


def names(prof: dict) -> set[str]:
    return {n for r in prof["syscalls"] for n in r["names"]}


@pytest.mark.parametrize("variant", sorted(RESOLVED))
def test_matches_dockerd_20_10(variant: str) -> None:
    ref = RESOLVED[variant]
    out = seccomp.profile_for(ref["capabilities"], arch="x86_64", kernel=(6, 1), profile=PROFILE_20_10)
    assert out == ref["seccomp"]


def test_default_profile_shape() -> None:
    out = seccomp.profile_for(DEFAULT_CAPS, arch="x86_64", kernel=(6, 1))
    assert out["defaultAction"] == "SCMP_ACT_ERRNO" and out["defaultErrnoRet"] == 1
    assert out["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    n = names(out)
    for blocked in ("keyctl", "add_key", "unshare", "mount", "setns", "bpf", "io_uring_setup", "pivot_root"):
        assert blocked not in n
    assert {"read", "chroot", "clone", "ptrace", "arch_prctl"} <= n
    assert "s390_runtime_instr" not in n and "riscv_flush_icache" not in n
    clone3 = [r for r in out["syscalls"] if r["names"] == ["clone3"]]
    assert clone3 == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    assert "includes" not in json.dumps(out) and "archMap" not in out


def test_cap_add_sys_ptrace_adds_ptrace_rule() -> None:
    out = seccomp.profile_for(DEFAULT_CAPS + ["SYS_PTRACE"], arch="x86_64", kernel=(6, 1))
    rule = {"names": ["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"],
            "action": "SCMP_ACT_ALLOW"}
    assert rule in out["syscalls"]
    assert rule not in seccomp.profile_for(DEFAULT_CAPS, arch="x86_64", kernel=(6, 1))["syscalls"]


def test_cap_drop_all_removes_chroot() -> None:
    out = seccomp.profile_for([], arch="x86_64", kernel=(6, 1))
    assert "chroot" not in names(out)
    assert "chroot" in names(seccomp.profile_for(DEFAULT_CAPS, arch="x86_64", kernel=(6, 1)))


def test_sys_admin_lifts_clone_filter() -> None:
    out = seccomp.profile_for(DEFAULT_CAPS + ["CAP_SYS_ADMIN"], arch="x86_64", kernel=(6, 1))
    assert "unshare" in names(out) and "mount" in names(out)
    assert not any(r["names"] == ["clone3"] for r in out["syscalls"])
    assert not any(r.get("args") and r["names"] == ["clone"] for r in out["syscalls"])


def test_min_kernel() -> None:
    old = seccomp.profile_for(DEFAULT_CAPS, arch="x86_64", kernel=(4, 4), profile=PROFILE_20_10)
    assert "ptrace" not in names(old)
    assert "ptrace" in names(seccomp.profile_for(DEFAULT_CAPS, arch="x86_64", kernel=(4, 8), profile=PROFILE_20_10))


def test_other_arch() -> None:
    out = seccomp.profile_for(DEFAULT_CAPS, arch="aarch64", kernel=(6, 1))
    assert out["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "arm_fadvise64_64" in names(out) and "arch_prctl" not in names(out)
    s390 = seccomp.profile_for(DEFAULT_CAPS, arch="s390x", kernel=(6, 1))
    clone = [r for r in s390["syscalls"] if r["names"] == ["clone"]]
    assert clone and clone[0]["args"][0]["index"] == 1


def test_kernel_parse() -> None:
    assert seccomp._parse_kernel("6.18.44-fc-v595") == (6, 18)
    assert seccomp._parse_kernel("5.4.0-150-generic") == (5, 4)
    assert seccomp._parse_kernel("4.8") == (4, 8)


# -- compile ---------------------------------------------------------------------------


def test_compile_default(tmp_path: Path) -> None:
    prof = seccomp.profile_for(DEFAULT_CAPS)
    bpf = seccomp.compile(prof)
    assert bpf and len(bpf) % 8 == 0
    assert len(bpf) // 8 <= 4096


def test_compile_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prof = seccomp.profile_for(DEFAULT_CAPS + ["CAP_SYS_PTRACE"])
    seccomp._memo.clear()
    bpf = seccomp.compile(prof, cache_dir=tmp_path / "cache")
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 1 and files[0].read_bytes() == bpf and files[0].suffix == ".bpf"

    # a fresh process (no memo) gets the bytes from disk without compiling
    seccomp._memo.clear()
    monkeypatch.setattr(seccomp, "_compile", lambda spec: pytest.fail("compiled despite the cache"))
    t = time.perf_counter()
    assert seccomp.compile(prof, cache_dir=tmp_path / "cache") == bpf
    assert time.perf_counter() - t < 0.05
    # key order does not matter: the key is the canonical JSON
    shuffled = json.loads(json.dumps(prof, sort_keys=True))
    assert seccomp.compile(dict(reversed(list(shuffled.items()))), cache_dir=tmp_path / "cache") == bpf


def test_compile_distinguishes_profiles() -> None:
    a = seccomp.compile(seccomp.profile_for(DEFAULT_CAPS))
    b = seccomp.compile(seccomp.profile_for(DEFAULT_CAPS + ["CAP_SYS_ADMIN"]))
    assert a != b


import msgspec  # noqa: E402


class Arg(msgspec.Struct, rename="camel", omit_defaults=True):
    index: int
    value: int
    op: str
    value_two: int = 0


class Rule(msgspec.Struct, rename="camel", omit_defaults=True):
    names: list[str]
    action: str
    args: list[Arg] | None = None
    errno_ret: int | None = None


class Seccomp(msgspec.Struct, rename="camel", omit_defaults=True):
    default_action: str
    architectures: list[str] | None = None
    syscalls: list[Rule] | None = None


def test_compile_struct_input() -> None:
    d = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
         "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
                      {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                       "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                      {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}
    s = msgspec.convert(d, Seccomp)
    assert seccomp.compile(s) == seccomp.compile(d)


def test_compile_skips_unknown_syscalls_and_default_action_rules() -> None:
    base = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}
    extra = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read", "no_such_syscall_xyz"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["write"], "action": "SCMP_ACT_ERRNO"},  # same as default: no-op
    ]}
    assert seccomp.compile(extra) == seccomp.compile(base)


def test_compile_actions_and_ops() -> None:
    prof = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 99},
        {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS"},
        {"names": ["tkill"], "action": "SCMP_ACT_TRAP"},
        {"names": ["getppid"], "action": "SCMP_ACT_LOG"},
        {"names": ["getuid"], "action": "SCMP_ACT_TRACE"},
        {"names": ["getgid"], "action": "SCMP_ACT_KILL"},
        {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}]},
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_NE"}, {"index": 0, "value": 5, "op": "SCMP_CMP_GT"}]},
        {"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 1, "value": 0xFF00, "valueTwo": 0x5400, "op": "SCMP_CMP_MASKED_EQ"},
            {"index": 2, "value": 3, "op": "SCMP_CMP_LE"}]},
        {"names": ["mmap"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 2, "value": 7, "op": "SCMP_CMP_GE"}, {"index": 3, "value": 2, "op": "SCMP_CMP_LT"}]},
    ]}
    bpf = seccomp.compile(prof)
    assert len(bpf) % 8 == 0 and len(bpf) > 8 * 10


@pytest.mark.parametrize("bad", [
    {"defaultAction": "SCMP_ACT_NOPE"},
    {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                                      "args": [{"index": 7, "value": 0, "op": "SCMP_CMP_EQ"}]}]},
    {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                                      "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_XX"}]}]},
    {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_PDP11"]},
])
def test_compile_rejects(bad: dict) -> None:
    from berth.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        seccomp.compile(bad)


def test_default_profile_path_is_package_data() -> None:
    assert seccomp.DEFAULT_PROFILE_PATH.is_file()
    assert os.path.dirname(seccomp.DEFAULT_PROFILE_PATH) == os.path.dirname(seccomp.__file__)


def test_compile_oci_spec_struct() -> None:
    """The runtime passes berth.oci.spec.Seccomp decoded from config.json."""
    spec = pytest.importorskip("berth.oci.spec")
    ref = RESOLVED["default"]["seccomp"]
    assert seccomp.compile(msgspec.convert(ref, spec.Seccomp)) == seccomp.compile(ref)
