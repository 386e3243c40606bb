"""UpdateContainerResources (read back from the running container's cgroup files and from
ContainerStatus), resources given at CreateContainer, and ReopenContainerLog (the kubelet's
rotation: rename the file, ask for a reopen, new lines land in a new file at the path); the
verbose info of ContainerStatus and PodSandboxStatus."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.integration.cri.conftest import Cri, container_config, grpc, pb, pod_config

pytestmark = pytest.mark.root

CG = Path("/sys/fs/cgroup")
V2 = (CG / "cgroup.controllers").exists()
TICK = "i=0; while :; do echo line$i; i=$((i+1)); sleep 0.05; done"


def _cgroup(cid: str) -> dict[str, str]:
    """CPU quota/period, shares (v1) or weight (v2) and the memory limit of berth's cgroup."""
    if V2:
        d = CG / "berth" / cid
        quota, period = (d / "cpu.max").read_text().split()
        return {"quota": quota, "period": period, "shares": (d / "cpu.weight").read_text().strip(),
                "memory": (d / "memory.max").read_text().strip()}
    cpu, mem = CG / "cpu" / "berth" / cid, CG / "memory" / "berth" / cid
    return {"quota": (cpu / "cpu.cfs_quota_us").read_text().strip(),
            "period": (cpu / "cpu.cfs_period_us").read_text().strip(),
            "shares": (cpu / "cpu.shares").read_text().strip(),
            "memory": (mem / "memory.limit_in_bytes").read_text().strip()}


def _lines(p: Path) -> list[int]:
    return [int(line.rsplit("line", 1)[1]) for line in p.read_text().splitlines() if "line" in line]


def _wait(cond, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_update_resources_and_reopen_log(cri: Cri, busybox: str, tmp_path: Path) -> None:
    rt = cri.runtime
    cfg = pod_config(tmp_path, "resources")
    sid = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
    try:
        start = pb.LinuxContainerResources(cpu_shares=512, memory_limit_in_bytes=256 << 20, oom_score_adj=500)
        cid = rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sid, sandbox_config=cfg, config=container_config(
            "ticker", busybox, ["sh", "-c", TICK], linux=pb.LinuxContainerConfig(resources=start)))).container_id
        rt.StartContainer(pb.StartContainerRequest(container_id=cid))
        before = _cgroup(cid)
        assert before["memory"] == str(256 << 20)
        assert before["shares"] == ("20" if V2 else "512")  # v2: shares 512 as a weight
        procs = (CG / ("" if V2 else "cpu") / "berth" / cid / "cgroup.procs").read_text().split()
        assert procs and {Path(f"/proc/{p}/oom_score_adj").read_text() for p in procs} == {"500\n"}

        rt.UpdateContainerResources(pb.UpdateContainerResourcesRequest(container_id=cid, linux=pb.LinuxContainerResources(
            cpu_shares=1024, cpu_quota=50000, cpu_period=100000, memory_limit_in_bytes=128 << 20)))
        after = _cgroup(cid)
        assert (after["quota"], after["period"], after["memory"]) == ("50000", "100000", str(128 << 20))
        assert after["shares"] == ("39" if V2 else "1024")
        res = rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid)).status.resources.linux
        assert (res.cpu_shares, res.cpu_quota, res.cpu_period, res.memory_limit_in_bytes) == \
            (1024, 50000, 100000, 128 << 20)
        with pytest.raises(grpc.RpcError) as e:
            rt.UpdateContainerResources(pb.UpdateContainerResourcesRequest(
                container_id=cid, linux=pb.LinuxContainerResources(memory_limit_in_bytes=1024)))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _cgroup(cid)["memory"] == str(128 << 20)

        # the kubelet's log rotation
        log = Path(cfg.log_directory) / "ticker" / "0.log"
        _wait(lambda: log.exists() and len(_lines(log)) >= 3)
        rotated = log.with_name("0.log.20240101-000000")
        os.rename(log, rotated)
        rt.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid))
        size = rotated.stat().st_size
        _wait(lambda: log.exists() and len(_lines(log)) >= 3)
        assert rotated.stat().st_size == size  # nothing more goes to the renamed file
        old, new = _lines(rotated), _lines(log)
        assert new[0] == old[-1] + 1 and new == list(range(new[0], new[0] + len(new)))

        # verbose: containerd's info document (pid, runtimeSpec, ...)
        assert dict(rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid)).info) == {}
        info = json.loads(rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid, verbose=True)).info["info"])
        assert str(info["pid"]) in procs and info["sandboxID"] == sid and info["logPath"] == str(log)
        assert info["runtimeSpec"]["process"]["oomScoreAdj"] == 500
        assert info["runtimeSpec"]["process"]["args"] == ["sh", "-c", TICK]
        pod = json.loads(rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=True)).info["info"])
        assert pod["processStatus"] == "running" and pod["pid"] > 0 and not pod["netNamespaceClosed"]
        assert Path(f"/proc/{pod['pid']}/cmdline").read_bytes().startswith(b"/pause")

        rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=1))
        assert json.loads(rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid, verbose=True))
                          .info["info"])["pid"] == 0
        for call, req, code in (
                (rt.ReopenContainerLog, pb.ReopenContainerLogRequest(container_id=cid), grpc.StatusCode.FAILED_PRECONDITION),
                (rt.ReopenContainerLog, pb.ReopenContainerLogRequest(container_id="0" * 64), grpc.StatusCode.NOT_FOUND),
                (rt.UpdateContainerResources, pb.UpdateContainerResourcesRequest(container_id="0" * 64),
                 grpc.StatusCode.NOT_FOUND)):
            with pytest.raises(grpc.RpcError) as e:
                call(req)
            assert e.value.code() == code
    finally:
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
