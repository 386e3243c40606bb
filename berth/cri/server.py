"""berthd's CRI server: grpc.aio on berthd's own event loop, on a Unix socket.

berthd imports this module only when the CRI is on (``--cri``, the default) and grpcio is
installed, after the Docker API answers: its cold start does not pay for gRPC.

    server = await start(Path("/run/berth/cri.sock"), Engine(containers, images, distribution, execs, root, events))
    ...
    await server.stop(2)                   # the gRPC server, then the streaming server
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cri_api.v1 import api_pb2_grpc as pbg

from berth.cri import stream_channels, stream_portforward, stream_spdy
from berth.cri.containers import PodContainers
from berth.cri.events import ContainerEvents
from berth.cri.images import ImageStore
from berth.cri.sandboxes import Sandboxes
from berth.cri.service import ImageService, RuntimeService
from berth.cri.stats import Stats
from berth.cri.streaming import Streaming
from berth.engine.containers import Containers
from berth.engine.distribution import Distribution
from berth.engine.events import Events
from berth.engine.exec import Execs
from berth.engine.images import Images
from berth.engine.pod_networks import PodNetworks


@dataclass
class Engine:
    """What the CRI drives: the engine objects berthd's wire() made."""

    containers: Containers
    images: Images
    distribution: Distribution
    execs: Execs
    data_root: str
    events: Events
    cgroup_driver: str = "cgroupfs"
    stream_address: str = "127.0.0.1:0"  # the streaming server (host:port; port 0: any free one)
    pod_networks: PodNetworks | None = None  # CNI (pods get the built-in bridge when none is configured)
    stream_timeout: float = 30.0  # seconds for a streaming client to open its streams (the kubelet's)


class Server:
    """The gRPC server and its streaming server, stopped together."""

    def __init__(self, grpc_server: Any, streaming: Streaming):
        self.grpc = grpc_server
        self.streaming = streaming

    async def stop(self, grace: float) -> None:
        await self.grpc.stop(grace)
        await self.streaming.stop()


async def start(socket: Path, engine: Engine) -> Server:
    """Serve RuntimeService and ImageService on ``socket`` (mode 0660, replacing a stale one),
    and the streaming server on ``engine.stream_address``."""
    server = grpc.aio.server()
    sandboxes = Sandboxes(engine.containers, engine.images, engine.pod_networks)
    pods = PodContainers(engine.containers, sandboxes, engine.execs)
    streaming = Streaming({
        "exec": functools.partial(stream_channels.serve_exec, pods),
        "attach": functools.partial(stream_channels.serve_attach, pods),
        "portforward": functools.partial(stream_portforward.serve, sandboxes)}, {
        "exec": functools.partial(stream_spdy.serve_exec, pods, timeout=engine.stream_timeout),
        "attach": functools.partial(stream_spdy.serve_attach, pods, timeout=engine.stream_timeout),
        "portforward": functools.partial(stream_spdy.serve_portforward, sandboxes,
                                         timeout=engine.stream_timeout)})
    host, _, port = engine.stream_address.rpartition(":")
    await streaming.start(host.strip("[]"), int(port))
    events = ContainerEvents(engine.events, sandboxes, pods)
    pbg.add_RuntimeServiceServicer_to_server(
        RuntimeService(sandboxes, pods, engine.cgroup_driver, streaming, Stats(sandboxes, pods), events), server)
    pbg.add_ImageServiceServicer_to_server(
        ImageService(ImageStore(engine.images, engine.distribution, engine.data_root)), server)
    socket.parent.mkdir(parents=True, exist_ok=True)
    socket.unlink(missing_ok=True)
    if not server.add_insecure_port(f"unix://{socket}"):
        raise OSError(f"cannot listen on {socket}")
    await server.start()
    os.chmod(socket, 0o660)
    return Server(server, streaming)
