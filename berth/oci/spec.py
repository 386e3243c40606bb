"""The OCI runtime spec (``config.json``) as msgspec structs. Pure data, no I/O.

Field names are the JSON names of runtime-spec v1.0.2 (``ociVersion``, ``additionalGids``...).
Unknown fields are ignored on decode and missing ones defaulted; on encode, fields still at
their default are left out (except the few Docker always writes, such as ``cwd``), so a spec built like Docker's encodes like Docker's. Fields that
Docker writes even at their zero value (``oomScoreAdj: 0``, ``cpu.shares: 0``) are optional
(``None`` = absent) rather than defaulted.
"""

from __future__ import annotations

import msgspec


class _S(msgspec.Struct, omit_defaults=True, kw_only=True):
    pass


def _always(value: object) -> object:
    """A default that is still encoded: omit_defaults skips only plain defaults, not factories."""
    return msgspec.field(default_factory=lambda: value)


# --- process -------------------------------------------------------------------------------

class User(_S):
    uid: int
    gid: int
    umask: int | None = None
    additionalGids: list[int] | None = None


class Capabilities(_S):
    bounding: list[str] | None = None
    effective: list[str] | None = None
    permitted: list[str] | None = None
    inheritable: list[str] | None = None
    ambient: list[str] | None = None


class Rlimit(_S):
    type: str
    hard: int
    soft: int


class ConsoleSize(_S):
    height: int = 0
    width: int = 0


class Process(_S):
    terminal: bool = False
    consoleSize: ConsoleSize | None = None
    user: User = msgspec.field(default_factory=lambda: User(uid=0, gid=0))
    args: list[str] = msgspec.field(default_factory=list)
    env: list[str] = msgspec.field(default_factory=list)
    cwd: str = _always("/")  # type: ignore[assignment]
    capabilities: Capabilities | None = None
    rlimits: list[Rlimit] | None = None
    noNewPrivileges: bool = False
    apparmorProfile: str | None = None
    oomScoreAdj: int | None = None
    selinuxLabel: str | None = None


# --- root, mounts, hooks -------------------------------------------------------------------

class Root(_S):
    path: str
    readonly: bool = False


class Mount(_S):
    destination: str
    type: str | None = None
    source: str | None = None
    options: list[str] | None = None


class Hook(_S):
    path: str
    args: list[str] | None = None
    env: list[str] | None = None
    timeout: int | None = None


class Hooks(_S):
    prestart: list[Hook] | None = None
    createRuntime: list[Hook] | None = None
    createContainer: list[Hook] | None = None
    startContainer: list[Hook] | None = None
    poststart: list[Hook] | None = None
    poststop: list[Hook] | None = None


# --- linux ---------------------------------------------------------------------------------

class Namespace(_S):
    type: str
    path: str | None = None


class IDMapping(_S):
    containerID: int
    hostID: int
    size: int


class Device(_S):
    """An entry of ``linux.devices``: a node the runtime creates in the container's /dev."""

    path: str
    type: str
    major: int = _always(0)  # type: ignore[assignment]
    minor: int = _always(0)  # type: ignore[assignment]
    fileMode: int | None = None
    uid: int | None = None
    gid: int | None = None


class DeviceCgroup(_S):
    """An entry of ``linux.resources.devices``: a device cgroup rule (the last match wins)."""

    allow: bool
    type: str | None = None
    major: int | None = None
    minor: int | None = None
    access: str | None = None


class Memory(_S):
    limit: int | None = None
    reservation: int | None = None
    swap: int | None = None
    kernel: int | None = None
    kernelTCP: int | None = None
    swappiness: int | None = None
    disableOOMKiller: bool | None = None
    useHierarchy: bool | None = None


class CPU(_S):
    shares: int | None = None
    quota: int | None = None
    period: int | None = None
    realtimeRuntime: int | None = None
    realtimePeriod: int | None = None
    cpus: str | None = None
    mems: str | None = None
    idle: int | None = None


class Pids(_S):
    limit: int


class WeightDevice(_S):
    major: int
    minor: int
    weight: int | None = None
    leafWeight: int | None = None


class ThrottleDevice(_S):
    major: int
    minor: int
    rate: int


class BlockIO(_S):
    weight: int | None = None
    leafWeight: int | None = None
    weightDevice: list[WeightDevice] | None = None
    throttleReadBpsDevice: list[ThrottleDevice] | None = None
    throttleWriteBpsDevice: list[ThrottleDevice] | None = None
    throttleReadIOPSDevice: list[ThrottleDevice] | None = None
    throttleWriteIOPSDevice: list[ThrottleDevice] | None = None


class HugepageLimit(_S):
    pageSize: str
    limit: int


class Resources(_S):
    devices: list[DeviceCgroup] | None = None
    memory: Memory | None = None
    cpu: CPU | None = None
    pids: Pids | None = None
    blockIO: BlockIO | None = None
    hugepageLimits: list[HugepageLimit] | None = None
    unified: dict[str, str] | None = None


class SeccompArg(_S):
    index: int
    value: int
    op: str
    valueTwo: int = 0


class Syscall(_S):
    names: list[str]
    action: str
    errnoRet: int | None = None
    args: list[SeccompArg] | None = None


class Seccomp(_S):
    defaultAction: str
    defaultErrnoRet: int | None = None
    architectures: list[str] | None = None
    flags: list[str] | None = None
    listenerPath: str | None = None
    listenerMetadata: str | None = None
    syscalls: list[Syscall] | None = None


class Linux(_S):
    uidMappings: list[IDMapping] | None = None
    gidMappings: list[IDMapping] | None = None
    sysctl: dict[str, str] | None = None
    resources: Resources | None = None
    cgroupsPath: str | None = None
    namespaces: list[Namespace] | None = None
    devices: list[Device] | None = None
    seccomp: Seccomp | None = None
    rootfsPropagation: str | None = None
    maskedPaths: list[str] | None = None
    readonlyPaths: list[str] | None = None
    mountLabel: str | None = None


class Spec(_S):
    ociVersion: str = _always("1.0.2-dev")  # type: ignore[assignment]
    process: Process | None = None
    root: Root | None = None
    hostname: str | None = None
    domainname: str | None = None
    mounts: list[Mount] = msgspec.field(default_factory=list)
    hooks: Hooks | None = None
    annotations: dict[str, str] | None = None
    linux: Linux | None = None


_decoder = msgspec.json.Decoder(Spec)
_encoder = msgspec.json.Encoder()


def decode_spec(data: bytes) -> Spec:
    """Parse config.json. Raises msgspec.ValidationError / DecodeError on a malformed spec."""
    return _decoder.decode(data)


def encode_spec(spec: Spec) -> bytes:
    return _encoder.encode(spec)
