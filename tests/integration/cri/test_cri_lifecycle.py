"""The kubelet's lifecycle over the CRI against a real berthd: pull-less image, sandbox, two
containers sharing the pod's network namespace, ExecSync, CRI-format logs, stop, remove; and
the same containers seen through the Docker API."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.cri.conftest import Cri, container_config, pb, pod_config
from tests.integration.daemon import Daemon

pytestmark = pytest.mark.root

DOCKER = "/usr/local/bin/docker"
SERVER = "mkdir -p /www && echo hello-from-pod > /www/index.html && exec httpd -f -p 8080 -h /www"
CRI_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) (F|P) (.*)$")


def _docker(berthd: Daemon, *args: str) -> str:
    p = subprocess.run([DOCKER, *args], env=berthd.env, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_version_status_config(cri: Cri) -> None:
    v = cri.runtime.Version(pb.VersionRequest())
    assert (v.runtime_name, v.runtime_api_version) == ("berth", "v1")
    conds = {c.type: c.status for c in cri.runtime.Status(pb.StatusRequest()).status.conditions}
    assert conds == {"RuntimeReady": True, "NetworkReady": True}
    cfg = cri.runtime.RuntimeConfig(pb.RuntimeConfigRequest())
    assert cfg.linux.cgroup_driver == pb.CgroupDriver.CGROUPFS


def test_pod_lifecycle(cri: Cri, berthd: Daemon, busybox: str, tmp_path: Path) -> None:
    rt = cri.runtime
    cfg = pod_config(tmp_path, "lifecycle")
    sid = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
    try:
        st = rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid)).status
        assert st.state == pb.PodSandboxState.SANDBOX_READY
        assert st.metadata.name == "lifecycle" and st.labels["app"] == "lifecycle"
        assert st.annotations == {"note": "from a test"}
        assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", st.network.ip), st.network.ip
        web = rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sid, sandbox_config=cfg,
            config=container_config("web", busybox, ["sh", "-c", SERVER]))).container_id
        talk = rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sid, sandbox_config=cfg,
            config=container_config("talk", busybox, ["sh", "-c", "echo started; echo oops >&2; exec sleep 1000"],
                                    envs=[pb.KeyValue(key="GREETING", value="hi")]))).container_id
        created = rt.ContainerStatus(pb.ContainerStatusRequest(container_id=web)).status
        assert created.state == pb.ContainerState.CONTAINER_CREATED
        rt.StartContainer(pb.StartContainerRequest(container_id=web))
        rt.StartContainer(pb.StartContainerRequest(container_id=talk))

        # one reaches the other on localhost: they share the pod's network namespace
        fetch = "for i in $(seq 1 50); do wget -qO- http://localhost:8080/index.html && exit 0; sleep 0.1; done; exit 1"
        r = rt.ExecSync(pb.ExecSyncRequest(container_id=talk, cmd=["sh", "-c", fetch], timeout=20))
        assert (r.exit_code, r.stdout) == (0, b"hello-from-pod\n"), r.stderr
        r = rt.ExecSync(pb.ExecSyncRequest(container_id=talk, cmd=["sh", "-c", "hostname; echo $GREETING; "
                                                                          "echo err >&2; exit 3"], timeout=10))
        assert (r.stdout, r.stderr, r.exit_code) == (b"lifecycle\nhi\n", b"err\n", 3)

        # logs in the CRI format at the kubelet's path
        log = Path(cfg.log_directory) / "talk" / "0.log"
        deadline = time.monotonic() + 10
        while len(log.read_text().splitlines() if log.exists() else []) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = [CRI_LINE.match(line) for line in log.read_text().splitlines()]
        assert all(lines), log.read_text()
        assert sorted((m.group(1), m.group(2), m.group(3)) for m in lines if m) == \
            [("stderr", "F", "oops"), ("stdout", "F", "started")]
        status = rt.ContainerStatus(pb.ContainerStatusRequest(container_id=talk)).status
        assert status.state == pb.ContainerState.CONTAINER_RUNNING and status.log_path == str(log)
        assert status.metadata.name == "talk" and status.labels["c"] == "talk" and status.started_at > 0

        listed = rt.ListContainers(pb.ListContainersRequest(filter=pb.ContainerFilter(pod_sandbox_id=sid)))
        assert sorted(c.metadata.name for c in listed.containers) == ["talk", "web"]
        only = rt.ListContainers(pb.ListContainersRequest(filter=pb.ContainerFilter(label_selector={"c": "web"})))
        assert [c.id for c in only.containers] == [web]
        pods = rt.ListPodSandbox(pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(label_selector={"app": "lifecycle"})))
        assert [p.id for p in pods.items] == [sid]

        # the Docker API sees the same containers, labelled as cri-dockerd labels them
        ps = [json.loads(line) for line in _docker(berthd, "ps", "-a", "--no-trunc", "--format", "{{json .}}").splitlines()]
        ours = {p["ID"]: p for p in ps if p["ID"] in (sid, web, talk)}
        assert len(ours) == 3
        assert "io.kubernetes.pod.name=lifecycle" in ours[web]["Labels"]
        assert ours[sid]["Names"].startswith("k8s_POD_lifecycle_default_")

        rt.StopContainer(pb.StopContainerRequest(container_id=talk, timeout=1))
        assert rt.ContainerStatus(pb.ContainerStatusRequest(container_id=talk)).status.state == \
            pb.ContainerState.CONTAINER_EXITED
        rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid))
        st = rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid)).status
        assert st.state == pb.PodSandboxState.SANDBOX_NOTREADY
        rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid))  # idempotent
    finally:
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    left = _docker(berthd, "ps", "-aq", "--no-trunc")
    assert sid not in left and web not in left and talk not in left
    rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))  # idempotent


def test_host_network_pod(cri: Cri, busybox: str, tmp_path: Path) -> None:
    rt = cri.runtime
    cfg = pod_config(tmp_path, "hostnet", host_network=True)
    sid = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
    try:
        cid = rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sid, sandbox_config=cfg,
            config=container_config("c", busybox, ["sleep", "1000"]))).container_id
        rt.StartContainer(pb.StartContainerRequest(container_id=cid))
        r = rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["readlink", "/proc/1/ns/net"], timeout=10))
        import os
        assert r.stdout.decode().strip() == os.readlink("/proc/self/ns/net")
        st = rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid)).status
        assert st.linux.namespaces.options.network == pb.NamespaceMode.NODE
    finally:
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
