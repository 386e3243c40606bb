"""What a container is attached to: its networks (``engine.networks``) and its mounts
(``engine.volumes``). ``engine.containers`` calls these hooks at each step of a container's
life, so that it needs to know nothing of either::

    prepare(c, req)                 create   (validates; records endpoints and mount points)
    await begin_start(c)            start, before the shim -> spec arguments (netns, mounts)
    await ready_before_start(c)     start: may the init run before after_spawn (run -d)?
    await after_spawn(c, pid)       start, the init exists and waits: plug the network in
    await stopped(c)                the init exited, or the start failed
    removed(c, volumes)             remove (``rm -v`` also removes anonymous volumes)
    await recover(containers)       berthd start
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any, cast

from berth.engine import container_userns
from berth.engine.container_table import ContainerTable, NetnsPlug, SandboxArgs
from berth.engine.model import Container
from berth.engine.networks import ContainerView, Networks
from berth.engine.mount_specs import MountPoint
from berth.engine.volumes import Volumes
from berth.errors import Conflict, Internal, InvalidArgument, NotFound
from berth.state.paths import DataRoot

log = logging.getLogger("berth.engine")


class Attachments:
    def __init__(self, networks: Networks, volumes: Volumes, data: DataRoot, containers: ContainerTable):
        self.networks = networks
        self.volumes = volumes
        self.data = data
        self.containers = containers    # the container records (for names and lookups)
        networks.names = self._names

    def _names(self, cid: str) -> tuple[str, str] | None:
        c = self.containers.by_id.get(cid)
        return (c.name, c.config.Hostname) if c is not None else None

    def view(self, c: Container) -> ContainerView:
        hc = c.host_config
        dns, dns_search, dns_options = self.containers.defaults.dns_for(hc)
        return ContainerView(
            id=c.id, name=c.name, hostname=c.config.Hostname, domainname=c.config.Domainname,
            network_mode=hc.NetworkMode, port_bindings=hc.PortBindings, exposed=c.config.ExposedPorts,
            publish_all=hc.PublishAllPorts, dns=dns, dns_search=dns_search,
            dns_options=dns_options, extra_hosts=list(hc.ExtraHosts or []),
            links=list(hc.Links or []), mac=c.config.MacAddress or "")

    # -- create -----------------------------------------------------------------------------

    def prepare(self, c: Container, networking_config: dict[str, object] | None, hostname_given: bool) -> None:
        """Raises NotFound, InvalidArgument, Conflict; records nothing if it raises."""
        hc = c.host_config
        mode = hc.NetworkMode or "default"
        if mode.startswith("container:"):
            try:
                other: Container | None = self.containers.get(mode.split(":", 1)[1])
            except NotFound:  # as dockerd 28, which looks it up at start only (getNetworkedContainer)
                other = None
            if other is not None and other.id == c.id:
                raise InvalidArgument("cannot join own network namespace")
            if hostname_given:
                raise InvalidArgument("conflicting options: hostname and the network mode")
            if hc.PortBindings or hc.PublishAllPorts:
                raise InvalidArgument("conflicting options: port publishing and the container type network mode")
            if other is not None:
                hc.NetworkMode = f"container:{other.id}"
                c.config.Hostname = other.config.Hostname
        elif mode == "host" and not hostname_given:
            c.config.Hostname = socket.gethostname()
        if (mode in ("host", "none") or mode.startswith("container:")) and hc.Links:
            raise InvalidArgument("conflicting options: container type network can't be used with links. "
                                  "This would result in undefined behavior")
        volumes = dict(c.config.Volumes or {})
        try:  # the image's VOLUMEs count even when the request sends its own (often {})
            ic = self.containers.images.get_by_id(c.image_id).config.config
            volumes.update((ic.Volumes or {}) if ic is not None else {})
        except NotFound:
            pass
        self.volumes.prepare(c.id, hc, volumes, self._points_of)
        try:
            endpoints = (networking_config or {}).get("EndpointsConfig")
            self.networks.prepare(self.view(c), cast("dict[str, Any] | None", endpoints))  # as the client sent it
        except BaseException:
            self.volumes.forget(c.id, remove_anonymous=True)
            raise

    def _points_of(self, ref: str) -> tuple[str, list[MountPoint]]:
        other = self.containers.get(ref)
        return other.id, self.volumes.of(other.id)

    # -- start ------------------------------------------------------------------------------

    async def begin_start(self, c: Container, plug: NetnsPlug | None = None) -> SandboxArgs:
        """-> what the OCI spec gets from the network and the volumes (netns, extra_mounts)."""
        d = self.data.container(c.id)
        mode = c.host_config.NetworkMode
        joined_files = None
        netns_path = ""
        if mode.startswith("container:"):
            try:
                other = self.containers.get(mode.split(":", 1)[1])
            except NotFound as e:  # dockerd 28's words, and a 500 (a system error at start)
                raise Internal(f"joining network namespace of container: {e}") from None
            c.config.Hostname = other.config.Hostname  # as dockerd's initializeNetworking, each start
            if not other.running or not other.state.pid:
                raise Conflict(f"cannot join network namespace of a non running container: {other.id}")
            od = self.data.container(other.id)
            joined_files = (od.hosts, od.resolv_conf, od.hostname)
            netns_path = f"/proc/{other.state.pid}/ns/net"
        t = time.perf_counter()
        kind, made = await self.networks.begin_start(self.view(c), d.hosts, d.resolv_conf, d.hostname, None,
                                                     joined_files, plug)
        try:
            image = self.containers.images.get_by_id(c.image_id)
            lowers = list(self.containers.images.lower_dirs(image))
            maps = container_userns.maps_for(c.id, c.host_config, self.containers.userns)
            self.volumes.ensure_propagation(c.id)
            mounts = self.volumes.spec_mounts(c.id, lowers, d.upper, maps)
        except BaseException:
            await self.networks.release(c.id)
            raise
        log.debug("network/volume prepare %s: %.1f ms", c.id[:12], (time.perf_counter() - t) * 1000)
        netns: str | None = {"host": None, "join": netns_path, "made": made}.get(kind, "")
        return SandboxArgs(netns=netns, extra_mounts=mounts)

    def bridge_ip(self, c: Container) -> str:
        """The container's address on the default bridge ("" if none): legacy links use it."""
        return self.networks.ip_on(c.id, "bridge")

    async def after_spawn(self, c: Container, pid: int) -> None:
        t = time.perf_counter()
        await self.networks.attach(c.id, pid)
        log.debug("network attach %s: %.1f ms", c.id[:12], (time.perf_counter() - t) * 1000)

    async def ready_before_start(self, c: Container) -> bool:
        """Whether the init may run before ``after_spawn``: its network needs nothing then
        but bookkeeping (waits for the veths; False when that failed)."""
        return await self.networks.ready_before_start(c.id)

    async def stopped(self, c: Container) -> None:
        t = time.perf_counter()
        await self.networks.release(c.id)
        log.debug("network release %s: %.1f ms", c.id[:12], (time.perf_counter() - t) * 1000)

    def removed(self, c: Container, volumes: bool) -> None:
        self.networks.forget(c.id)
        self.volumes.forget(c.id, remove_anonymous=volumes)

    async def recover(self, containers: list[Container]) -> None:
        running = {c.id: c.state.pid for c in containers if c.running and c.state.pid}
        await self.networks.recover(running)

    async def shutdown(self, containers: list[Container]) -> None:
        await self.networks.shutdown(any(c.running for c in containers))
