"""CRI fixtures: a gRPC client (RuntimeService and ImageService stubs) on the session berthd's
CRI socket, and pod/container configs as a kubelet would send them."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon import Daemon

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
