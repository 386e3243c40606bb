"""Networks: the engine's one object for them, built once by daemon/. It is the record table
(``network_records``), creates and removes networks, records a container's endpoints, and
hands the rest to the module that owns it:

    records, lookups                      network_records   (SQLite: networks, sandboxes)
    subnets, addresses, endpoint checks   network_ipam      (over network.ipam's arithmetic)
    bridges, NAT and forward rules        network_bridges
    a running container's sandbox         network_sandboxes (addresses, ports, files, veths)
    /etc/hosts, embedded DNS answers      network_names

Lifecycle of a container's sandbox, driven by ``engine.attachments``::

    prepare(cv, cfg)         create: check the mode and networks, record endpoint configs
    begin_start(cv, files)   start, before the shim: allocate addresses, bind host ports,
                             write hosts/resolv.conf; -> the netns for the spec
    attach(cid, pid)         start, after the shim made the (blocked) init: veths into
                             the namespace, the DNS socket, the NAT rules
    release(cid)             the container exited (or its start failed)
    forget(cid)              the container was removed
    recover(running)         berthd start: bridges, rules, DNS sockets and port sockets again

The kernel objects (bridges, namespaces, veths, NAT rules, DNS sockets) are made by
``network.sandbox``, and recreated from the records; Docker's JSON for all this is shaped in
``api.networks``.
"""

from __future__ import annotations

import builtins
import re
import secrets
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from berth.engine.container_table import NetnsPlug
from berth.engine.network_bridges import Bridges
from berth.engine.network_ipam import allocate, endpoint_from
from berth.engine.network_names import resolve
from berth.engine.network_records import (ContainerView, Endpoint, IPAMConfig, IPAMRequest, Network, NetworkTable, NoSuchNetwork,
                                          PortBinding, Sandbox, now)
from berth.engine.network_sandboxes import Emit, Sandboxes
from berth.errors import Conflict, InvalidArgument, NotFound, PermissionDenied, RuntimeFailure
from berth.network import ipam
from berth.network.ports import parse_port_key
from berth.network.sandbox import Kernel, instance_of
from berth.state.db import Database

__all__ = ["ContainerView", "Endpoint", "IPAMConfig", "IPAMRequest", "Network", "Networks", "NoSuchNetwork", "PortBinding", "Sandbox",
           "instance_of", "parse_port_key"]  # api/ shapes these (and Docker's port keys); daemon/ names a berthd

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


class Networks(NetworkTable):
    """The network engine. Built once by daemon/; ``names`` is bound by ``engine.attachments``."""

    def __init__(self, db: Database, data_root: Path, instance: str, emit: Emit | None = None):
        super().__init__(db, "berth0" if not instance else f"berth{instance}"[:15])
        self.data_root = data_root
        self.instance = instance        # "" for the default data root; else a short hash
        self.emit: Emit = emit or (lambda *a: None)
        self.kernel = Kernel(data_root, self.resolve)   # bridges, namespaces, veths, DNS sockets
        self.bridges = Bridges(self, self.kernel, instance)
        self.live = Sandboxes(self, self.kernel, self.bridges, self.emit)

    # -- create / remove --------------------------------------------------------------------

    async def create(self, name: str, driver: str = "bridge", internal: bool = False,
                     attachable: bool = False, labels: dict[str, str] | None = None,
                     options: dict[str, str] | None = None, ipam: IPAMRequest | None = None,
                     check_duplicate: bool = True, enable_ipv6: bool = False) -> Network:
        if not name or not _NAME.match(name):
            raise InvalidArgument(f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        for n in self.nets.values():
            if n.name == name:
                raise Conflict(f"network with name {name} already exists")
        driver = driver or "bridge"
        if driver in ("host", "null"):
            raise PermissionDenied(f"only one instance of \"{driver}\" network is allowed")
        if driver != "bridge":
            raise NotFound(f"plugin \"{driver}\" not found")
        ipam = ipam or IPAMRequest()
        if ipam.driver != "default":
            raise NotFound(f"plugin \"{ipam.driver}\" not found")
        nid = secrets.token_hex(32)
        n = Network(id=nid, name=name, driver=driver, created=now(), internal=internal,
                    attachable=attachable, labels=dict(labels or {}), options=dict(options or {}),
                    ipam_options=ipam.options, ipam_config=ipam.config, enable_ipv6=enable_ipv6,
                    bridge=(options or {}).get("com.docker.network.bridge.name") or f"br-{nid[:12]}")
        if len(n.bridge) > 15:
            raise InvalidArgument(f"bridge name {n.bridge} is too long (15 characters at most)")
        if any(o.bridge == n.bridge for o in self.nets.values()):
            raise Conflict(f"bridge name {n.bridge} is used by another network")
        await self.bridges.ensure_ready()  # the default bridge's subnet is chosen first
        await self.bridges.assign_subnet(n)
        await self.bridges.up(n)
        self.save_net(n)
        try:
            await self.bridges.apply_rules()
        except RuntimeFailure:
            await self.bridges.down(n)
            self.delete_net(n)
            raise
        self.emit("network", "create", n.id, {"name": n.name, "type": n.driver})
        return n


    async def remove(self, ref: str) -> None:
        n = self.get(ref)
        if n.predefined:
            raise PermissionDenied(f"{n.name} is a pre-defined network and cannot be removed")
        active = [cid for cid in self.containers_on(n) if cid in self.running]
        if active:
            raise PermissionDenied(f"error while removing network: network {n.name} id {n.id} has active endpoints")
        await self.bridges.ensure_ready()
        for cid in self.containers_on(n):
            s = self.sandboxes[cid]
            s.endpoints = [e for e in s.endpoints if e.network_id != n.id]
            self.save_sb(s)
        self.delete_net(n)
        await self.bridges.apply_rules()
        await self.bridges.down(n)
        self.emit("network", "destroy", n.id, {"name": n.name, "type": n.driver})

    async def prune(self, keep: Callable[[Network], bool]) -> builtins.list[str]:
        out = []
        for n in list(self.nets.values()):
            if n.predefined or self.containers_on(n) or keep(n):
                continue
            await self.remove(n.id)
            out.append(n.name)
        return out

    # -- containers: create, connect, disconnect --------------------------------------------

    def prepare(self, cv: ContainerView, endpoints_config: dict[str, Any] | None) -> str:
        """Check the network mode and record the endpoints. -> the mode to store.

        Raises NotFound, InvalidArgument, Conflict.
        """
        mode = cv.network_mode or "default"
        cfgs: dict[str, Any] = dict(endpoints_config or {})
        if mode == "default":
            mode = "bridge"
            if "default" in cfgs and "bridge" not in cfgs:
                cfgs["bridge"] = cfgs.pop("default")
        sb = Sandbox(container_id=cv.id, mode=mode, sandbox_id=secrets.token_hex(32))
        if mode in ("host", "none") or mode.startswith("container:"):
            pass  # host's ports: warned of at create (Creator); a container's: resolved at start
        else:
            try:
                n: Network | None = self.get(mode)
            except NoSuchNetwork:  # looked up again at start (dockerd's validateNetworkingConfig)
                n = None
                sb.pending[mode] = _pending(cfgs.get(mode))
            if n is not None and (n.driver == "host" or n.driver == "null"):
                sb.mode = n.name
                mode = n.name
            else:
                if n is not None:
                    sb.endpoints.append(endpoint_from(n, cfgs.get(mode) or cfgs.get(n.name) or cfgs.get(n.id), cv))
                for key, cfg in cfgs.items():
                    if key == mode or (n is not None and key in (n.name, n.id)):
                        continue
                    try:
                        other = self.get(key)
                    except NoSuchNetwork:
                        sb.pending[key] = _pending(cfg)
                        continue
                    if other.is_bridge and sb.endpoint(other.id) is None:
                        sb.endpoints.append(endpoint_from(other, cfg, cv))
        self.save_sb(sb)
        return mode

    def _resolve_pending(self, cv: ContainerView) -> None:
        """At start, the networks that did not exist at create: dockerd 28's start error (a 404,
        ``failed to set up container networking: network X not found``) if one still does not."""
        s = self.sandboxes.get(cv.id)
        if s is None or not s.pending:
            return
        for name, cfg in list(s.pending.items()):
            try:
                n = self.get(name)
            except NoSuchNetwork as e:
                raise NoSuchNetwork(f"failed to set up container networking: {e}") from None
            if n.is_bridge and s.endpoint(n.id) is None:
                s.endpoints.append(endpoint_from(n, cfg, cv))
            del s.pending[name]
        self.save_sb(s)


    async def connect(self, ref: str, cv: ContainerView, cfg: dict[str, Any] | None, running_pid: int) -> None:
        n = self.get(ref)
        s = self.sandboxes.get(cv.id)
        if s is None:
            s = Sandbox(container_id=cv.id, mode=n.name, sandbox_id=secrets.token_hex(32))
        if s.mode in ("host", "none") or s.mode.startswith("container:"):
            raise InvalidArgument("container sharing network namespace with another container or host "
                                  "cannot be connected to any other network")
        if not n.is_bridge:
            raise InvalidArgument("container cannot be disconnected from host network or connected to host network")
        if s.endpoint(n.id) is not None:
            raise PermissionDenied(f"endpoint with name {cv.name} already exists in network {n.name}")
        e = endpoint_from(n, cfg, cv)
        s.endpoints.append(e)
        if running_pid:
            await self.bridges.ensure_ready()
            try:
                allocate(self, s, e)
                s.ns_path = f"/proc/{running_pid}/ns/net"
                await self.live.plug(s, e, len(s.endpoints) - 1 if len(s.endpoints) > 1 else 0, at_start=False)
            except BaseException:
                s.endpoints.remove(e)
                raise
            self.running.add(cv.id)
            if n.user_defined and not self.kernel.serving_dns(cv.id):
                await self.live.serve_dns(s)
        self.save_sb(s)
        self.emit("network", "connect", n.id, {"container": cv.id, "name": n.name, "type": n.driver})

    async def disconnect(self, ref: str, cid: str, force: bool) -> None:
        n = self.get(ref)
        s = self.sandboxes.get(cid)
        e = s.endpoint(n.id) if s else None
        if s is None or e is None:
            if force:
                return
            # dockerd's words differ: DisconnectFromNetwork's for a stopped container, its
            # disconnectFromNetwork's for a running one
            the = "" if cid in self.running else "the "
            raise InvalidArgument(f"container {cid} is not connected to {the}network {n.name}")
        if e.host_if:
            await self.kernel.unplug(e.host_if)
        s.endpoints.remove(e)
        self.save_sb(s)
        await self.bridges.apply_rules()
        self.emit("network", "disconnect", n.id, {"container": cid, "name": n.name, "type": n.driver})



    # -- containers: start and exit (network_sandboxes) -------------------------------------

    async def begin_start(self, cv: ContainerView, hosts_path: Path, resolv_path: Path,
                          hostname_path: Path, joined: Sandbox | None, joined_files: tuple[Path, Path, Path] | None,
                          plug: NetnsPlug | None = None) -> tuple[str, str]:
        """See ``Sandboxes.begin_start``."""
        self._resolve_pending(cv)
        return await self.live.begin_start(cv, hosts_path, resolv_path, hostname_path, joined_files, plug)

    async def attach(self, cid: str, pid: int) -> None:
        await self.live.attach(cid, pid)

    async def ready_before_start(self, cid: str) -> bool:
        return await self.live.ready_before_start(cid)

    async def release(self, cid: str) -> None:
        await self.live.release(cid)

    def resolve(self, cid: str, name: str) -> tuple[builtins.list[IPv4Address | IPv6Address] | None, bool]:
        """The embedded DNS server's lookup: names on this container's user networks."""
        return resolve(self, cid, name)

    # -- berthd start and stop --------------------------------------------------------------

    async def recover(self, running: dict[str, int]) -> None:
        """berthd start: ``running`` maps live container IDs to their init pids. The bridges
        and rules come up in the background; start, create, remove and connect wait for them."""
        await self.live.recover(running)

    async def shutdown(self, containers_running: bool) -> None:
        """berthd stops. With no container running, take every kernel object down (they are
        recreated at the next start); otherwise leave them to the running containers."""
        self.live.close_all()
        await self.bridges.settle()
        if not containers_running:
            await self.bridges.teardown()
        self.kernel.close()


def _pending(cfg: dict[str, Any] | None) -> dict[str, Any]:
    """A missing network's endpoint settings, their addresses checked as dockerd checks them
    without the network (the subnet is checked at start). Raises InvalidArgument."""
    cfg = cfg or {}
    ipc = cfg.get("IPAMConfig") or {}
    if ipc.get("IPv4Address"):
        ipam.parse_address(ipc["IPv4Address"], "IPv4 address")
    if ipc.get("IPv6Address"):
        ipam.parse_address6(ipc["IPv6Address"])
    return cfg
