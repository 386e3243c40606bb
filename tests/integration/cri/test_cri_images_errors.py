"""The CRI's ImageService shares the Docker API's store (pull with auth from a real registry,
remove), and bad requests get gRPC codes and leave nothing behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.cri.conftest import Cri, container_config, grpc, pb, pod_config
from tests.integration.daemon import Daemon
from tests.integration.images.registry_proc import BINARY, RegistryProc

pytestmark = pytest.mark.root

DOCKER = "/usr/local/bin/docker"


def _code(call) -> object:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code()


def test_images_are_the_docker_store(cri: Cri, busybox: str, berthd: Daemon, tmp_path: Path) -> None:
    if not os.path.exists(BINARY) or not os.path.exists("/usr/bin/htpasswd"):
        pytest.fail("needs docker-registry and htpasswd (.ci/run installs them)")
    env = dict(berthd.env, DOCKER_CONFIG=str(tmp_path / "cfg"))

    def docker(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True, timeout=60)

    listed = cri.images.ListImages(pb.ListImagesRequest()).images
    bb = cri.images.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=busybox))).image
    assert bb.id in {i.id for i in listed} and "busybox:latest" in bb.repo_tags
    assert not cri.images.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image="nosuch:1"))).HasField("image")

    reg = RegistryProc(htpasswd=("tester", "s3cret")).start()
    try:
        ref = f"{reg.host}/cri/busybox:1"
        assert docker("login", "-u", "tester", "-p", "s3cret", reg.host).returncode == 0
        assert docker("tag", busybox, ref).returncode == 0
        assert docker("push", ref).returncode == 0
        assert docker("rmi", ref).returncode == 0
        assert _code(lambda: cri.images.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)))) \
            != grpc.StatusCode.OK  # no credentials: the registry says no
        auth = pb.AuthConfig(username="tester", password="s3cret", server_address=reg.host)
        got = cri.images.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref), auth=auth)).image_ref
        assert got == bb.id
        assert ref in docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
        cri.images.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=ref)))
    finally:
        reg.stop()
    assert docker("image", "inspect", busybox).returncode == 0  # the other tag's image stays
    fs = cri.images.ImageFsInfo(pb.ImageFsInfoRequest()).image_filesystems[0]
    assert fs.used_bytes.value > 0 and fs.fs_id.mountpoint.startswith(str(berthd.data_root))


def test_bad_requests(cri: Cri, berthd: Daemon, busybox: str, tmp_path: Path) -> None:
    rt = cri.runtime
    before = set(subprocess.run([DOCKER, "ps", "-aq", "--no-trunc"], env=berthd.env, capture_output=True,
                                text=True).stdout.split())
    assert _code(lambda: rt.RunPodSandbox(pb.RunPodSandboxRequest(config=pb.PodSandboxConfig()))) == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert _code(lambda: rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id="0" * 64))) == \
        grpc.StatusCode.NOT_FOUND
    assert _code(lambda: rt.ContainerStatus(pb.ContainerStatusRequest(container_id="nosuch"))) == \
        grpc.StatusCode.NOT_FOUND
    assert _code(lambda: rt.ExecSync(pb.ExecSyncRequest(container_id="nosuch", cmd=["true"]))) == \
        grpc.StatusCode.NOT_FOUND
    cfg = pod_config(tmp_path, "dup")
    sid = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
    try:
        assert _code(lambda: rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg))) == \
            grpc.StatusCode.ALREADY_EXISTS
        missing = container_config("c", "nosuch/image:1", ["true"])
        assert _code(lambda: rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sid, config=missing))) == \
            grpc.StatusCode.NOT_FOUND
        assert _code(lambda: rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id="0" * 64, config=container_config("c", busybox, ["true"])))) == grpc.StatusCode.NOT_FOUND
        cid = rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sid, config=container_config("slow", busybox, ["sleep", "1000"]))).container_id
        rt.StartContainer(pb.StartContainerRequest(container_id=cid))
        assert _code(lambda: rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["sleep", "5"], timeout=1))) == \
            grpc.StatusCode.DEADLINE_EXCEEDED
        assert _code(lambda: rt.CheckpointContainer(pb.CheckpointContainerRequest(container_id=cid))) == \
            grpc.StatusCode.UNIMPLEMENTED
    finally:
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    after = set(subprocess.run([DOCKER, "ps", "-aq", "--no-trunc"], env=berthd.env, capture_output=True,
                               text=True).stdout.split())
    assert after == before  # nothing left behind
    assert berthd.request("GET", "/_ping")[0] == 200
