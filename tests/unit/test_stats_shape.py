"""The engine samples a container's counters as typed records; api/stats_shape writes them as
dockerd's stats JSON (the docker CLI's CPU % needs ``cpu_stats``, ``precpu_stats`` and
``system_cpu_usage`` exactly where dockerd puts them)."""

from __future__ import annotations

import os
from typing import Any

from berth.api.stats_shape import stats_json
from berth.engine import stats as st
from berth.engine.model import ZERO_TIME, Container, State, Status
from berth.schema.containers import ContainerConfig, HostConfig

# what Cgroup.stats() returns on a v2 host (runtime/cgroups/v2.py)
RAW: dict[str, Any] = {
    "memory": {"usage": 5 << 20, "max_usage": 7 << 20, "limit": 64 << 20, "failcnt": 0,
               "stats": {"inactive_file": 4096, "anon": 1 << 20}},
    "cpu": {"usage_ns": 3_000_000, "user_ns": 2_000_000, "system_ns": 1_000_000, "percpu_ns": [],
            "throttling": {"periods": 4, "throttled_periods": 1, "throttled_time_ns": 500}},
    "pids": {"current": 3, "limit": 100},
    "blkio": {"read_bytes": 512, "write_bytes": 0, "io_service_bytes_recursive": [
        {"major": 8, "minor": 0, "op": "read", "value": 512}, {"major": 8, "minor": 0, "op": "write", "value": 0}]},
}


def container(running: bool) -> Container:
    state = State(status=Status.RUNNING, pid=os.getpid()) if running else State(status=Status.EXITED)
    return Container(id="c" * 64, name="web", created=ZERO_TIME, path="sh", args=[], config=ContainerConfig(),
                     host_config=HostConfig(), image_id="sha256:" + "0" * 64, state=state)


def test_a_stopped_container_reads_as_dockerd_zeros() -> None:
    s = st.sample(container(False), None, 4)
    zero_cpu = {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
    assert stats_json(s) == {
        "read": ZERO_TIME, "preread": ZERO_TIME, "pids_stats": {},
        "blkio_stats": {k: None for k in ("io_service_bytes_recursive", "io_serviced_recursive",
                                          "io_queue_recursive", "io_service_time_recursive",
                                          "io_wait_time_recursive", "io_merged_recursive", "io_time_recursive",
                                          "sectors_recursive")},
        "num_procs": 0, "storage_stats": {}, "cpu_stats": zero_cpu, "precpu_stats": zero_cpu,
        "memory_stats": {}, "name": "/web", "id": "c" * 64}


def test_a_running_sample_has_dockerd_keys_and_values() -> None:
    d = stats_json(st.sample(container(True), RAW, 4))
    assert list(d)[:11] == ["read", "preread", "pids_stats", "blkio_stats", "num_procs", "storage_stats",
                            "cpu_stats", "precpu_stats", "memory_stats", "name", "id"]
    assert d["read"] != ZERO_TIME and d["preread"] == ZERO_TIME
    cpu = d["cpu_stats"]
    assert cpu["cpu_usage"] == {"total_usage": 3_000_000, "usage_in_kernelmode": 1_000_000,
                                "usage_in_usermode": 2_000_000}  # no percpu_usage on v2
    assert cpu["system_cpu_usage"] > 0 and cpu["online_cpus"] == 4
    assert cpu["throttling_data"] == {"periods": 4, "throttled_periods": 1, "throttled_time": 500}
    assert d["memory_stats"] == {"usage": 5 << 20, "stats": {"inactive_file": 4096, "anon": 1 << 20},
                                 "limit": 64 << 20, "max_usage": 7 << 20, "failcnt": 0}
    assert d["pids_stats"] == {"current": 3, "limit": 100}
    assert d["blkio_stats"]["io_service_bytes_recursive"] == RAW["blkio"]["io_service_bytes_recursive"]
    assert d["blkio_stats"]["sectors_recursive"] is None


def test_the_previous_sample_gives_precpu_and_preread() -> None:
    c = container(True)
    prev, cur = st.sample(c, RAW, 2), st.sample(c, {**RAW, "cpu": {"usage_ns": 9}}, 2)
    d = stats_json(cur, prev)
    assert d["preread"] == prev.read
    assert d["precpu_stats"] == stats_json(prev)["cpu_stats"]
    assert d["cpu_stats"]["cpu_usage"]["total_usage"] == 9


def test_an_unlimited_memory_cgroup_reports_the_hosts_memory() -> None:
    raw = {**RAW, "memory": {"usage": 1, "limit": None, "stats": {}}}
    mem = stats_json(st.sample(container(True), raw, 1))["memory_stats"]
    assert mem == {"usage": 1, "stats": {}, "limit": st.host_memory()}
