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

from berth.cri import meta, mounts, records
from berth.cri.seccomp import profile as seccomp_profile
from berth.cri.errors import DeadlineExceeded
from berth.cri.sandboxes import NODE, POD, Sandboxes
from berth.engine import hugepages, pod_shm
from berth.engine.container_create import CreateRequest
from berth.engine.containers import Containers
from berth.engine.exec import ExecCreate, Execs, ExecSession
from berth.engine.model import Container, Status
from berth.errors import Conflict, InvalidArgument, NotFound, NotModified
from berth.schema.containers import HostConfig

DEV_SHM = "/dev/shm"


class PodContainers:
    def __init__(self, containers: Containers, sandboxes: Sandboxes, execs: Execs):
        self.containers = containers
        self.sandboxes = sandboxes
        self.execs = execs

    def get(self, ref: str) -> Container:
        return records.get(self.containers, ref, meta.CONTAINER, "container")

    def running(self, ref: str) -> Container:
        """The container, which must be running (FAILED_PRECONDITION otherwise)."""
        c = self.get(ref)
        if not c.running:
            raise Conflict(f"container {c.id} is not running")
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
        extra = {**meta.pod_labels(pod, ns, uid, config.metadata.attempt),
                 meta.CONTAINER_NAME: config.metadata.name, meta.SANDBOX_ID: sb.id}
        req = CreateRequest(
            Image=config.image.image, Entrypoint=list(config.command) or None, Cmd=list(config.args) or None,
            Env=[f"{kv.key}={kv.value}" for kv in config.envs] or None, WorkingDir=config.working_dir,
            Tty=config.tty, OpenStdin=config.stdin, StdinOnce=config.stdin_once,
            User=_user(config.linux.security_context),
            Labels=meta.encode(meta.CONTAINER, config.labels, config.annotations, extra),
            HostConfig=_host_config(sb, config, pod_shm.source(self.containers.data, sb)))
        pages = _hugepages(config.linux.resources.hugepage_limits)
        c, _ = self.containers.create(req, name)
        log_dir = labels.get(meta.LOG_DIRECTORY, "")
        if config.log_path and log_dir:
            c.cri_log = os.path.join(log_dir, config.log_path)
            os.makedirs(os.path.dirname(c.cri_log), exist_ok=True)
        c.hugepages = pages
        if c.cri_log or pages:
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

    async def open_exec(self, cid: str, cmd: list[str], tty: bool = False, stdin: bool = False,
                        stdout: bool = True, stderr: bool = True) -> ExecSession:
        """Start ``cmd`` in the container; its stream (raw with a tty, else stdcopy frames)."""
        c = self.get(cid)
        if not cmd:
            raise InvalidArgument("exec command must not be empty")
        ex = self.execs.create(c.id, ExecCreate(Cmd=cmd, Tty=tty, AttachStdin=stdin, AttachStdout=stdout,
                                                AttachStderr=stderr))
        return await self.execs.start(ex.id, detach=False, tty=tty)

    async def exec_sync(self, cid: str, cmd: list[str], timeout: int) -> tuple[bytes, bytes, int]:
        """Run ``cmd`` in the container; its stdout, stderr and exit code."""
        session = await self.open_exec(cid, cmd)
        out: dict[int, list[bytes]] = {1: [], 2: []}

        async def collect() -> None:
            async for chunk in session.output():  # stdcopy frames: [stream, 0, 0, 0, size], payload
                out.setdefault(chunk[0], []).append(chunk[8:])
        try:
            await asyncio.wait_for(collect(), timeout or None)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(f"command {cmd!r} timed out after {timeout}s") from None
        code = session.ex.exit_code
        return b"".join(out[1]), b"".join(out[2]), 0 if code is None else code

    async def update_resources(self, cid: str, r: Any) -> None:
        """CPU shares, quota and period, cpusets, memory and hugepage limits, applied to the
        running cgroup."""
        c = self.get(cid)
        pages = _hugepages(r.hugepage_limits)
        await self.containers.update(c.id, resource_changes(r), pages or None)

    async def reopen_log(self, cid: str) -> None:
        await self.containers.reopen_cri_log(self.get(cid).id)

    # -- views ------------------------------------------------------------------------------

    def all(self) -> list[Container]:
        return records.of_kind(self.containers, meta.CONTAINER)

    def list(self, f: Any) -> list[Any]:
        out = []
        for c in self.all():
            labels = c.config.Labels or {}
            if not records.selected(c, f, _state(c)):
                continue
            out.append(pb.Container(
                id=c.id, pod_sandbox_id=labels.get(meta.SANDBOX_ID, ""), metadata=container_metadata(labels),
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
            id=c.id, metadata=container_metadata(labels), state=state, created_at=meta.nanos(c.created),
            started_at=meta.nanos(c.state.started_at), finished_at=0 if c.running else meta.nanos(c.state.finished_at),
            exit_code=c.state.exit_code, image=pb.ImageSpec(image=c.config.Image), image_ref=c.image_id,
            image_id=c.image_id, reason=reason, message=c.state.error, labels=meta.user_labels(labels),
            annotations=meta.annotations_of(labels), log_path=c.cri_log, resources=_resources(c))


def _host_config(sb: Container, config: Any, shm: str | None) -> HostConfig:
    """The container's HostConfig: the sandbox's namespaces and cgroup parent, its security
    context, mounts (the pod's /dev/shm, ``shm``, unless a mount of its own is there) and
    resources."""
    sid, sc = sb.id, config.linux.security_context
    binds = mounts.binds(config.mounts, sc.privileged)
    if shm and not any(m.container_path.rstrip("/") == DEV_SHM for m in config.mounts):
        binds.append(f"{shm}:{DEV_SHM}:rw")  # in the data root: rslave, by dockerd's rule
    pid = sc.namespace_options.pid
    caps = sc.capabilities
    return HostConfig(
        NetworkMode=f"container:{sid}", IpcMode=f"container:{sid}",
        PidMode=f"container:{sid}" if pid == POD else "host" if pid == NODE else "",
        Privileged=sc.privileged, ReadonlyRootfs=sc.readonly_rootfs,
        CapAdd=list(caps.add_capabilities) or None, CapDrop=list(caps.drop_capabilities) or None,
        GroupAdd=[str(g) for g in sc.supplemental_groups] or None,
        SecurityOpt=_security_opts(sc) or None,
        MaskedPaths=list(sc.masked_paths) or None, ReadonlyPaths=list(sc.readonly_paths) or None,
        Binds=binds or None,
        Devices=mounts.devices(config.devices) or None,
        CgroupParent=sb.host_config.CgroupParent,
        OomScoreAdj=config.linux.resources.oom_score_adj, **resource_changes(config.linux.resources))


def _security_opts(sc: Any) -> list[str]:
    """no_new_privs and the seccomp profile as Docker's --security-opt values."""
    out = ["no-new-privileges"] if sc.no_new_privs else []
    seccomp = seccomp_profile(sc)
    if seccomp:
        out.append(f"seccomp={seccomp}")
    return out


def resource_changes(r: Any) -> dict[str, Any]:
    """A LinuxContainerResources as the engine's HostConfig fields (the ones it sets)."""
    out: dict[str, Any] = {"CpuShares": r.cpu_shares, "CpuQuota": r.cpu_quota, "CpuPeriod": r.cpu_period,
                           "Memory": r.memory_limit_in_bytes, "CpusetCpus": r.cpuset_cpus,
                           "CpusetMems": r.cpuset_mems}
    if r.memory_swap_limit_in_bytes:
        out["MemorySwap"] = r.memory_swap_limit_in_bytes
    return {k: v for k, v in out.items() if v}


def _hugepages(limits: Any) -> dict[str, int]:
    """The kubelet's hugepage limits (page size -> bytes); a size this host lacks is refused."""
    have = hugepages.sizes()
    out = {}
    for h in limits:
        if h.page_size not in have:
            raise InvalidArgument(f"hugepage limit: page size {h.page_size!r} is not supported by this host "
                                  f"(it has {', '.join(sorted(have)) or 'none'})")
        out[h.page_size] = h.limit
    return out


def _resources(c: Container) -> Any:
    hc = c.host_config
    return pb.ContainerResources(linux=pb.LinuxContainerResources(
        cpu_shares=hc.CpuShares or 0, cpu_quota=hc.CpuQuota or 0, cpu_period=hc.CpuPeriod or 0,
        memory_limit_in_bytes=hc.Memory or 0, memory_swap_limit_in_bytes=max(hc.MemorySwap or 0, 0),
        cpuset_cpus=hc.CpusetCpus or "", cpuset_mems=hc.CpusetMems or "", oom_score_adj=hc.OomScoreAdj or 0,
        hugepage_limits=[pb.HugepageLimit(page_size=k, limit=v) for k, v in sorted(c.hugepages.items())]))


def _user(sc: Any) -> str:
    if sc.HasField("run_as_user"):
        user = str(sc.run_as_user.value)
    else:
        user = sc.run_as_username
    if user and sc.HasField("run_as_group"):
        user += f":{sc.run_as_group.value}"
    return user


def container_metadata(labels: dict[str, str]) -> Any:
    return pb.ContainerMetadata(name=labels.get(meta.CONTAINER_NAME, ""), attempt=int(labels.get(meta.ATTEMPT, "0")))


def _state(c: Container) -> Any:
    if c.state.status == Status.CREATED:
        return pb.ContainerState.CONTAINER_CREATED
    if c.running:
        return pb.ContainerState.CONTAINER_RUNNING
    return pb.ContainerState.CONTAINER_EXITED
