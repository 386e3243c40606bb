"""The container record and its state machine (pure data)."""

from __future__ import annotations

import enum

import msgspec

from berth.schema.containers import ContainerConfig, HostConfig

ZERO_TIME = "0001-01-01T00:00:00Z"
DEFAULT_CGROUP_PARENT = "/berth"  # dockerd's cgroupfs default is /docker


class Status(str, enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    REMOVING = "removing"
    EXITED = "exited"
    DEAD = "dead"


class State(msgspec.Struct):
    status: Status = Status.CREATED
    pid: int = 0
    shim_pid: int = 0
    shim_start: int = 0          # /proc/<shim_pid>/stat start time: never trust a recycled pid
    exit_code: int = 0
    error: str = ""
    oom_killed: bool = False
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    starting: bool = False       # intent recorded before the shim is asked for (crash recovery)
    cgroups_path: str = ""       # the OCI cgroupsPath of the last start ("" before: /berth/<id>)


class Container(msgspec.Struct):
    id: str
    name: str                    # without the leading "/"
    created: str
    path: str
    args: list[str]
    config: ContainerConfig
    host_config: HostConfig
    image_id: str
    state: State = msgspec.field(default_factory=State)
    restart_count: int = 0
    size_rw: int | None = None
    manually_stopped: bool = False  # by stop/kill/remove: restart policies leave it alone
    cri_log: str = ""            # a CRI container's log in the kubelet's format (its own path)
    hugepages: dict[str, int] = {}   # a CRI container's hugepage limits: page size ("2MB") -> bytes
    bare: bool = False           # a CRI pod's pause: its rootfs and nothing else (container_start.bare)

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def cgroups_path(self) -> str:
        """Its cgroup's OCI cgroupsPath, as its last start wrote it into the spec."""
        return self.state.cgroups_path or f"{DEFAULT_CGROUP_PARENT}/{self.id}"

    @property
    def running(self) -> bool:
        return self.state.status in (Status.RUNNING, Status.PAUSED, Status.RESTARTING)


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(Container)


def encode(c: Container) -> bytes:
    return _enc.encode(c)


def decode(b: bytes) -> Container:
    return _dec.decode(b)
