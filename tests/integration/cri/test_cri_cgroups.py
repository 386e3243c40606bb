"""The pod's cgroup parent (LinuxPodSandboxConfig.cgroup_parent): a cgroupfs path and a systemd
slice name (expanded as runc does) place the pause and every container of the pod below it,
on each hierarchy, and PodSandboxStats reads the pod's cgroup (the whole pod: what the pause
and the containers use, counted once). The test's cgroups are removed afterwards."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.cri.conftest import Cri, container_config, pb, pod_config
from tests.integration.daemon import Daemon

pytestmark = pytest.mark.root
CG = Path("/sys/fs/cgroup")
TAG = f"bcri{os.getpid()}"


def _cgroups(pid: int) -> set[str]:
    """The cgroup paths of ``pid``: on the memory, pids and cpuacct controllers (v1), or its
    one cgroup (v2 only; a hybrid host's unified hierarchy is not berth's)."""
    v2 = (CG / "cgroup.controllers").exists()
    out = set()
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if (v2 and ctrls == "") or {"memory", "pids", "cpuacct"} & set(ctrls.split(",")):
            out.add(path)
    return out


def _pid(berthd: Daemon, cid: str) -> int:
    import json
    return int(json.loads(berthd.request("GET", f"/containers/{cid}/json")[1])["State"]["Pid"])


def _rmdirs(top: str) -> None:
    for root in CG.iterdir():
        base = root / top.lstrip("/")
        if not base.is_dir():
            continue
        for d in sorted((p for p in base.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [base]:
            deadline = time.monotonic() + 5
            while d.exists():
                try:
                    d.rmdir()
                except OSError:
                    assert time.monotonic() < deadline, f"cannot remove {d}"
                    time.sleep(0.05)


@pytest.mark.parametrize("style", ["cgroupfs", "systemd"])
def test_pod_cgroup_parent(cri: Cri, berthd: Daemon, busybox: str, tmp_path: Path, style: str) -> None:
    uid = str(uuid.uuid4())
    if style == "cgroupfs":
        given = expected = f"/{TAG}/burstable/pod{uid}"
        top = f"/{TAG}"
    else:
        u = uid.replace("-", "_")
        given = f"{TAG}-burstable-pod{u}.slice"
        expected = f"/{TAG}.slice/{TAG}-burstable.slice/{TAG}-burstable-pod{u}.slice"
        top = f"/{TAG}.slice"
    cfg = pod_config(tmp_path, f"cg-{style}")
    cfg.metadata.uid = uid
    cfg.linux.cgroup_parent = given
    rt = cri.runtime
    sid = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
    try:
        cid = rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sid, sandbox_config=cfg, config=container_config(
            "eat", busybox, ["sh", "-c", "dd if=/dev/zero bs=1M count=48 | (read -r x; sleep 1000) & exec sleep 1000"]
        ))).container_id
        rt.StartContainer(pb.StartContainerRequest(container_id=cid))
        assert _cgroups(_pid(berthd, sid)) == {f"{expected}/{sid}"}
        assert _cgroups(_pid(berthd, cid)) == {f"{expected}/{cid}"}
        deadline = time.monotonic() + 10
        while True:
            pod = rt.PodSandboxStats(pb.PodSandboxStatsRequest(pod_sandbox_id=sid)).stats.linux
            (c,) = pod.containers
            # the pod's cgroup counts the container's pipe buffer and both processes
            if pod.memory.usage_bytes.value >= c.memory.usage_bytes.value > 0 and pod.cpu.usage_core_nano_seconds.value:
                break
            assert time.monotonic() < deadline, (pod.memory, c.memory)
            time.sleep(0.2)
        usage = int((CG / "memory" / expected.lstrip("/") / "memory.usage_in_bytes").read_text()) \
            if (CG / "memory").is_dir() else 0
        if usage:
            assert abs(pod.memory.usage_bytes.value - usage) < 8 << 20   # the pod's cgroup, not a sum
    finally:
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
        # kubelet removes the pod's cgroup next: its containers' cgroups must be gone by now
        left = [p for p in CG.glob(f"*/{expected.lstrip('/')}/*") if p.is_dir()]
        log = [line for line in berthd.log.read_text(errors="replace").splitlines()[-400:]
               if "cgroup" in line or sid[:12] in line]
        _rmdirs(top)
    assert not left, (left, log[-20:])


def test_bad_slice_name(cri: Cri, tmp_path: Path) -> None:
    import grpc
    cfg = pod_config(tmp_path, "badslice")
    cfg.linux.cgroup_parent = "kubepods--burstable.slice"
    with pytest.raises(grpc.RpcError) as e:
        cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "invalid slice name: kubepods--burstable.slice" in (e.value.details() or "")
