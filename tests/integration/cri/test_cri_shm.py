"""A pod's /dev/shm, as containerd makes it: with IPC at POD level berthd mounts a tmpfs (64 MiB,
nosuid, nodev, noexec, mode 1777) at the sandbox's directory and each container of the pod binds
it, so a file one container writes to /dev/shm the other reads, and another pod does not see it;
unmounted at StopPodSandbox (and by RemovePodSandbox or `docker rm -f` of the pause, and by berthd's start for a pod that died
while berthd was killed); a hostIPC pod's containers have the host's /dev/shm."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.cri.conftest import Cri, container_config, own_cri, pb, pod_config, wait_socket
from tests.integration.daemon import Daemon

pytestmark = pytest.mark.root
DOCKER = "/usr/local/bin/docker"


def _pod(cri: Cri, cfg: pb.PodSandboxConfig, *names: str) -> tuple[str, list[str]]:
    sid = cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
    ids = []
    for n in names:
        ids.append(cri.runtime.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sid, sandbox_config=cfg,
            config=container_config(n, "busybox:latest", ["sleep", "1000"]))).container_id)
        cri.runtime.StartContainer(pb.StartContainerRequest(container_id=ids[-1]))
    return sid, ids


def _sh(cri: Cri, cid: str, script: str) -> tuple[int, str]:
    r = cri.runtime.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["sh", "-c", script], timeout=10))
    return r.exit_code, (r.stdout + r.stderr).decode()


def _shm_mounts(d: Daemon) -> list[str]:
    """berthd's (the host's) mount points named shm below the daemon's data root."""
    root = str(d.data_root) + "/"
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point.startswith(root) and point.endswith("/shm"):
            out.append(point)
    return out


def test_pod_containers_share_dev_shm(cri: Cri, berthd: Daemon, tmp_path: Path) -> None:
    sid, (a, b) = _pod(cri, pod_config(tmp_path, "shm-a"), "writer", "reader")
    other, (c,) = _pod(cri, pod_config(tmp_path, "shm-b"), "stranger")
    try:
        assert _shm_mounts(berthd).count(f"{berthd.data_root}/containers/{sid}/shm") == 1
        assert _sh(cri, a, "echo segment > /dev/shm/seg") == (0, "")
        assert _sh(cri, b, "cat /dev/shm/seg") == (0, "segment\n")
        assert _sh(cri, c, "ls /dev/shm") == (0, "")   # another pod's /dev/shm is its own
        # the pod's is the only mount there: no tmpfs of the container's own hidden under it
        assert _sh(cri, b, "awk '$5 == \"/dev/shm\"' /proc/self/mountinfo | wc -l") == (0, "1\n")
        code, out = _sh(cri, b, "stat -c %a /dev/shm; grep ' /dev/shm ' /proc/mounts | tail -1")
        mode, line = out.splitlines()
        assert code == 0 and mode == "1777"
        fstype, opts = line.split()[2], line.split()[3].split(",")
        assert fstype == "tmpfs" and {"nosuid", "nodev", "noexec", "size=65536k"} <= set(opts), line
    finally:
        cri.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid))
        stopped = _shm_mounts(berthd)
        cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
        cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=other))
    assert f"{berthd.data_root}/containers/{sid}/shm" not in stopped   # StopPodSandbox unmounts
    assert not [p for p in _shm_mounts(berthd) if sid in p or other in p]


def test_host_ipc_pod_has_the_hosts_dev_shm(cri: Cri, berthd: Daemon, tmp_path: Path) -> None:
    cfg = pod_config(tmp_path, "hostipc")
    cfg.linux.security_context.namespace_options.ipc = pb.NamespaceMode.NODE
    name = f"berth-test-{uuid.uuid4().hex[:8]}"
    host = Path("/dev/shm") / name
    host.write_text("from the host\n")
    sid, (a,) = _pod(cri, cfg, "c")
    try:
        assert _sh(cri, a, f"cat /dev/shm/{name}") == (0, "from the host\n")
        assert _sh(cri, a, f"echo back > /dev/shm/{name}.2")[0] == 0
        assert (Path("/dev/shm") / f"{name}.2").read_text() == "back\n"
        assert not [p for p in _shm_mounts(berthd) if sid in p]   # nothing mounted for it
    finally:
        cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
        host.unlink()
        (Path("/dev/shm") / f"{name}.2").unlink(missing_ok=True)


def test_after_kill9_the_dead_pods_dev_shm_is_unmounted(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs uid 0")
    with own_cri() as (d, cri):
        live, (a,) = _pod(cri, pod_config(tmp_path, "live"), "c")
        dead, _ = _pod(cri, pod_config(tmp_path, "dead"))
        assert _sh(cri, a, "echo kept > /dev/shm/seg") == (0, "")
        pause = cri.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=dead, verbose=True))
        pid = json.loads(pause.info["info"])["pid"]
        cri.channel.close()
        d.kill9()
        os.kill(pid, signal.SIGKILL)   # the pod dies while berthd is away
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"{d.data_root}/containers/{dead}/shm" in _shm_mounts(d)
        d.start()
        wait_socket(d.exec_root / "cri.sock")
        cri = Cri(d.exec_root / "cri.sock")
        mounts = _shm_mounts(d)
        assert f"{d.data_root}/containers/{dead}/shm" not in mounts
        assert f"{d.data_root}/containers/{live}/shm" in mounts   # the live pod keeps its own
        b = cri.runtime.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=live, config=container_config("late", "busybox:latest", ["sleep", "1000"]))).container_id
        cri.runtime.StartContainer(pb.StartContainerRequest(container_id=b))
        assert _sh(cri, b, "cat /dev/shm/seg") == (0, "kept\n")
        for sid in (live, dead):
            cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
        assert not _shm_mounts(d)
        cri.channel.close()


def test_docker_rm_of_the_pause_unmounts_it(cri: Cri, berthd: Daemon, tmp_path: Path) -> None:
    sid, _ = _pod(cri, pod_config(tmp_path, "shm-rm"))
    assert f"{berthd.data_root}/containers/{sid}/shm" in _shm_mounts(berthd)
    p = subprocess.run([DOCKER, "rm", "-f", sid], env=berthd.env, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert not [m for m in _shm_mounts(berthd) if sid in m]
    cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))   # gone already: fine
