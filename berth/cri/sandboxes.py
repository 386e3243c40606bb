"""Pod sandboxes: RunPodSandbox and its Stop, Remove, Status and List.

A sandbox is an engine container running berth's pause (``pause.py``) whose namespaces the
pod's containers join: its network namespace (from the CNI plugins when a CNI network is
configured, else a berth bridge address; the host's for a ``hostNetwork`` pod), its IPC namespace (``IpcMode: shareable``), its UTS namespace (the pod's
hostname) and, when the pod asks for it, its PID namespace. With the pod's IPC namespace
(not hostIPC) it also has the pod's /dev/shm, a tmpfs mounted at its directory that each
container of the pod binds (``berth/engine/pod_shm.py``), unmounted when it stops or goes.

    sid = await sandboxes.run(config)          # pause running, its address assigned
    await sandboxes.stop(sid)                  # the pod's containers, then the pause
    await sandboxes.remove(sid)                # everything of the pod gone
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from cri_api.v1 import api_pb2 as pb

from berth.cri import cgroups, meta, pause, records
from berth.cri.seccomp import profile as seccomp_profile
from berth.engine import pod_shm
from berth.engine.container_create import CreateRequest
from berth.engine.containers import Containers
from berth.engine.images import Images
from berth.engine.model import Container
from berth.engine.pod_networks import Pod, PodNetworks
from berth.errors import AlreadyExists, InvalidArgument, NotFound, NotModified
from berth.schema.containers import HostConfig, LogConfig

log = logging.getLogger("berth.cri")

NODE, POD = pb.NamespaceMode.NODE, pb.NamespaceMode.POD


class Sandboxes:
    def __init__(self, containers: Containers, images: Images, networks: PodNetworks | None = None):
        self.containers = containers
        self.images = images
        self.networks = networks

    # -- lookups ----------------------------------------------------------------------------

    def get(self, ref: str) -> Container:
        """A sandbox by ID or unique ID prefix (NOT_FOUND otherwise)."""
        return records.get(self.containers, ref, meta.SANDBOX, "pod sandbox")

    def all(self) -> list[Container]:
        return records.of_kind(self.containers, meta.SANDBOX)

    def members(self, sid: str) -> list[Container]:
        """The pod's containers."""
        return [c for c in records.of_kind(self.containers, meta.CONTAINER)
                if (c.config.Labels or {}).get(meta.SANDBOX_ID) == sid]

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self, config: Any) -> str:
        m = config.metadata
        if not (m.name and m.namespace and m.uid):
            raise InvalidArgument("pod sandbox metadata needs a name, a namespace and a uid")
        name = meta.sandbox_name(m.name, m.namespace, m.uid, m.attempt)
        for c in self.all():
            if c.name == name:
                raise AlreadyExists(f"pod sandbox {m.name} in namespace {m.namespace} (attempt {m.attempt}) "
                                    f"already exists: {c.id}")
        host_net = config.linux.security_context.namespace_options.network == NODE
        cni = self.networks if not host_net and self.networks is not None and self.networks.configured() else None
        t0 = time.perf_counter()
        req = self._request(config, await pause.image(self.images), cni is not None)
        c, _ = self.containers.create(req, name)
        c.bare = True   # the pause holds namespaces: its rootfs and no other mount
        self.containers.save(c)
        t1 = time.perf_counter()
        try:
            if c.host_config.IpcMode != "host":   # the pod's /dev/shm, bound into its containers
                pod_shm.mount(self.containers.data, c.id)
            # CNI ADD runs in a namespace berthd made while the pause's shim is spawned
            plug = cni.plug(c.id, Pod(m.name, m.namespace, m.uid), _cni_ports(config.port_mappings)) \
                if cni is not None else None
            await self.containers.start(c.id, plug=plug)
            if cni is not None:
                cni.commit(self.containers.get(c.id))
        except BaseException:
            if cni is not None:
                await cni.abort(c.id)
            await self.containers.remove(c.id, force=True)   # the namespace goes with the pause
            raise
        log.debug("sandbox %s: create %.1f ms, start with CNI ADD %.1f ms", c.id[:12], (t1 - t0) * 1000,
                  (time.perf_counter() - t1) * 1000)
        if config.log_directory:
            os.makedirs(config.log_directory, exist_ok=True)
        return c.id

    def _request(self, config: Any, image_id: str, cni: bool) -> CreateRequest:
        m, ns = config.metadata, config.linux.security_context.namespace_options
        host_net = ns.network == NODE
        extra = {**meta.pod_labels(m.name, m.namespace, m.uid, m.attempt), meta.LOG_DIRECTORY: config.log_directory}
        if cni:
            extra[meta.NETWORK] = "cni"
        hc = HostConfig(NetworkMode="host" if host_net else "none" if cni else "bridge",
                        IpcMode="host" if ns.ipc == NODE else "shareable",
                        PidMode="host" if ns.pid == NODE else "",
                        Sysctls=dict(config.linux.sysctls) or None,
                        CgroupParent=cgroups.parent(config.linux.cgroup_parent),
                        PortBindings=_ports(config.port_mappings) if not (host_net or cni) else None,
                        LogConfig=LogConfig(Type="none"))   # the pause says nothing (containerd: /dev/null)
        seccomp = seccomp_profile(config.linux.security_context, unset="unconfined")
        hc.SecurityOpt = [f"seccomp={seccomp}"] if seccomp else None
        dns = config.dns_config
        hc.Dns, hc.DnsSearch, hc.DnsOptions = list(dns.servers) or None, list(dns.searches) or None, \
            list(dns.options) or None
        return CreateRequest(Image=image_id, Hostname="" if host_net else config.hostname,
                             Labels=meta.encode(meta.SANDBOX, config.labels, config.annotations, extra),
                             HostConfig=hc)

    async def stop(self, sid: str) -> None:
        """Stop the pod's containers, then its pause (idempotent, as the CRI asks)."""
        try:
            c = self.get(sid)
        except NotFound:
            return
        for member in self.members(c.id):
            await _stop(self.containers, member.id, 10)
        await self._teardown(c)
        await _stop(self.containers, c.id, 0)
        pod_shm.unmount(self.containers.data, c.id)

    async def _teardown(self, c: Container) -> None:
        """CNI DEL, when the pod was added (once: the cached result goes with it)."""
        if self.networks is not None and self.networks.attached(c):
            await self.networks.teardown(self.containers.get(c.id))

    async def remove(self, sid: str) -> None:
        """Remove the pod's containers and its pause (idempotent)."""
        try:
            c = self.get(sid)
        except NotFound:
            return
        for member in self.members(c.id):
            await _remove(self.containers, member.id)
        await self._teardown(c)
        await _remove(self.containers, c.id)

    # -- views ------------------------------------------------------------------------------

    def status(self, sid: str) -> Any:
        c = self.get(sid)
        labels = c.config.Labels or {}
        ns = pb.NamespaceOption(network=NODE if c.host_config.NetworkMode == "host" else POD,
                                ipc=NODE if c.host_config.IpcMode == "host" else POD,
                                pid=NODE if c.host_config.PidMode == "host" else pb.NamespaceMode.CONTAINER)
        return pb.PodSandboxStatus(
            id=c.id, metadata=pod_metadata(labels), state=_state(c), created_at=meta.nanos(c.created),
            network=pb.PodSandboxNetworkStatus(ip=self._ip(c)),
            linux=pb.LinuxPodSandboxStatus(namespaces=pb.Namespace(options=ns)),
            labels=meta.user_labels(labels), annotations=meta.annotations_of(labels))

    def _ip(self, c: Container) -> str:
        if not c.running or c.host_config.NetworkMode == "host":
            return ""
        if (c.config.Labels or {}).get(meta.NETWORK) == "cni":
            return self.networks.ip(c) if self.networks is not None else ""
        if self.containers.attachments is None:
            return ""
        return self.containers.attachments.bridge_ip(c)

    def list(self, f: Any) -> list[Any]:
        out = []
        for c in self.all():
            labels = c.config.Labels or {}
            if not records.selected(c, f, _state(c)):
                continue
            out.append(pb.PodSandbox(id=c.id, metadata=pod_metadata(labels), state=_state(c),
                                     created_at=meta.nanos(c.created), labels=meta.user_labels(labels),
                                     annotations=meta.annotations_of(labels)))
        return out


def pod_metadata(labels: dict[str, str]) -> Any:
    return pb.PodSandboxMetadata(name=labels.get(meta.POD_NAME, ""), uid=labels.get(meta.POD_UID, ""),
                                 namespace=labels.get(meta.POD_NAMESPACE, ""),
                                 attempt=int(labels.get(meta.ATTEMPT, "0")))


def _state(c: Container) -> Any:
    return pb.PodSandboxState.SANDBOX_READY if c.running else pb.PodSandboxState.SANDBOX_NOTREADY


def _ports(mappings: Any) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    for p in mappings:
        if not p.host_port:
            continue
        proto = {pb.Protocol.TCP: "tcp", pb.Protocol.UDP: "udp", pb.Protocol.SCTP: "sctp"}[p.protocol]
        out.setdefault(f"{p.container_port}/{proto}", []).append({"HostIp": p.host_ip, "HostPort": str(p.host_port)})
    return out or None


def _cni_ports(mappings: Any) -> list[dict[str, Any]]:
    """The ``portMappings`` capability argument (the portmap plugin's)."""
    protos = {pb.Protocol.TCP: "tcp", pb.Protocol.UDP: "udp", pb.Protocol.SCTP: "sctp"}
    return [{"hostPort": p.host_port, "containerPort": p.container_port, "protocol": protos[p.protocol],
             "hostIP": p.host_ip} for p in mappings if p.host_port]


async def _stop(containers: Containers, cid: str, timeout: int) -> None:
    try:
        await containers.stop(cid, timeout)
    except (NotModified, NotFound):
        pass


async def _remove(containers: Containers, cid: str) -> None:
    try:
        await containers.remove(cid, force=True)
    except NotFound:
        pass

