"""The pod's pause runs bare: its rootfs and no other mount (no /proc, /dev, /sys, cgroup or
/etc files, so nothing to mask), while the pod's containers, which join its namespaces, get
their full set, and the pod's sysctls (written by the pause's init before its rootfs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cri.conftest import Cri, container_config, pb, pod_config
from tests.integration.daemon import Daemon

pytestmark = pytest.mark.root


def test_pause_has_its_root_only(cri: Cri, berthd: Daemon, busybox: str, tmp_path: Path) -> None:
    rt = cri.runtime
    cfg = pod_config(tmp_path, "bare")
    cfg.linux.sysctls["net.ipv4.ip_unprivileged_port_start"] = "79"
    sid = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
    try:
        info = rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=True)).info
        pid = int(json.loads(info["info"])["pid"])
        mounts = [line.split()[4] for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()]
        assert mounts == ["/"]
        inspect = json.loads(berthd.request("GET", f"/containers/{sid}/json")[1])
        assert inspect["HostConfig"]["LogConfig"]["Type"] == "none"   # no log file: it says nothing
        cid = rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sid, sandbox_config=cfg,
            config=container_config("sh", busybox, ["sleep", "1000"]))).container_id
        rt.StartContainer(pb.StartContainerRequest(container_id=cid))
        r = rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=[
            "sh", "-c", "hostname; cat /proc/sys/net/ipv4/ip_unprivileged_port_start; cut -d' ' -f2 /proc/mounts"],
            timeout=10))
        lines = r.stdout.decode().split()
        assert lines[:2] == ["bare", "79"], r.stdout      # the pause's UTS and network namespaces
        assert {"/", "/proc", "/dev", "/sys", "/dev/shm", "/etc/hosts"} <= set(lines[2:]), r.stdout
        # the pod's /etc files are the sandbox's (copied from its directory at start)
        r = rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["cat", "/etc/hostname"], timeout=10))
        assert r.stdout == b"bare\n"
    finally:
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))


def _seccomp_mode(cri: Cri, sid: str) -> str:
    info = cri.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=True)).info
    pid = int(json.loads(info["info"])["pid"])
    status = Path(f"/proc/{pid}/status").read_text()
    return next(line.split()[1] for line in status.splitlines() if line.startswith("Seccomp:"))


@pytest.mark.parametrize("profile, mode", [(None, "0"), (pb.SecurityProfile.ProfileType.RuntimeDefault, "2"),
                                           (pb.SecurityProfile.ProfileType.Unconfined, "0")])
def test_pause_seccomp_as_the_pod_asks(cri: Cri, tmp_path: Path, profile: Any, mode: str) -> None:
    """Unconfined unless the pod's security context names a profile (containerd's sandbox)."""
    cfg = pod_config(tmp_path, "sc")
    if profile is not None:
        cfg.linux.security_context.seccomp.profile_type = profile
    sid = cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
    try:
        assert _seccomp_mode(cri, sid) == mode
    finally:
        cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
