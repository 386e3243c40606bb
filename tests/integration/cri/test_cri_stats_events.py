"""ContainerStats, PodSandboxStats (and their lists), GetContainerEvents and the metrics RPCs
against a real berthd: numbers read from a container that writes 8 MiB and spins a CPU."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cri.conftest import Cri, container_config, grpc, pb, pod_config

pytestmark = pytest.mark.root

BUSY = "dd if=/dev/zero of=/blob bs=1M count=8 2>/dev/null; touch /ready; while :; do :; done"
E = pb.ContainerEventType


class EventLog:
    """GetContainerEvents read in a thread into a list."""

    def __init__(self, cri: Cri):
        self.call = cri.runtime.GetContainerEvents(pb.GetEventsRequest())
        self.events: list[Any] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for ev in self.call:
                self.events.append(ev)
        except grpc.RpcError:
            pass

    def of(self, cid: str) -> list[int]:
        return [e.container_event_type for e in self.events if e.container_id == cid]

    def wait_for(self, cid: str, kinds: list[int], timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while self.of(cid) != kinds and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.of(cid) == kinds

    def close(self) -> None:
        self.call.cancel()
        self.thread.join(5)


def _wait_ready(cri: Cri, cid: str) -> None:
    r = cri.runtime.ExecSync(pb.ExecSyncRequest(
        container_id=cid, cmd=["sh", "-c", "for i in $(seq 1 100); do [ -e /ready ] && exit 0; sleep 0.1; done; exit 1"],
        timeout=20))
    assert r.exit_code == 0


def test_stats_and_events(cri: Cri, busybox: str, tmp_path: Path) -> None:
    rt = cri.runtime
    log = EventLog(cri)
    time.sleep(0.2)  # the stream is subscribed before the pod exists
    cfg = pod_config(tmp_path, "stats")
    sid = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
    try:
        cid = rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sid, sandbox_config=cfg, config=container_config("busy", busybox, ["sh", "-c", BUSY]))
        ).container_id
        rt.StartContainer(pb.StartContainerRequest(container_id=cid))
        _wait_ready(cri, cid)

        first = rt.ContainerStats(pb.ContainerStatsRequest(container_id=cid)).stats
        time.sleep(0.5)
        st = rt.ContainerStats(pb.ContainerStatsRequest(container_id=cid)).stats
        assert st.attributes.id == cid and st.attributes.metadata.name == "busy" and st.attributes.labels["c"] == "busy"
        assert st.cpu.usage_core_nano_seconds.value > first.cpu.usage_core_nano_seconds.value > 0
        assert st.cpu.usage_nano_cores.value > 50_000_000  # a spinning shell: more than 0.05 of a core
        assert st.memory.usage_bytes.value >= st.memory.working_set_bytes.value > 0
        assert st.writable_layer.used_bytes.value >= 8 << 20 and st.writable_layer.inodes_used.value >= 2
        assert st.writable_layer.fs_id.mountpoint

        listed = rt.ListContainerStats(pb.ListContainerStatsRequest(
            filter=pb.ContainerStatsFilter(pod_sandbox_id=sid))).stats
        assert [s.attributes.id for s in listed] == [cid]
        assert rt.ListContainerStats(pb.ListContainerStatsRequest(
            filter=pb.ContainerStatsFilter(label_selector={"c": "nobody"}))).stats == []

        ps = rt.PodSandboxStats(pb.PodSandboxStatsRequest(pod_sandbox_id=sid)).stats
        assert ps.attributes.id == sid and ps.attributes.metadata.name == "stats"
        assert ps.linux.cpu.usage_core_nano_seconds.value >= st.cpu.usage_core_nano_seconds.value
        assert ps.linux.memory.working_set_bytes.value > 0
        assert ps.linux.network.default_interface.name == "eth0"
        assert ps.linux.process.process_count.value >= 2  # the pause and the shell
        assert [c.attributes.id for c in ps.linux.containers] == [cid]
        pods = rt.ListPodSandboxStats(pb.ListPodSandboxStatsRequest(filter=pb.PodSandboxStatsFilter(id=sid))).stats
        assert [p.attributes.id for p in pods] == [sid]

        assert list(rt.ListMetricDescriptors(pb.ListMetricDescriptorsRequest()).descriptors) == []
        assert list(rt.ListPodSandboxMetrics(pb.ListPodSandboxMetricsRequest()).pod_metrics) == []
        for call, req in ((rt.ContainerStats, pb.ContainerStatsRequest(container_id="0" * 64)),
                          (rt.PodSandboxStats, pb.PodSandboxStatsRequest(pod_sandbox_id=cid))):
            with pytest.raises(grpc.RpcError) as e:
                call(req)
            assert e.value.code() == grpc.StatusCode.NOT_FOUND

        rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=1))
        rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))
        log.wait_for(cid, [E.CONTAINER_CREATED_EVENT, E.CONTAINER_STARTED_EVENT, E.CONTAINER_STOPPED_EVENT,
                           E.CONTAINER_DELETED_EVENT])
        started = next(e for e in log.events if e.container_id == cid and e.container_event_type ==
                       E.CONTAINER_STARTED_EVENT)
        assert started.pod_sandbox_status.id == sid and started.created_at > 0
        assert [c.id for c in started.containers_statuses] == [cid]
    finally:
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    try:
        log.wait_for(sid, [E.CONTAINER_CREATED_EVENT, E.CONTAINER_STARTED_EVENT, E.CONTAINER_STOPPED_EVENT,
                           E.CONTAINER_DELETED_EVENT])
    finally:
        log.close()
