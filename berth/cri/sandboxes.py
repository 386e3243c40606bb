"""Pod sandboxes: RunPodSandbox and its Stop, Remove, Status and List.

A sandbox is an engine container running berth's pause (``pause.py``) whose namespaces the
pod's containers join: its network namespace (a berth bridge address, or the host's for a
``hostNetwork`` pod), its IPC namespace (``IpcMode: shareable``), its UTS namespace (the pod's
hostname) and, when the pod asks for it, its PID namespace.

    sid = await sandboxes.run(config)          # pause running, its address assigned
    await sandboxes.stop(sid)                  # the pod's containers, then the pause
    await sandboxes.remove(sid)                # everything of the pod gone
"""

from __future__ import annotations

import os
from typing import Any

from cri_api.v1 import api_pb2 as pb

from berth.cri import meta, pause
from berth.engine.container_create import CreateRequest
from berth.engine.containers import Containers
from berth.engine.images import Images
from berth.engine.model import Container
from berth.errors import AlreadyExists, InvalidArgument, NotFound, NotModified
from berth.schema.containers import HostConfig

NODE, POD = pb.NamespaceMode.NODE, pb.NamespaceMode.POD


class Sandboxes:
    def __init__(self, containers: Containers, images: Images):
        self.containers = containers
        self.images = images

    # -- lookups ----------------------------------------------------------------------------

    def get(self, ref: str) -> Container:
        """A sandbox by ID or unique ID prefix (NOT_FOUND otherwise)."""
        if not ref:
            raise InvalidArgument("pod sandbox ID must not be empty")
        try:
            c = self.containers.get(ref)
        except NotFound:
            c = None
        if c is None or (c.config.Labels or {}).get(meta.TYPE) != meta.SANDBOX:
            raise NotFound(f"pod sandbox {ref} not found")
        return c

    def all(self) -> list[Container]:
        return [c for c in self.containers.list() if (c.config.Labels or {}).get(meta.TYPE) == meta.SANDBOX]

    def members(self, sid: str) -> list[Container]:
        """The pod's containers."""
        return [c for c in self.containers.list() if (c.config.Labels or {}).get(meta.SANDBOX_ID) == sid
                and (c.config.Labels or {}).get(meta.TYPE) == meta.CONTAINER]

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
        req = self._request(config, await pause.image(self.images))
        c, _ = self.containers.create(req, name)
        try:
            await self.containers.start(c.id)
        except BaseException:
            await self.containers.remove(c.id, force=True)
            raise
        if config.log_directory:
            os.makedirs(config.log_directory, exist_ok=True)
        return c.id

    def _request(self, config: Any, image_id: str) -> CreateRequest:
        m, ns = config.metadata, config.linux.security_context.namespace_options
        host_net = ns.network == NODE
        extra = {meta.POD_NAME: m.name, meta.POD_NAMESPACE: m.namespace, meta.POD_UID: m.uid,
                 meta.ATTEMPT: str(m.attempt), meta.LOG_DIRECTORY: config.log_directory}
        hc = HostConfig(NetworkMode="host" if host_net else "bridge",
                        IpcMode="host" if ns.ipc == NODE else "shareable",
                        PidMode="host" if ns.pid == NODE else "",
                        Sysctls=dict(config.linux.sysctls) or None,
                        PortBindings=_ports(config.port_mappings) if not host_net else None)
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
        await _stop(self.containers, c.id, 0)

    async def remove(self, sid: str) -> None:
        """Remove the pod's containers and its pause (idempotent)."""
        try:
            c = self.get(sid)
        except NotFound:
            return
        for member in self.members(c.id):
            await _remove(self.containers, member.id)
        await _remove(self.containers, c.id)

    # -- views ------------------------------------------------------------------------------

    def status(self, sid: str) -> Any:
        c = self.get(sid)
        labels = c.config.Labels or {}
        ns = pb.NamespaceOption(network=NODE if c.host_config.NetworkMode == "host" else POD,
                                ipc=NODE if c.host_config.IpcMode == "host" else POD,
                                pid=NODE if c.host_config.PidMode == "host" else pb.NamespaceMode.CONTAINER)
        return pb.PodSandboxStatus(
            id=c.id, metadata=_metadata(labels), state=_state(c), created_at=meta.nanos(c.created),
            network=pb.PodSandboxNetworkStatus(ip=self._ip(c)),
            linux=pb.LinuxPodSandboxStatus(namespaces=pb.Namespace(options=ns)),
            labels=meta.user_labels(labels), annotations=meta.annotations_of(labels))

    def _ip(self, c: Container) -> str:
        if not c.running or c.host_config.NetworkMode == "host" or self.containers.attachments is None:
            return ""
        return self.containers.attachments.bridge_ip(c)

    def list(self, f: Any) -> list[Any]:
        out = []
        for c in self.all():
            labels = c.config.Labels or {}
            if f is not None:
                if f.id and not c.id.startswith(f.id):
                    continue
                if f.HasField("state") and f.state.state != _state(c):
                    continue
                if not meta.selected(labels, f.label_selector):
                    continue
            out.append(pb.PodSandbox(id=c.id, metadata=_metadata(labels), state=_state(c),
                                     created_at=meta.nanos(c.created), labels=meta.user_labels(labels),
                                     annotations=meta.annotations_of(labels)))
        return out


def _metadata(labels: dict[str, str]) -> Any:
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

