"""Container stats in Docker's JSON (``GET /containers/{id}/stats``, ``docker stats``).

One sample = the cgroup's counters (``Cgroup.stats()``), the host's total CPU time from
/proc/stat, and the container's network counters from /proc/<pid>/net/dev. The docker CLI
computes CPU % from two samples (``cpu_stats`` and ``precpu_stats``), and memory as usage minus
the inactive file cache, so both are shaped exactly as dockerd's.
"""

from __future__ import annotations

import os
import time
from typing import Any

from berth.engine.model import Container
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


def net_dev(pid: int) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
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
        out[name] = {"rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2], "rx_dropped": v[3],
                     "tx_bytes": v[8], "tx_packets": v[9], "tx_errors": v[10], "tx_dropped": v[11]}
    return out


def empty_cpu() -> dict[str, Any]:
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def sample(c: Container, raw: dict[str, Any] | None, online_cpus: int) -> dict[str, Any]:
    """One stats object (without precpu_stats/preread, which the caller fills)."""
    running = c.running and c.state.pid > 0 and raw is not None
    if not running:
        return {"read": "0001-01-01T00:00:00Z", "preread": "0001-01-01T00:00:00Z", "pids_stats": {},
                "blkio_stats": {"io_service_bytes_recursive": None, "io_serviced_recursive": None,
                                "io_queue_recursive": None, "io_service_time_recursive": None,
                                "io_wait_time_recursive": None, "io_merged_recursive": None,
                                "io_time_recursive": None, "sectors_recursive": None},
                "num_procs": 0, "storage_stats": {}, "cpu_stats": empty_cpu(), "precpu_stats": empty_cpu(),
                "memory_stats": {}, "name": f"/{c.name}", "id": c.id}
    assert raw is not None
    cpu = raw.get("cpu") or {}
    thr = cpu.get("throttling") or {}
    cpu_stats: dict[str, Any] = {
        "cpu_usage": {"total_usage": cpu.get("usage_ns") or 0,
                      "usage_in_kernelmode": cpu.get("system_ns") or 0,
                      "usage_in_usermode": cpu.get("user_ns") or 0},
        "system_cpu_usage": system_cpu_ns(),
        "online_cpus": online_cpus,
        "throttling_data": {"periods": thr.get("periods", 0), "throttled_periods": thr.get("throttled_periods", 0),
                            "throttled_time": thr.get("throttled_time_ns", 0)},
    }
    if cpu.get("percpu_ns"):
        cpu_stats["cpu_usage"]["percpu_usage"] = cpu["percpu_ns"]
    mem = raw.get("memory") or {}
    memory_stats: dict[str, Any] = {}
    if mem:
        limit = mem.get("limit")
        host = host_memory()
        if limit is None or limit <= 0 or limit > host:
            limit = host
        memory_stats = {"usage": mem.get("usage") or 0, "stats": mem.get("stats") or {}, "limit": limit}
        if mem.get("max_usage") is not None:
            memory_stats["max_usage"] = mem["max_usage"]
        if mem.get("failcnt") is not None:
            memory_stats["failcnt"] = mem["failcnt"]
    pids = raw.get("pids") or {}
    pids_stats: dict[str, Any] = {}
    if pids.get("current") is not None:
        pids_stats["current"] = pids["current"]
        if pids.get("limit"):
            pids_stats["limit"] = pids["limit"]
    blk = raw.get("blkio") or {}
    d: dict[str, Any] = {
        "read": _now(), "preread": "0001-01-01T00:00:00Z", "pids_stats": pids_stats,
        "blkio_stats": {"io_service_bytes_recursive": blk.get("io_service_bytes_recursive"),
                        "io_serviced_recursive": None, "io_queue_recursive": None,
                        "io_service_time_recursive": None, "io_wait_time_recursive": None,
                        "io_merged_recursive": None, "io_time_recursive": None, "sectors_recursive": None},
        "num_procs": 0, "storage_stats": {}, "cpu_stats": cpu_stats, "precpu_stats": empty_cpu(),
        "memory_stats": memory_stats, "name": f"/{c.name}", "id": c.id,
    }
    nets = net_dev(c.state.pid)
    if nets:
        d["networks"] = nets
    return d


def raw_stats(c: Container) -> dict[str, Any] | None:
    if not c.running:
        return None
    try:
        return open_cgroup(f"/berth/{c.id}").stats()
    except OSError:
        return None


def online_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except OSError:
        return os.cpu_count() or 1
