"""Seccomp policy: Docker's profile resolved for one container, and its compilation to BPF.

Two steps, both done by the parent before fork (the child only calls linux.seccomp.load):

1. profile_for(caps) turns Docker's profile format (archMap, includes/excludes on caps, arches
   and minKernel) into the plain OCI ``linux.seccomp`` section that goes into config.json,
   exactly as dockerd does (moby profiles/seccomp: setupSeccomp).
2. compile(seccomp) turns an OCI ``linux.seccomp`` section into a BPF program with libseccomp,
   as runc does (libcontainer/seccomp), and caches the bytes by content: compiling Docker's
   profile takes milliseconds and container start is a hot path.

    spec_seccomp = profile_for(["CAP_CHOWN", ...])
    bpf = compile(spec_seccomp, cache_dir=Path("/run/berth/seccomp"))
    # child, after fork, with no_new_privs set:  linux.seccomp.load(bpf)
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import msgspec

from berth.errors import InvalidArgument
from berth.state.atomic import write_atomic

log = logging.getLogger(__name__)

DEFAULT_PROFILE_PATH = Path(__file__).with_name("seccomp-default.json")

# Bump when the compiled output for the same JSON could change (binding or rule logic).
_CACHE_FORMAT = "2"  # 2: keyed by msgspec's sorted JSON

# uname machine -> the arch names Docker's profile uses in includes/excludes.arches
# (libseccomp-golang's ScmpArch.String(), which moby compares against).
_UNAME_TO_NATIVE = {
    "x86_64": "amd64", "amd64": "amd64",
    "i386": "x86", "i486": "x86", "i586": "x86", "i686": "x86", "x86": "x86",
    "aarch64": "arm64", "arm64": "arm64",
    "armv6l": "arm", "armv7l": "arm", "armv8l": "arm", "arm": "arm",
    "ppc64le": "ppc64le", "ppc64": "ppc64", "ppc": "ppc",
    "s390x": "s390x", "s390": "s390",
    "riscv64": "riscv64",
    "loongarch64": "loong64", "loong64": "loong64",
    "mips": "mips", "mipsel": "mipsle", "mips64": "mips64", "mips64el": "mips64le",
}
_NATIVE_TO_SCMP = {
    "amd64": "SCMP_ARCH_X86_64", "x86": "SCMP_ARCH_X86", "x32": "SCMP_ARCH_X32",
    "arm64": "SCMP_ARCH_AARCH64", "arm": "SCMP_ARCH_ARM",
    "ppc64le": "SCMP_ARCH_PPC64LE", "ppc64": "SCMP_ARCH_PPC64", "ppc": "SCMP_ARCH_PPC",
    "s390x": "SCMP_ARCH_S390X", "s390": "SCMP_ARCH_S390",
    "riscv64": "SCMP_ARCH_RISCV64", "loong64": "SCMP_ARCH_LOONGARCH64",
    "mips": "SCMP_ARCH_MIPS", "mipsle": "SCMP_ARCH_MIPSEL",
    "mips64": "SCMP_ARCH_MIPS64", "mips64le": "SCMP_ARCH_MIPSEL64",
}


def host_arch() -> str:
    """This host's arch in Docker-profile terms ("amd64", "arm64", ...)."""
    m = os.uname().machine
    return _UNAME_TO_NATIVE.get(m, m)


def host_kernel() -> tuple[int, int]:
    return _parse_kernel(os.uname().release)


def _parse_kernel(release: str) -> tuple[int, int]:
    parts = release.split("-", 1)[0].split(".")
    nums = []
    for p in parts[:2]:
        digits = "".join(c for c in p if c.isdigit()) if not p.isdigit() else p
        nums.append(int(digits or 0))
    while len(nums) < 2:
        nums.append(0)
    return nums[0], nums[1]


@lru_cache(maxsize=4)
def _load_profile(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        profile: dict[str, Any] = json.loads(f.read())
    return profile


def _norm_cap(cap: str) -> str:
    c = cap.upper()
    return c if c.startswith("CAP_") else "CAP_" + c


def profile_for(
    caps: Iterable[str],
    *,
    arch: str | None = None,
    kernel: tuple[int, int] | None = None,
    profile: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Docker's default profile (or `profile`, in Docker's format) resolved to OCI linux.seccomp.

    caps is the container's bounding set; arch is a uname machine or Docker arch name
    (default: this host); kernel is (major, minor) (default: this host). Rules whose
    includes/excludes do not match are dropped; each kept rule keeps its names as a group.
    """
    prof = profile if profile is not None else _load_profile(DEFAULT_PROFILE_PATH)
    native = _UNAME_TO_NATIVE.get(arch, arch) if arch else host_arch()
    kern = kernel if kernel is not None else host_kernel()
    capset = {_norm_cap(c) for c in caps}

    out: dict[str, Any] = {"defaultAction": prof["defaultAction"]}
    if prof.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = prof["defaultErrnoRet"]
    arches = _architectures(prof, native)
    if arches:
        out["architectures"] = arches
    for key in ("flags", "listenerPath", "listenerMetadata"):
        if prof.get(key):
            out[key] = prof[key]

    rules = []
    for call in prof.get("syscalls") or []:
        if _applies(call, capset, native, kern):
            rules.append(_oci_rule(call))
    out["syscalls"] = rules
    return out


def _architectures(prof: Mapping[str, Any], native: str) -> list[str]:
    arch_map = prof.get("archMap")
    if arch_map and prof.get("architectures"):
        raise InvalidArgument("seccomp profile: use either 'architectures' or 'archMap', not both")
    if not arch_map:
        return list(prof.get("architectures") or [])
    want = _NATIVE_TO_SCMP.get(native)
    out: list[str] = []
    for entry in arch_map:
        if entry.get("architecture") == want:
            out.append(entry["architecture"])
            out.extend(entry.get("subArchitectures") or [])
    return out


def _applies(call: Mapping[str, Any], caps: set[str], arch: str, kernel: tuple[int, int]) -> bool:
    exc = call.get("excludes") or {}
    if exc.get("arches") and arch in exc["arches"]:
        return False
    if exc.get("caps") and any(_norm_cap(c) in caps for c in exc["caps"]):
        return False
    if exc.get("minKernel") and kernel >= _parse_kernel(exc["minKernel"]):
        return False
    inc = call.get("includes") or {}
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if inc.get("caps") and not all(_norm_cap(c) in caps for c in inc["caps"]):
        return False
    if inc.get("minKernel") and kernel < _parse_kernel(inc["minKernel"]):
        return False
    return True


def _oci_rule(call: Mapping[str, Any]) -> dict[str, Any]:
    names = call.get("names") or ([call["name"]] if call.get("name") else [])
    if not names:
        raise InvalidArgument("seccomp profile: a syscall rule has neither 'name' nor 'names'")
    rule: dict[str, Any] = {"names": list(names), "action": call["action"]}
    args = []
    for a in call.get("args") or []:
        arg = {"index": a["index"], "value": a["value"], "op": a["op"]}
        if a.get("valueTwo"):  # omitempty, as in the OCI Go types
            arg["valueTwo"] = a["valueTwo"]
        args.append(arg)
    if args:
        rule["args"] = args
    if call.get("errnoRet") is not None:
        rule["errnoRet"] = call["errnoRet"]
    return rule


# ---------------------------------------------------------------------------------------
# compile


_ACTIONS_SIMPLE = ("SCMP_ACT_ALLOW", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD",
                   "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY")
_OPS = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
}
_memo: dict[str, bytes] = {}


def _as_builtins(seccomp: Any) -> dict[str, Any]:
    if isinstance(seccomp, Mapping):
        return dict(seccomp)

    data = msgspec.to_builtins(seccomp)
    if not isinstance(data, dict):
        raise InvalidArgument(f"seccomp: expected an object, got {type(seccomp).__name__}")
    return data


def _field(d: Mapping[str, Any], camel: str, snake: str) -> Any:
    v = d.get(camel)
    return d.get(snake) if v is None else v


def _cache_key(seccomp: Any) -> str:
    """sha256 of the profile's JSON with sorted keys (a dict or a Struct as it is: msgspec
    encodes either in 0.04 ms; turning a Struct into builtins and json.dumps took 0.6 ms of
    every setup helper, whose memo lookup this key is)."""
    canon = msgspec.json.encode(dict(seccomp) if isinstance(seccomp, Mapping) else seccomp,
                                order="sorted", enc_hook=str)
    h = hashlib.sha256(canon)
    h.update(f"|{os.uname().machine}|{_CACHE_FORMAT}".encode())
    return h.hexdigest()


def compile(seccomp: Any, cache_dir: Path | None = None) -> bytes:  # noqa: A001 (the brief's name)
    """OCI linux.seccomp (dict or struct) -> BPF program bytes (struct sock_filter[]).

    Results are memoised in this process and, with cache_dir, on disk under the sha256 of the
    canonical JSON. `flags` (SECCOMP_FILTER_FLAG_*) are not part of the program: the loader
    applies them.
    """
    key = _cache_key(seccomp)
    hit = _memo.get(key)
    if hit is not None:
        return hit
    spec = _as_builtins(seccomp)
    cached = cache_dir / f"{key}.bpf" if cache_dir is not None else None
    if cached is not None:
        try:
            with open(cached, "rb") as f:
                data = f.read()
            if data and len(data) % 8 == 0:
                _memo[key] = data
                return data
        except FileNotFoundError:
            pass
    data = _compile(spec)
    if cached is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
        write_atomic(cached, data, mode=0o600, sync=False)
    _memo[key] = data
    return data


def _action(name: str, ret: int | None, lib: Any) -> int:
    if name == "SCMP_ACT_ERRNO":
        return int(lib.act_errno(errno.EPERM if ret is None else ret))
    if name == "SCMP_ACT_TRACE":
        return int(lib.act_trace(errno.EPERM if ret is None else ret))
    if name in _ACTIONS_SIMPLE:
        return int(getattr(lib, name))
    raise InvalidArgument(f"seccomp: unknown action {name!r}")


def _conditions(args: list[Mapping[str, Any]], lib: Any) -> list[tuple[int, Any, int, int]]:
    out = []
    for a in args:
        index = int(a.get("index", 0))
        if not 0 <= index < 6:
            raise InvalidArgument(f"seccomp: argument index {index} out of range")
        op_name = a.get("op")
        if op_name not in _OPS:
            raise InvalidArgument(f"seccomp: unknown comparison {op_name!r}")
        value = int(a.get("value") or 0)
        two = int(_field(a, "valueTwo", "value_two") or 0)
        out.append((index, lib.Cmp(_OPS[op_name]), value, two))
    return out


def _compile(spec: Mapping[str, Any]) -> bytes:
    from berth.linux import libseccomp as lib

    default = _action(_field(spec, "defaultAction", "default_action"),
                      _field(spec, "defaultErrnoRet", "default_errno_ret"), lib)
    with lib.Filter(default) as f:
        f.set_attr(lib.Attr.CTL_NNP, 0)  # no_new_privs is the runtime's decision, not ours
        native = lib.arch_native()
        for name in spec.get("architectures") or []:
            token = lib.arch_resolve(name)
            if token == 0:
                raise InvalidArgument(f"seccomp: unknown architecture {name!r}")
            if token != native:
                f.add_arch(token)
        skipped = []
        for rule in spec.get("syscalls") or []:
            action = _action(rule["action"], _field(rule, "errnoRet", "errno_ret"), lib)
            if action == default:
                continue  # libseccomp refuses rules that repeat the default; they change nothing
            conds = _conditions(rule.get("args") or [], lib)
            for name in rule.get("names") or []:
                nr = lib.syscall_resolve(name)
                if nr == -1:
                    skipped.append(name)  # unknown to this libseccomp: as runc, not an error
                    continue
                _add_rule(f, action, nr, conds, name)
        if skipped:
            log.debug("seccomp: syscalls unknown to libseccomp skipped: %s", " ".join(skipped))
        return f.export_bpf()


def _add_rule(f: Any, action: int, nr: int, conds: list[Any], name: str) -> None:
    indexes = [c[0] for c in conds]
    try:
        if len(indexes) != len(set(indexes)):
            # Two comparisons on one argument: libseccomp ANDs them in one rule, which Docker's
            # profiles never mean; runc adds one rule per comparison (OR). Do the same.
            for c in conds:
                f.add_rule(action, nr, [c])
        else:
            f.add_rule(action, nr, conds)
    except OSError as e:
        raise OSError(e.errno, f"seccomp rule for {name}: {e.strerror}", name) from e
