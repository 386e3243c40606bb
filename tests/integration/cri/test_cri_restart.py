"""CRI objects survive berthd's restart (live restore): after kill -9 of berthd the pod is
still ready, its container still runs and answers ExecSync, and both still list; --cri=false
serves no socket."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.cri.conftest import Cri, container_config, pb, pod_config, wait_socket
from tests.integration.daemon import Daemon, suite_args

pytestmark = pytest.mark.root


def test_pod_survives_kill9_of_berthd(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs uid 0")
    d = Daemon(args=suite_args())
    d.start()
    try:
        d.import_busybox("busybox:latest")
        sock = d.exec_root / "cri.sock"
        wait_socket(sock)
        cri = Cri(sock)
        cfg = pod_config(tmp_path, "survivor")
        sid = cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
        cid = cri.runtime.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sid, config=container_config("c", "busybox:latest", ["sleep", "1000"]))).container_id
        cri.runtime.StartContainer(pb.StartContainerRequest(container_id=cid))
        cri.channel.close()
        d.kill9()
        d.start()
        wait_socket(sock)
        cri = Cri(sock)
        st = cri.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid)).status
        assert st.state == pb.PodSandboxState.SANDBOX_READY and st.metadata.name == "survivor"
        cs = cri.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=cid)).status
        assert cs.state == pb.ContainerState.CONTAINER_RUNNING and cs.metadata.name == "c"
        r = cri.runtime.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["hostname"], timeout=10))
        assert r.stdout == b"survivor\n"
        assert [p.id for p in cri.runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items] == [sid]
        cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
        assert not cri.runtime.ListContainers(pb.ListContainersRequest()).containers
        cri.channel.close()
    finally:
        d.cleanup()


def test_cri_false_serves_no_socket(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs uid 0")
    d = Daemon(args=[*suite_args(), "--cri=false"])
    d.start()
    try:
        import time
        time.sleep(1)  # the socket would be there by now (it is within ~0.5 s when on)
        assert not (d.exec_root / "cri.sock").exists()
    finally:
        d.cleanup()
