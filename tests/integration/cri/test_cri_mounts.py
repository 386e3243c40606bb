"""Mount propagation and devices over the CRI, seen from inside a running container: a
host-to-container (rslave) mount sees what the host mounts below its source after the start, a
private one does not; a bidirectional (rshared) mount of a privileged container puts what the
container mounts below it on the host; the kubelet's and containerd's refusals (bidirectional
unprivileged, a source not on a shared or slave mount); a device node made at another path and
its cgroup permissions (a write denied with "r"). Every mount the test makes is undone."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.integration.cri.conftest import Cri, container_config, pb, pod_config

pytestmark = pytest.mark.root
PROP = pb.MountPropagation


@pytest.fixture(scope="module")
def pod(cri: Cri, busybox: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    cfg = pod_config(tmp_path_factory.mktemp("mnt"), "mntpod")
    sid = cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
    yield sid, cfg
    cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))


def _tmpfs(path: Path, propagation: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(path)], check=True)
    subprocess.run(["mount", f"--make-{propagation}", str(path)], check=True)


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-R", "-l", str(path)], check=False, stderr=subprocess.DEVNULL)


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Path]:
    src = tmp_path / "shared"
    _tmpfs(src, "shared")
    yield src
    _umount(src)


@pytest.fixture
def private(tmp_path: Path) -> Iterator[Path]:
    src = tmp_path / "private"
    _tmpfs(src, "private")
    yield src
    _umount(src)


def _create(cri: Cri, pod: tuple[str, Any], name: str, mounts: list[Any] = [], devices: list[Any] = [],
            privileged: bool = False) -> str:
    sid, cfg = pod
    sc = pb.LinuxContainerSecurityContext(privileged=privileged)
    config = container_config(name, "busybox:latest", ["sleep", "1000"], mounts=mounts, devices=devices,
                              linux=pb.LinuxContainerConfig(security_context=sc))
    return cri.runtime.CreateContainer(pb.CreateContainerRequest(
        pod_sandbox_id=sid, sandbox_config=cfg, config=config)).container_id


def _run(cri: Cri, pod: tuple[str, Any], name: str, **kw: Any) -> str:
    cid = _create(cri, pod, name, **kw)
    cri.runtime.StartContainer(pb.StartContainerRequest(container_id=cid))
    return cid


def _sh(cri: Cri, cid: str, script: str) -> tuple[int, str]:
    r = cri.runtime.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["sh", "-c", script], timeout=20))
    return r.exit_code, (r.stdout + r.stderr).decode()


def _mounted(cri: Cri, cid: str) -> dict[str, str]:
    """The container's mount points and their optional fields (shared:N, master:N)."""
    code, out = _sh(cri, cid, "cat /proc/self/mountinfo")
    assert code == 0, out
    points = {}
    for line in out.splitlines():
        f = line.split()
        points[f[4]] = " ".join(f[6:f.index("-")])
    return points


def _mount(src: str, dst: str, prop: int) -> Any:
    return pb.Mount(host_path=src, container_path=dst, propagation=prop)


def test_host_to_container_and_private(cri: Cri, pod: tuple[str, Any], shared: Path) -> None:
    cid = _run(cri, pod, "h2c", mounts=[_mount(str(shared), "/h2c", PROP.PROPAGATION_HOST_TO_CONTAINER),
                                        _mount(str(shared), "/priv", PROP.PROPAGATION_PRIVATE)])
    before = _mounted(cri, cid)
    assert "master:" in before["/h2c"] and "shared:" not in before["/h2c"]
    assert before["/priv"] == ""
    _tmpfs(shared / "later", "private")   # mounted on the host after the start
    after = _mounted(cri, cid)
    assert "/h2c/later" in after
    assert "/priv/later" not in after


def test_bidirectional(cri: Cri, pod: tuple[str, Any], shared: Path) -> None:
    cid = _run(cri, pod, "bidi", privileged=True,
               mounts=[_mount(str(shared), "/bidi", PROP.PROPAGATION_BIDIRECTIONAL)])
    assert "shared:" in _mounted(cri, cid)["/bidi"]
    assert _sh(cri, cid, "mkdir /bidi/inner && mount -t tmpfs -o size=1m made-inside /bidi/inner && "
                         "echo hi > /bidi/inner/f")[0] == 0
    assert os.path.ismount(shared / "inner")
    assert (shared / "inner" / "f").read_text() == "hi\n"
    # the container's own mounts (its rootfs, /proc) did not reach the host
    with open("/proc/self/mountinfo") as f:
        assert not any(cid in line for line in f)


def test_refused(cri: Cri, pod: tuple[str, Any], shared: Path, private: Path) -> None:
    cases = [
        ("bidi-unpriv", [_mount(str(shared), "/b", PROP.PROPAGATION_BIDIRECTIONAL)], False,
         grpc.StatusCode.INVALID_ARGUMENT, "Bidirectional mount propagation is available only to privileged"),
        ("bidi-private", [_mount(str(private), "/b", PROP.PROPAGATION_BIDIRECTIONAL)], True,
         grpc.StatusCode.FAILED_PRECONDITION, f'is mounted on "{private}" but it is not a shared mount'),
        ("h2c-private", [_mount(str(private), "/b", PROP.PROPAGATION_HOST_TO_CONTAINER)], False,
         grpc.StatusCode.FAILED_PRECONDITION, f'is mounted on "{private}" but it is not a shared or slave mount'),
    ]
    for name, mounts, privileged, code, words in cases:
        with pytest.raises(grpc.RpcError) as e:
            _create(cri, pod, name, mounts=mounts, privileged=privileged)
        assert e.value.code() == code, name
        assert words in (e.value.details() or ""), (name, e.value.details())
    # private is fine anywhere
    cid = _run(cri, pod, "priv-ok", mounts=[_mount(str(private), "/p", PROP.PROPAGATION_PRIVATE)])
    assert _sh(cri, cid, "echo ok > /p/x && cat /p/x") == (0, "ok\n")


def test_devices(cri: Cri, pod: tuple[str, Any]) -> None:
    if not os.path.exists("/dev/loop-control"):
        pytest.skip("no /dev/loop-control on this host")
    cid = _run(cri, pod, "devs", devices=[
        pb.Device(host_path="/dev/null", container_path="/dev/mynull", permissions="rwm"),
        pb.Device(host_path="/dev/loop-control", container_path="/dev/myctl", permissions="r")])
    code, out = _sh(cri, cid, "ls -l /dev/mynull; ls -l /dev/myctl")
    assert code == 0, out
    null, ctl = out.splitlines()
    assert null.startswith("c") and "1,   3" in null
    assert ctl.startswith("c") and "10, 237" in ctl
    assert _sh(cri, cid, "echo hi > /dev/mynull && wc -c < /dev/mynull") == (0, "0\n")
    assert _sh(cri, cid, "exec 3< /dev/myctl && echo read-ok") == (0, "read-ok\n")   # "r": open to read
    code, out = _sh(cri, cid, ": > /dev/myctl")
    assert code != 0 and "Operation not permitted" in out                             # no "w"
    with pytest.raises(grpc.RpcError) as e:
        _create(cri, pod, "devs-bad", devices=[pb.Device(host_path="/dev/null", container_path="/dev/n",
                                                         permissions="rwx")])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
