"""Docker Engine API shapes for containers (request bodies and stored config).

Fields keep Docker's JSON names so that encode/decode is a straight mapping; unknown fields
are ignored and missing ones defaulted, as Docker does.
"""

from __future__ import annotations

from typing import Any

import msgspec

StrOrList = list[str] | str | None


def strslice(v: StrOrList) -> list[str] | None:
    """Docker's strslice: a JSON string or array of strings."""
    if v is None:
        return None
    if isinstance(v, str):
        return [v]
    return list(v)


class RestartPolicy(msgspec.Struct, omit_defaults=False):
    Name: str = "no"
    MaximumRetryCount: int = 0


class LogConfig(msgspec.Struct):
    Type: str = "json-file"
    Config: dict[str, str] = {}


class HostConfig(msgspec.Struct):
    Binds: list[str] | None = None
    ContainerIDFile: str = ""
    LogConfig: LogConfig = msgspec.field(default_factory=LogConfig)
    NetworkMode: str = "default"
    PortBindings: dict[str, Any] | None = None
    RestartPolicy: RestartPolicy = msgspec.field(default_factory=RestartPolicy)
    AutoRemove: bool = False
    VolumeDriver: str = ""
    VolumesFrom: list[str] | None = None
    ConsoleSize: list[int] | None = None
    CapAdd: list[str] | None = None
    CapDrop: list[str] | None = None
    CgroupnsMode: str = ""
    Dns: list[str] | None = None
    DnsOptions: list[str] | None = None
    DnsSearch: list[str] | None = None
    ExtraHosts: list[str] | None = None
    GroupAdd: list[str] | None = None
    IpcMode: str = ""
    Cgroup: str = ""
    Links: list[str] | None = None
    OomScoreAdj: int = 0
    PidMode: str = ""
    Privileged: bool = False
    PublishAllPorts: bool = False
    ReadonlyRootfs: bool = False
    SecurityOpt: list[str] | None = None
    UTSMode: str = ""
    UsernsMode: str = ""
    ShmSize: int = 0
    Runtime: str = ""
    Isolation: str = ""
    CpuShares: int = 0
    Memory: int = 0
    NanoCpus: int = 0
    CgroupParent: str = ""
    BlkioWeight: int = 0
    CpuPeriod: int = 0
    CpuQuota: int = 0
    CpuRealtimePeriod: int = 0
    CpuRealtimeRuntime: int = 0
    CpusetCpus: str = ""
    CpusetMems: str = ""
    Devices: list[Any] | None = None
    DeviceCgroupRules: list[str] | None = None
    MemoryReservation: int = 0
    MemorySwap: int = 0
    MemorySwappiness: int | None = None
    OomKillDisable: bool | None = False
    PidsLimit: int | None = None
    Ulimits: list[Any] | None = None
    Sysctls: dict[str, str] | None = None
    StorageOpt: dict[str, str] | None = None
    # Resources berth stores and shows but does not apply (Windows-only or no blkio throttling)
    BlkioWeightDevice: list[Any] | None = None
    BlkioDeviceReadBps: list[Any] | None = None
    BlkioDeviceWriteBps: list[Any] | None = None
    BlkioDeviceReadIOps: list[Any] | None = None
    BlkioDeviceWriteIOps: list[Any] | None = None
    CpuCount: int = 0
    CpuPercent: int = 0
    IOMaximumIOps: int = 0
    IOMaximumBandwidth: int = 0
    DeviceRequests: list[Any] | None = None
    KernelMemory: int = 0      # API < 1.42 only
    KernelMemoryTCP: int = 0
    Init: bool | None = None
    MaskedPaths: list[str] | None = None
    ReadonlyPaths: list[str] | None = None
    Mounts: list[dict[str, Any]] | None = None
    Tmpfs: dict[str, str] | None = None
    Annotations: dict[str, str] | None = None   # API 1.43


class ContainerConfig(msgspec.Struct):
    Hostname: str = ""
    Domainname: str = ""
    User: str = ""
    AttachStdin: bool = False
    AttachStdout: bool = False
    AttachStderr: bool = False
    ExposedPorts: dict[str, Any] | None = None
    Tty: bool = False
    OpenStdin: bool = False
    StdinOnce: bool = False
    Env: list[str] | None = None
    Cmd: StrOrList = None
    Healthcheck: dict[str, Any] | None = None
    ArgsEscaped: bool | None = None
    Image: str = ""
    Volumes: dict[str, Any] | None = None
    WorkingDir: str = ""
    Entrypoint: StrOrList = None
    NetworkDisabled: bool | None = None
    MacAddress: str | None = None
    OnBuild: list[str] | None = None
    Labels: dict[str, str] | None = None
    StopSignal: str | None = None
    StopTimeout: int | None = None
    Shell: list[str] | None = None


class CreateRequest(ContainerConfig):
    HostConfig: HostConfig | None = None
    NetworkingConfig: dict[str, Any] | None = None


_create_decoder = msgspec.json.Decoder(CreateRequest)


def decode_create(body: bytes) -> CreateRequest:
    return _create_decoder.decode(body or b"{}")


def config_of(req: CreateRequest) -> ContainerConfig:
    fields = {f: getattr(req, f) for f in ContainerConfig.__struct_fields__}
    return ContainerConfig(**fields)
