"""CRI fixtures: a gRPC client (RuntimeService and ImageService stubs) on the session berthd's
CRI socket, and pod/container configs as a kubelet would send them."""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon import Daemon, suite_args

import grpc  # noqa: E402  (the cri extra, part of the test extra)
import cri_api.v1.api_pb2 as pb  # noqa: E402
import cri_api.v1.api_pb2_grpc as pbg  # noqa: E402


class Cri:
    def __init__(self, sock: Path):
        self.channel = grpc.insecure_channel(f"unix://{sock}")
        self.runtime = pbg.RuntimeServiceStub(self.channel)
        self.images = pbg.ImageServiceStub(self.channel)


def wait_socket(sock: Path, timeout: float = 30) -> None:
    """berthd opens the CRI socket once the Docker API answers (grpc imports in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(sock))
                return
            except OSError:  # not there yet, or a dead berthd's (kill -9 leaves the file)
                pass
        assert time.monotonic() < deadline, f"no CRI server on {sock}"
        time.sleep(0.05)


@pytest.fixture(scope="session")
def cri(berthd: Daemon, busybox: str) -> Iterator[Cri]:
    sock = berthd.exec_root / "cri.sock"
    wait_socket(sock)
    c = Cri(sock)
    yield c
    c.channel.close()


def pod_config(tmp_path: Path, name: str = "web", host_network: bool = False, **kw: Any) -> Any:
    ns = pb.NamespaceOption(network=pb.NamespaceMode.NODE if host_network else pb.NamespaceMode.POD,
                            pid=pb.NamespaceMode.CONTAINER, ipc=pb.NamespaceMode.POD)
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, namespace="default", uid=str(uuid.uuid4()), attempt=0),
        hostname=name, log_directory=str(tmp_path / "pods" / name),
        labels={"app": name}, annotations={"note": "from a test"},
        linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(namespace_options=ns)),
        **kw)


def container_config(name: str, image: str, command: list[str], **kw: Any) -> Any:
    return pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name, attempt=0), image=pb.ImageSpec(image=image),
                              command=command, log_path=f"{name}/0.log", labels={"c": name}, **kw)


@contextlib.contextmanager
def own_cri(*args: str, env: dict[str, str] | None = None, busybox: bool = True) -> Iterator[tuple[Daemon, Cri]]:
    """A berthd of the test's own (the suite's arguments and ``args``) and a client on its CRI
    socket; busybox imported unless told not to. Everything goes with the daemon."""
    d = Daemon(args=[*suite_args(), *args], env=env)
    d.start()
    try:
        if busybox:
            d.import_busybox("busybox:latest")
        sock = d.exec_root / "cri.sock"
        wait_socket(sock)
        c = Cri(sock)
        try:
            yield d, c
        finally:
            c.channel.close()
    finally:
        d.cleanup()


class StreamPod:
    """A pod with a web server on :8080 serving ``index.html`` and a shell echoing its stdin."""

    def __init__(self, sid: str, web: str, shell: str):
        self.sid, self.web, self.shell = sid, web, shell


@contextlib.contextmanager
def stream_pod(cri: Cri, image: str, log_dir: Path, name: str, page: str) -> Iterator[StreamPod]:
    rt = cri.runtime
    cfg = pod_config(log_dir, name)
    server = f"mkdir -p /www && echo {page} > /www/index.html && exec httpd -f -p 8080 -h /www"
    sid = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
    try:
        ids = []
        for cname, cmd, stdin in (("web", ["sh", "-c", server], False),
                                  ("shell", ["sh", "-c", 'while read l; do echo "seen $l"; done'], True)):
            ids.append(rt.CreateContainer(pb.CreateContainerRequest(
                pod_sandbox_id=sid, sandbox_config=cfg,
                config=container_config(cname, image, cmd, stdin=stdin))).container_id)
            rt.StartContainer(pb.StartContainerRequest(container_id=ids[-1]))
        yield StreamPod(sid, *ids)
    finally:
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
