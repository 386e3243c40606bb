"""Docker's stats JSON (``GET /containers/{id}/stats``) from the engine's samples, key for key
as dockerd writes it: the docker CLI computes CPU % from ``cpu_stats`` and ``precpu_stats``."""

from __future__ import annotations

from typing import Any

from berth.engine.model import ZERO_TIME
from berth.engine.stats import CpuSample, Sample

_BLKIO_EMPTY = ("io_serviced_recursive", "io_queue_recursive", "io_service_time_recursive",
                "io_wait_time_recursive", "io_merged_recursive", "io_time_recursive", "sectors_recursive")


def cpu_json(cpu: CpuSample | None) -> dict[str, Any]:
    if cpu is None:
        return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
    usage: dict[str, Any] = {"total_usage": cpu.total_ns, "usage_in_kernelmode": cpu.kernel_ns,
                             "usage_in_usermode": cpu.user_ns}
    if cpu.percpu_ns:
        usage["percpu_usage"] = cpu.percpu_ns
    return {"cpu_usage": usage, "system_cpu_usage": cpu.system_ns, "online_cpus": cpu.online_cpus,
            "throttling_data": {"periods": cpu.periods, "throttled_periods": cpu.throttled_periods,
                                "throttled_time": cpu.throttled_ns}}


def _memory_json(s: Sample) -> dict[str, Any]:
    m = s.memory
    if m is None:
        return {}
    out: dict[str, Any] = {"usage": m.usage, "stats": m.stats, "limit": m.limit}
    if m.max_usage is not None:
        out["max_usage"] = m.max_usage
    if m.failcnt is not None:
        out["failcnt"] = m.failcnt
    return out


def _pids_json(s: Sample) -> dict[str, int]:
    if s.pids_current is None:
        return {}
    out = {"current": s.pids_current}
    if s.pids_limit:
        out["limit"] = s.pids_limit
    return out


def _blkio_json(s: Sample) -> dict[str, Any]:
    entries = None if s.io_service_bytes is None else [
        {"major": e.major, "minor": e.minor, "op": e.op, "value": e.value} for e in s.io_service_bytes]
    return {"io_service_bytes_recursive": entries, **{k: None for k in _BLKIO_EMPTY}}


def stats_json(s: Sample, prev: Sample | None = None) -> dict[str, Any]:
    """One stats object; ``prev`` (the sample before it) gives ``precpu_stats`` and ``preread``."""
    d: dict[str, Any] = {
        "read": s.read, "preread": prev.read if prev is not None else ZERO_TIME, "pids_stats": _pids_json(s),
        "blkio_stats": _blkio_json(s), "num_procs": 0, "storage_stats": {}, "cpu_stats": cpu_json(s.cpu),
        "precpu_stats": cpu_json(prev.cpu if prev is not None else None), "memory_stats": _memory_json(s),
        "name": f"/{s.name}", "id": s.id,
    }
    if s.networks:
        d["networks"] = {name: {"rx_bytes": n.rx_bytes, "rx_packets": n.rx_packets, "rx_errors": n.rx_errors,
                                "rx_dropped": n.rx_dropped, "tx_bytes": n.tx_bytes, "tx_packets": n.tx_packets,
                                "tx_errors": n.tx_errors, "tx_dropped": n.tx_dropped}
                         for name, n in s.networks.items()}
    return d
