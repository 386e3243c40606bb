"""Container stats (``GET /containers/{id}/stats``, ``docker stats``) as typed samples;
``api/stats_shape.py`` writes them as Docker's JSON.

One sample = the cgroup's counters (``Cgroup.stats()``), the host's total CPU time from
/proc/stat, and the container's network counters from /proc/<pid>/net/dev. The docker CLI
computes CPU % from two samples, and memory as usage minus the inactive file cache, so a sample
keeps what dockerd reports for both.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from berth.engine.model import ZERO_TIME, Container
from berth.runtime.cgroups import open_cgroup

_NS = 1_000_000_000
_HZ = os.sysconf("SC_CLK_TCK")


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def system_cpu_ns() -> int:
    """Total host CPU time (all CPUs, all modes but guest) in ns, as dockerd reads it."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu "):
                fields = [int(x) for x in line.split()[1:8]]
                return sum(fields) * _NS // _HZ
    return 0


def host_memory() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass(frozen=True)
class NetCounters:
    rx_bytes: int
    rx_packets: int
    rx_errors: int
    rx_dropped: int
    tx_bytes: int
    tx_packets: int
    tx_errors: int
    tx_dropped: int


@dataclass(frozen=True)
class CpuSample:
    total_ns: int
    kernel_ns: int
    user_ns: int
    percpu_ns: list[int]
    system_ns: int               # the host's CPU time, all CPUs (the CLI's denominator)
    online_cpus: int
    periods: int
    throttled_periods: int
    throttled_ns: int


@dataclass(frozen=True)
class MemorySample:
    usage: int
    limit: int                   # the cgroup's, or the host's memory when unlimited
    stats: dict[str, int]        # memory.stat
    max_usage: int | None = None
    failcnt: int | None = None


@dataclass(frozen=True)
class BlkioEntry:
    major: int
    minor: int
    op: str
    value: int


@dataclass(frozen=True)
class Sample:
    """One reading of a container's counters; ``cpu`` is None when it is not running."""

    id: str
    name: str                    # without the leading "/"
    read: str                    # when it was taken (RFC 3339, ns), or ZERO_TIME
    cpu: CpuSample | None = None
    memory: MemorySample | None = None
    pids_current: int | None = None
    pids_limit: int | None = None
    io_service_bytes: list[BlkioEntry] | None = None
    networks: dict[str, NetCounters] = field(default_factory=dict)


def net_dev(pid: int) -> dict[str, NetCounters]:
    out: dict[str, NetCounters] = {}
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.readlines()[2:]
    except OSError:
        return out
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        if name == "lo":
            continue
        v = [int(x) for x in rest.split()]
        out[name] = NetCounters(v[0], v[1], v[2], v[3], v[8], v[9], v[10], v[11])
    return out


def sample(c: Container, raw: dict[str, Any] | None, online_cpus: int) -> Sample:
    """One reading of ``c`` from its cgroup's counters (``raw``: ``Cgroup.stats()``)."""
    if not (c.running and c.state.pid > 0 and raw is not None):
        return Sample(c.id, c.name, ZERO_TIME)
    cpu = raw.get("cpu") or {}
    thr = cpu.get("throttling") or {}
    cpu_sample = CpuSample(cpu.get("usage_ns") or 0, cpu.get("system_ns") or 0, cpu.get("user_ns") or 0,
                           list(cpu.get("percpu_ns") or []), system_cpu_ns(), online_cpus, thr.get("periods", 0),
                           thr.get("throttled_periods", 0), thr.get("throttled_time_ns", 0))
    pids = raw.get("pids") or {}
    blk = (raw.get("blkio") or {}).get("io_service_bytes_recursive")
    return Sample(c.id, c.name, _now(), cpu_sample, _memory(raw.get("memory") or {}), pids.get("current"),
                  pids.get("limit") or None, None if blk is None else [BlkioEntry(**e) for e in blk],
                  net_dev(c.state.pid))


def _memory(mem: dict[str, Any]) -> MemorySample | None:
    if not mem:
        return None
    limit = mem.get("limit")
    host = host_memory()
    if limit is None or limit <= 0 or limit > host:
        limit = host
    return MemorySample(mem.get("usage") or 0, limit, mem.get("stats") or {}, mem.get("max_usage"),
                        mem.get("failcnt"))


def raw_stats(c: Container) -> dict[str, Any] | None:
    if not c.running:
        return None
    return cgroup_stats(c.cgroups_path)


def cgroup_stats(path: str) -> dict[str, Any] | None:
    """The counters of the cgroup at OCI cgroupsPath ``path`` (a pod's, say); None if gone."""
    try:
        return open_cgroup(path).stats()
    except OSError:
        return None


def online_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except OSError:
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Counters:
    """What ``/metrics`` shows of one running container: its cgroup's and its netns's counters."""

    id: str
    name: str
    cpu_ns: int
    user_ns: int
    system_ns: int
    memory: int | None
    memory_limit: int | None     # None: unlimited
    pids: int | None
    io: list[BlkioEntry]
    networks: dict[str, NetCounters]


def counters(c: Container) -> Counters | None:
    """One cheap reading of ``c`` (None when it is not running): no host-wide files are read."""
    if not c.running or c.state.pid <= 0:
        return None
    try:
        raw = open_cgroup(c.cgroups_path).counters()
    except OSError:
        return None
    cpu = raw.get("cpu") or {}
    mem = raw.get("memory") or {}
    blk = (raw.get("blkio") or {}).get("io_service_bytes_recursive") or []
    return Counters(c.id, c.name, cpu.get("usage_ns") or 0, cpu.get("user_ns") or 0, cpu.get("system_ns") or 0,
                    mem.get("usage"), mem.get("limit"), (raw.get("pids") or {}).get("current"),
                    [BlkioEntry(**e) for e in blk], net_dev(c.state.pid))
