"""The two gRPC services, RuntimeService and ImageService: each RPC parses its request, calls
one method of ``sandboxes``, ``containers`` or ``images``, and builds its response. What is not
here yet answers UNIMPLEMENTED (the generated base classes); docs/kubernetes.md lists it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from cri_api.v1 import api_pb2 as pb
from cri_api.v1 import api_pb2_grpc as pbg

import berth
from berth.cri import verbose
from berth.cri.containers import PodContainers
from berth.cri.errors import rpc
from berth.cri.events import ContainerEvents
from berth.cri.images import ImageStore
from berth.cri.sandboxes import Sandboxes
from berth.cri.stats import Stats
from berth.cri.streaming import Streaming
from berth.errors import Conflict, InvalidArgument

RUNTIME_NAME = "berth"
API_VERSION = "v1"


class RuntimeService(pbg.RuntimeServiceServicer):  # type: ignore[misc]
    def __init__(self, sandboxes: Sandboxes, containers: PodContainers, cgroup_driver: str,
                 streaming: Streaming, stats: Stats, events: ContainerEvents):
        self.sandboxes = sandboxes
        self.containers = containers
        self.cgroup_driver = cgroup_driver
        self.streaming = streaming
        self.stats = stats
        self.events = events

    @rpc
    async def Version(self, request: Any, context: Any) -> Any:
        return pb.VersionResponse(version="0.1.0", runtime_name=RUNTIME_NAME,
                                  runtime_version=berth.__version__, runtime_api_version=API_VERSION)

    @rpc
    async def Status(self, request: Any, context: Any) -> Any:
        conditions = [pb.RuntimeCondition(type="RuntimeReady", status=True),
                      pb.RuntimeCondition(type="NetworkReady", status=True)]
        return pb.StatusResponse(status=pb.RuntimeStatus(conditions=conditions))

    @rpc
    async def RuntimeConfig(self, request: Any, context: Any) -> Any:
        driver = pb.CgroupDriver.SYSTEMD if self.cgroup_driver == "systemd" else pb.CgroupDriver.CGROUPFS
        return pb.RuntimeConfigResponse(linux=pb.LinuxRuntimeConfiguration(cgroup_driver=driver))

    @rpc
    async def UpdateRuntimeConfig(self, request: Any, context: Any) -> Any:
        return pb.UpdateRuntimeConfigResponse()  # the pod CIDR: berth's bridge has its own

    # -- sandboxes --------------------------------------------------------------------------

    @rpc
    async def RunPodSandbox(self, request: Any, context: Any) -> Any:
        return pb.RunPodSandboxResponse(pod_sandbox_id=await self.sandboxes.run(request.config))

    @rpc
    async def StopPodSandbox(self, request: Any, context: Any) -> Any:
        await self.sandboxes.stop(request.pod_sandbox_id)
        return pb.StopPodSandboxResponse()

    @rpc
    async def RemovePodSandbox(self, request: Any, context: Any) -> Any:
        await self.sandboxes.remove(request.pod_sandbox_id)
        return pb.RemovePodSandboxResponse()

    @rpc
    async def PodSandboxStatus(self, request: Any, context: Any) -> Any:
        status = self.sandboxes.status(request.pod_sandbox_id)
        info = verbose.sandbox_info(self.sandboxes.containers, self.sandboxes.get(status.id)) if request.verbose \
            else None
        return pb.PodSandboxStatusResponse(status=status, info=info)

    @rpc
    async def ListPodSandbox(self, request: Any, context: Any) -> Any:
        f = request.filter if request.HasField("filter") else None
        return pb.ListPodSandboxResponse(items=self.sandboxes.list(f))

    # -- containers -------------------------------------------------------------------------

    @rpc
    async def CreateContainer(self, request: Any, context: Any) -> Any:
        cid = await self.containers.create(request.pod_sandbox_id, request.config)
        return pb.CreateContainerResponse(container_id=cid)

    @rpc
    async def StartContainer(self, request: Any, context: Any) -> Any:
        await self.containers.start(request.container_id)
        return pb.StartContainerResponse()

    @rpc
    async def StopContainer(self, request: Any, context: Any) -> Any:
        await self.containers.stop(request.container_id, int(request.timeout))
        return pb.StopContainerResponse()

    @rpc
    async def RemoveContainer(self, request: Any, context: Any) -> Any:
        await self.containers.remove(request.container_id)
        return pb.RemoveContainerResponse()

    @rpc
    async def ListContainers(self, request: Any, context: Any) -> Any:
        f = request.filter if request.HasField("filter") else None
        return pb.ListContainersResponse(containers=self.containers.list(f))

    @rpc
    async def ContainerStatus(self, request: Any, context: Any) -> Any:
        status = self.containers.status(request.container_id)
        info = verbose.container_info(self.containers.containers, self.containers.get(status.id)) \
            if request.verbose else None
        return pb.ContainerStatusResponse(status=status, info=info)

    @rpc
    async def ExecSync(self, request: Any, context: Any) -> Any:
        out, err, code = await self.containers.exec_sync(request.container_id, list(request.cmd),
                                                         int(request.timeout))
        return pb.ExecSyncResponse(stdout=out, stderr=err, exit_code=code)

    @rpc
    async def UpdateContainerResources(self, request: Any, context: Any) -> Any:
        await self.containers.update_resources(request.container_id, request.linux)
        return pb.UpdateContainerResourcesResponse()

    @rpc
    async def ReopenContainerLog(self, request: Any, context: Any) -> Any:
        await self.containers.reopen_log(request.container_id)
        return pb.ReopenContainerLogResponse()

    # -- streaming: a URL on the streaming server -------------------------------------------

    @rpc
    async def Exec(self, request: Any, context: Any) -> Any:
        if not request.cmd:
            raise InvalidArgument("exec command must not be empty")
        _check_streams(request)
        self.containers.running(request.container_id)
        return pb.ExecResponse(url=self.streaming.url("exec", request))

    @rpc
    async def Attach(self, request: Any, context: Any) -> Any:
        _check_streams(request)
        self.containers.running(request.container_id)
        return pb.AttachResponse(url=self.streaming.url("attach", request))

    @rpc
    async def PortForward(self, request: Any, context: Any) -> Any:
        if not self.sandboxes.get(request.pod_sandbox_id).running:
            raise Conflict(f"pod sandbox {request.pod_sandbox_id} is not ready")
        if any(not 0 < p < 65536 for p in request.port):
            raise InvalidArgument(f"invalid port in {list(request.port)}")
        return pb.PortForwardResponse(url=self.streaming.url("portforward", request))


    # -- stats, events, metrics -------------------------------------------------------------

    @rpc
    async def ContainerStats(self, request: Any, context: Any) -> Any:
        return pb.ContainerStatsResponse(stats=await self.stats.one_container(request.container_id))

    @rpc
    async def ListContainerStats(self, request: Any, context: Any) -> Any:
        f = request.filter if request.HasField("filter") else None
        return pb.ListContainerStatsResponse(stats=await self.stats.list_containers(f))

    @rpc
    async def PodSandboxStats(self, request: Any, context: Any) -> Any:
        return pb.PodSandboxStatsResponse(stats=await self.stats.one_pod(request.pod_sandbox_id))

    @rpc
    async def ListPodSandboxStats(self, request: Any, context: Any) -> Any:
        f = request.filter if request.HasField("filter") else None
        return pb.ListPodSandboxStatsResponse(stats=await self.stats.list_pods(f))

    async def GetContainerEvents(self, request: Any, context: Any) -> AsyncIterator[Any]:
        async for ev in self.events.stream():
            yield ev

    @rpc
    async def ListMetricDescriptors(self, request: Any, context: Any) -> Any:
        return pb.ListMetricDescriptorsResponse()  # none, like containerd's default

    @rpc
    async def ListPodSandboxMetrics(self, request: Any, context: Any) -> Any:
        return pb.ListPodSandboxMetricsResponse()


def _check_streams(request: Any) -> None:
    """The kubelet's own checks of an Exec or Attach request."""
    if not (request.stdin or request.stdout or request.stderr):
        raise InvalidArgument("one of stdin, stdout, or stderr must be set")
    if request.tty and request.stderr:
        raise InvalidArgument("tty and stderr cannot both be true")


class ImageService(pbg.ImageServiceServicer):  # type: ignore[misc]
    def __init__(self, images: ImageStore):
        self.images = images

    @rpc
    async def ListImages(self, request: Any, context: Any) -> Any:
        f = request.filter if request.HasField("filter") else None
        return pb.ListImagesResponse(images=self.images.list(f))

    @rpc
    async def ImageStatus(self, request: Any, context: Any) -> Any:
        return pb.ImageStatusResponse(image=self.images.status(request.image.image))

    @rpc
    async def PullImage(self, request: Any, context: Any) -> Any:
        auth = request.auth if request.HasField("auth") else None
        return pb.PullImageResponse(image_ref=await self.images.pull(request.image.image, auth))

    @rpc
    async def RemoveImage(self, request: Any, context: Any) -> Any:
        self.images.remove(request.image.image)
        return pb.RemoveImageResponse()

    @rpc
    async def ImageFsInfo(self, request: Any, context: Any) -> Any:
        return self.images.fs_info()
