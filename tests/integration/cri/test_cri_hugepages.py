"""Hugepage limits (ContainerConfig.linux.resources.hugepage_limits): written as
``hugetlb.<size>.max`` into the container's cgroup by a berthd on the host's cgroup2 mount
(where the hugetlb controller is free on a v1 host), shown in ContainerStatus; a page size the
host does not have is INVALID_ARGUMENT; UpdateContainerResources changes them on the running
container; without the controller (this host's v1 hierarchies)
the limits are left out and the container runs, as with containerd."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from berth.engine.hugepages import sizes
from tests.integration.cri.conftest import Cri, container_config, own_cri, pb, pod_config

pytestmark = pytest.mark.root
UNIFIED = Path("/sys/fs/cgroup/unified")


def _config(name: str, limits: dict[str, int]) -> pb.ContainerConfig:
    res = pb.LinuxContainerResources(hugepage_limits=[pb.HugepageLimit(page_size=k, limit=v)
                                                      for k, v in limits.items()])
    return container_config(name, "busybox:latest", ["sleep", "1000"],
                            linux=pb.LinuxContainerConfig(resources=res))


def _run(cri: Cri, sid: str, cfg: pb.PodSandboxConfig, name: str, limits: dict[str, int]) -> str:
    cid = cri.runtime.CreateContainer(pb.CreateContainerRequest(
        pod_sandbox_id=sid, sandbox_config=cfg, config=_config(name, limits))).container_id
    cri.runtime.StartContainer(pb.StartContainerRequest(container_id=cid))
    return cid


@pytest.fixture(scope="module")
def v2_cri() -> Iterator[Cri]:
    if not (UNIFIED / "cgroup.controllers").exists() or \
            "hugetlb" not in (UNIFIED / "cgroup.controllers").read_text().split():
        pytest.skip("no cgroup2 mount at /sys/fs/cgroup/unified with the hugetlb controller free")
    if "2MB" not in sizes():
        pytest.skip("no 2 MiB hugepages on this host")
    with own_cri(env={"BERTH_CGROUP_ROOT": str(UNIFIED)}) as (_, c):
        yield c


def test_hugetlb_max_on_cgroup2(v2_cri: Cri, tmp_path: Path) -> None:
    cfg = pod_config(tmp_path, "huge")
    sid = v2_cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
    try:
        limits = {s: 0 for s in sizes()} | {"2MB": 4 << 21}
        cid = _run(v2_cri, sid, cfg, "huge", limits)
        cg = UNIFIED / "berth" / cid
        assert (cg / "hugetlb.2MB.max").read_text() == f"{4 << 21}\n"
        if "1GB" in limits:
            assert (cg / "hugetlb.1GB.max").read_text() == "0\n"
        st = v2_cri.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=cid)).status
        assert {h.page_size: h.limit for h in st.resources.linux.hugepage_limits} == limits
        # UpdateContainerResources: the sizes given replace theirs, the others stay
        v2_cri.runtime.UpdateContainerResources(pb.UpdateContainerResourcesRequest(
            container_id=cid, linux=pb.LinuxContainerResources(
                hugepage_limits=[pb.HugepageLimit(page_size="2MB", limit=8 << 21)])))
        assert (cg / "hugetlb.2MB.max").read_text() == f"{8 << 21}\n"
        st = v2_cri.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=cid)).status
        assert {h.page_size: h.limit for h in st.resources.linux.hugepage_limits} == limits | {"2MB": 8 << 21}
        with pytest.raises(grpc.RpcError) as e:
            v2_cri.runtime.UpdateContainerResources(pb.UpdateContainerResourcesRequest(
                container_id=cid, linux=pb.LinuxContainerResources(
                    hugepage_limits=[pb.HugepageLimit(page_size="3MB", limit=1 << 22)])))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (cg / "hugetlb.2MB.max").read_text() == f"{8 << 21}\n"
        with pytest.raises(grpc.RpcError) as e:
            v2_cri.runtime.CreateContainer(pb.CreateContainerRequest(
                pod_sandbox_id=sid, sandbox_config=cfg, config=_config("odd", {"3MB": 1 << 22})))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "page size '3MB' is not supported by this host" in (e.value.details() or "")
    finally:
        v2_cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    deadline = time.monotonic() + 5
    while cg.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not cg.exists()


def test_without_the_controller_the_limits_are_left_out(cri: Cri, tmp_path: Path) -> None:
    if (Path("/sys/fs/cgroup") / "hugetlb").is_dir() or (Path("/sys/fs/cgroup") / "cgroup.controllers").exists():
        pytest.skip("the suite's berthd has a hugetlb controller here")
    if "2MB" not in sizes():
        pytest.skip("no 2 MiB hugepages on this host")
    cfg = pod_config(tmp_path, "nohuge")
    sid = cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
    try:
        cid = _run(cri, sid, cfg, "nohuge", {"2MB": 1 << 21})
        r = cri.runtime.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["true"], timeout=10))
        assert r.exit_code == 0
    finally:
        cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
