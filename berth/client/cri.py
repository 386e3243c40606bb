"""A CRI v1 client (gRPC over a Unix socket) for ``berth cri``: the RuntimeService and
ImageService stubs on berthd's CRI socket, like crictl's connection. grpc is imported only
when a ``berth cri`` command runs (the cri extra).

    with CriClient("/run/berth/cri.sock") as c:
        pods = c.runtime.ListPodSandbox(c.pb.ListPodSandboxRequest()).items
"""

from __future__ import annotations

import importlib
from types import TracebackType
from typing import Any

DEFAULT_SOCKET = "/run/berth/cri.sock"
TIMEOUT = 30.0


class CriClient:
    def __init__(self, socket: str = DEFAULT_SOCKET):
        grpc = importlib.import_module("grpc")
        self.pb: Any = importlib.import_module("cri_api.v1.api_pb2")
        stubs = importlib.import_module("cri_api.v1.api_pb2_grpc")
        self.error: type[Exception] = grpc.RpcError
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.runtime: Any = stubs.RuntimeServiceStub(self.channel)
        self.images: Any = stubs.ImageServiceStub(self.channel)

    def __enter__(self) -> CriClient:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.channel.close()
