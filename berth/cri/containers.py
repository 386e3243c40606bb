"""Pod containers: Create, Start, Stop, Remove, List, ContainerStatus and ExecSync.

A pod container is an engine container that joins its sandbox's network, IPC and UTS
namespaces (``container:<sandbox>``; its PID namespace too when the pod shares one), labelled
``io.kubernetes.*`` like the sandbox, and logged in the CRI format at
``<sandbox log_directory>/<log_path>`` besides berth's own json-file log (so ``docker logs``
still reads it).

    cid = await pod.create(sandbox_id, config)   # the image must be there: the kubelet pulls
    await pod.start(cid)
    out, err, code = await pod.exec_sync(cid, ["cat", "/etc/hostname"], timeout=5)
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from cri_api.v1 import api_pb2 as pb

from berth.cri import meta
from berth.cri.errors import DeadlineExceeded
from berth.cri.sandboxes import NODE, POD, Sandboxes
from berth.engine.container_create import CreateRequest
from berth.engine.containers import Containers
from berth.engine.exec import ExecCreate, Execs
from berth.engine.model import Container, Status
from berth.errors import InvalidArgument, NotFound, NotModified
from berth.schema.containers import HostConfig


class PodContainers:
    def __init__(self, containers: Containers, sandboxes: Sandboxes, execs: Execs):
        self.containers = containers
        self.sandboxes = sandboxes
        self.execs = execs

    def get(self, ref: str) -> Container:
        if not ref:
            raise InvalidArgument("container ID must not be empty")
        try:
            c = self.containers.get(ref)
        except NotFound:
            c = None
        if c is None or (c.config.Labels or {}).get(meta.TYPE) != meta.CONTAINER:
            raise NotFound(f"container {ref} not found")
        return c

    async def create(self, sandbox_id: str, config: Any) -> str:
        sb = self.sandboxes.get(sandbox_id)
        if not config.metadata.name:
            raise InvalidArgument("container metadata needs a name")
        if not config.image.image:
            raise InvalidArgument("container config needs an image")
        labels = sb.config.Labels or {}
        pod, ns, uid = labels.get(meta.POD_NAME, ""), labels.get(meta.POD_NAMESPACE, ""), labels.get(meta.POD_UID, "")
        name = meta.container_name(config.metadata.name, pod, ns, uid, config.metadata.attempt)
        extra = {meta.POD_NAME: pod, meta.POD_NAMESPACE: ns, meta.POD_UID: uid,
                 meta.CONTAINER_NAME: config.metadata.name, meta.SANDBOX_ID: sb.id,
                 meta.ATTEMPT: str(config.metadata.attempt)}
        req = CreateRequest(
            Image=config.image.image, Entrypoint=list(config.command) or None, Cmd=list(config.args) or None,
            Env=[f"{kv.key}={kv.value}" for kv in config.envs] or None, WorkingDir=config.working_dir,
            Tty=config.tty, OpenStdin=config.stdin, StdinOnce=config.stdin_once,
            User=_user(config.linux.security_context),
            Labels=meta.encode(meta.CONTAINER, config.labels, config.annotations, extra),
            HostConfig=_host_config(sb.id, config))
        c, _ = self.containers.create(req, name)
        log_dir = labels.get(meta.LOG_DIRECTORY, "")
        if config.log_path and log_dir:
            c.cri_log = os.path.join(log_dir, config.log_path)
            os.makedirs(os.path.dirname(c.cri_log), exist_ok=True)
            self.containers.save(c)
        return c.id

    async def start(self, cid: str) -> None:
        await self.containers.start(self.get(cid).id)

    async def stop(self, cid: str, timeout: int) -> None:
        c = self.get(cid)
        try:
            await self.containers.stop(c.id, timeout)
        except NotModified:
            pass

    async def remove(self, cid: str) -> None:
        try:
            c = self.get(cid)
        except NotFound:
            return  # the CRI's remove is idempotent
        await self.containers.remove(c.id, force=True)

    async def exec_sync(self, cid: str, cmd: list[str], timeout: int) -> tuple[bytes, bytes, int]:
        """Run ``cmd`` in the container; its stdout, stderr and exit code."""
        c = self.get(cid)
        if not cmd:
            raise InvalidArgument("exec command must not be empty")
        ex = self.execs.create(c.id, ExecCreate(Cmd=cmd, AttachStdout=True, AttachStderr=True))
        session = await self.execs.start(ex.id, detach=False)
        out: dict[int, list[bytes]] = {1: [], 2: []}

        async def collect() -> None:
            async for chunk in session.output():  # stdcopy frames: [stream, 0, 0, 0, size], payload
                out.setdefault(chunk[0], []).append(chunk[8:])
        try:
            await asyncio.wait_for(collect(), timeout or None)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(f"command {cmd!r} timed out after {timeout}s") from None
        code = self.execs.get(ex.id).exit_code
        return b"".join(out[1]), b"".join(out[2]), 0 if code is None else code

    # -- views ------------------------------------------------------------------------------

    def all(self) -> list[Container]:
        return [c for c in self.containers.list() if (c.config.Labels or {}).get(meta.TYPE) == meta.CONTAINER]

    def list(self, f: Any) -> list[Any]:
        out = []
        for c in self.all():
            labels = c.config.Labels or {}
            if f is not None:
                if f.id and not c.id.startswith(f.id):
                    continue
                if f.pod_sandbox_id and not labels.get(meta.SANDBOX_ID, "").startswith(f.pod_sandbox_id):
                    continue
                if f.HasField("state") and f.state.state != _state(c):
                    continue
                if not meta.selected(labels, f.label_selector):
                    continue
            out.append(pb.Container(
                id=c.id, pod_sandbox_id=labels.get(meta.SANDBOX_ID, ""), metadata=_metadata(labels),
                image=pb.ImageSpec(image=c.config.Image), image_ref=c.image_id, image_id=c.image_id,
                state=_state(c), created_at=meta.nanos(c.created), labels=meta.user_labels(labels),
                annotations=meta.annotations_of(labels)))
        return out

    def status(self, cid: str) -> Any:
        c = self.get(cid)
        labels = c.config.Labels or {}
        state = _state(c)
        reason = ""
        if state == pb.ContainerState.CONTAINER_EXITED:
            reason = "OOMKilled" if c.state.oom_killed else "Completed" if c.state.exit_code == 0 else "Error"
        return pb.ContainerStatus(
            id=c.id, metadata=_metadata(labels), state=state, created_at=meta.nanos(c.created),
            started_at=meta.nanos(c.state.started_at), finished_at=meta.nanos(c.state.finished_at),
            exit_code=c.state.exit_code, image=pb.ImageSpec(image=c.config.Image), image_ref=c.image_id,
            image_id=c.image_id, reason=reason, message=c.state.error, labels=meta.user_labels(labels),
            annotations=meta.annotations_of(labels), log_path=c.cri_log)


def _host_config(sid: str, config: Any) -> HostConfig:
    sc = config.linux.security_context
    pid = sc.namespace_options.pid
    caps = sc.capabilities
    return HostConfig(
        NetworkMode=f"container:{sid}", IpcMode=f"container:{sid}",
        PidMode=f"container:{sid}" if pid == POD else "host" if pid == NODE else "",
        Privileged=sc.privileged, ReadonlyRootfs=sc.readonly_rootfs,
        CapAdd=list(caps.add_capabilities) or None, CapDrop=list(caps.drop_capabilities) or None,
        GroupAdd=[str(g) for g in sc.supplemental_groups] or None,
        SecurityOpt=["no-new-privileges"] if sc.no_new_privs else None,
        Binds=[_bind(m) for m in config.mounts] or None)


def _bind(m: Any) -> str:
    if not (m.host_path and m.container_path):
        raise InvalidArgument("a mount needs a host_path and a container_path")
    return f"{m.host_path}:{m.container_path}:{'ro' if m.readonly else 'rw'}"


def _user(sc: Any) -> str:
    if sc.HasField("run_as_user"):
        user = str(sc.run_as_user.value)
    else:
        user = sc.run_as_username
    if user and sc.HasField("run_as_group"):
        user += f":{sc.run_as_group.value}"
    return user


def _metadata(labels: dict[str, str]) -> Any:
    return pb.ContainerMetadata(name=labels.get(meta.CONTAINER_NAME, ""), attempt=int(labels.get(meta.ATTEMPT, "0")))


def _state(c: Container) -> Any:
    if c.state.status == Status.CREATED:
        return pb.ContainerState.CONTAINER_CREATED
    if c.running:
        return pb.ContainerState.CONTAINER_RUNNING
    return pb.ContainerState.CONTAINER_EXITED
