"""berthd's CRI server: grpc.aio on berthd's own event loop, on a Unix socket.

berthd imports this module only when the CRI is on (``--cri``, the default) and grpcio is
installed, after the Docker API answers: its cold start does not pay for gRPC.

    server = await start(Path("/run/berth/cri.sock"), Engine(containers, images, distribution, execs, root))
    ...
    await server.stop(2)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cri_api.v1 import api_pb2_grpc as pbg

from berth.cri.containers import PodContainers
from berth.cri.images import ImageStore
from berth.cri.sandboxes import Sandboxes
from berth.cri.service import ImageService, RuntimeService
from berth.engine.containers import Containers
from berth.engine.distribution import Distribution
from berth.engine.exec import Execs
from berth.engine.images import Images


@dataclass
class Engine:
    """What the CRI drives: the engine objects berthd's wire() made."""

    containers: Containers
    images: Images
    distribution: Distribution
    execs: Execs
    data_root: str
    cgroup_driver: str = "cgroupfs"


async def start(socket: Path, engine: Engine) -> Any:
    """Serve RuntimeService and ImageService on ``socket`` (mode 0660, replacing a stale one)."""
    server = grpc.aio.server()
    sandboxes = Sandboxes(engine.containers, engine.images)
    pods = PodContainers(engine.containers, sandboxes, engine.execs)
    pbg.add_RuntimeServiceServicer_to_server(RuntimeService(sandboxes, pods, engine.cgroup_driver), server)
    pbg.add_ImageServiceServicer_to_server(
        ImageService(ImageStore(engine.images, engine.distribution, engine.data_root)), server)
    socket.parent.mkdir(parents=True, exist_ok=True)
    socket.unlink(missing_ok=True)
    if not server.add_insecure_port(f"unix://{socket}"):
        raise OSError(f"cannot listen on {socket}")
    await server.start()
    os.chmod(socket, 0o660)
    return server
