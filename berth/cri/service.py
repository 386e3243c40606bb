"""The two gRPC services, RuntimeService and ImageService: each RPC parses its request, calls
one method of ``sandboxes``, ``containers`` or ``images``, and builds its response. What is not
here yet answers UNIMPLEMENTED (the generated base classes); docs/kubernetes.md lists it."""

from __future__ import annotations

from typing import Any

from cri_api.v1 import api_pb2 as pb
from cri_api.v1 import api_pb2_grpc as pbg

import berth
from berth.cri.containers import PodContainers
from berth.cri.errors import rpc
from berth.cri.images import ImageStore
from berth.cri.sandboxes import Sandboxes

RUNTIME_NAME = "berth"
API_VERSION = "v1"


class RuntimeService(pbg.RuntimeServiceServicer):  # type: ignore[misc]
    def __init__(self, sandboxes: Sandboxes, containers: PodContainers, cgroup_driver: str):
        self.sandboxes = sandboxes
        self.containers = containers
        self.cgroup_driver = cgroup_driver

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
        return pb.PodSandboxStatusResponse(status=self.sandboxes.status(request.pod_sandbox_id))

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
        return pb.ContainerStatusResponse(status=self.containers.status(request.container_id))

    @rpc
    async def ExecSync(self, request: Any, context: Any) -> Any:
        out, err, code = await self.containers.exec_sync(request.container_id, list(request.cmd),
                                                         int(request.timeout))
        return pb.ExecSyncResponse(stdout=out, stderr=err, exit_code=code)


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
