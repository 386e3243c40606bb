"""A container's sandbox while it runs: its addresses, its published host ports, its
/etc/hosts and resolv.conf, its namespace and veth endpoints, and the embedded DNS socket.

Lifecycle, driven by ``engine.attachments`` through ``engine.networks``::

    begin_start(cv, files)   start, before the shim: allocate addresses, bind host ports,
                             write hosts/resolv.conf, make the namespace and plug it in
                             (a task that runs while the shim is spawned)
    attach(cid, pid)         start, after the shim made the (blocked) init: wait for that task,
                             the DNS socket, the NAT rules
    release(cid)             the container exited (or its start failed)
    recover(running)         berthd start: port sockets, DNS sockets and rules again
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections.abc import Callable
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from berth.engine import network_ipam, network_names
from berth.engine.container_table import NetnsPlug
from berth.engine.network_bridges import Bridges
from berth.engine.network_records import ContainerView, Endpoint, NetworkTable, PortBinding, Sandbox
from berth.errors import Conflict, InvalidArgument, RuntimeFailure, os_text
from berth.network import etcfiles, ports
from berth.network.sandbox import Kernel, Plug, veth_name
from berth.state.atomic import write_atomic

log = logging.getLogger("berth.network")

Emit = Callable[[str, str, str, dict[str, str]], object]


class Sandboxes:
    """The running side of the containers' sandboxes (the records are in ``NetworkTable``)."""

    def __init__(self, table: NetworkTable, kernel: Kernel, bridges: Bridges, emit: Emit):
        self.table = table
        self.kernel = kernel
        self.bridges = bridges
        self.emit = emit
        self.port_sockets: dict[str, list[socket.socket]] = {}
        self.proxies: dict[str, list[asyncio.Server | ports.UdpProxy]] = {}   # [::1] of IPv6 ports
        # Start in progress: a namespace made by berthd (held by an fd) and the task plugging
        # its endpoints in, which runs while the shim is spawned; attach() waits for it.
        self.pending: dict[str, tuple[int, asyncio.Task[None]]] = {}
        # Those of the pending tasks that plug from outside (a CRI pod's CNI ADD): a start that
        # fails waits for them instead of cancelling them, so what they made is known (cached).
        self.external: set[str] = set()
        # A rootless engine's: the host's net.ipv4.ip_unprivileged_port_start (lower ports
        # are refused; the others listen, for pasta); None for root's.
        self.port_start: int | None = None

    # -- start ------------------------------------------------------------------------------

    async def begin_start(self, cv: ContainerView, hosts_path: Path, resolv_path: Path,
                          hostname_path: Path, joined_files: tuple[Path, Path, Path] | None,
                          plug: NetnsPlug | None = None) -> tuple[str, str]:
        """Allocate, reserve host ports, write the files, and (with endpoints, or a ``plug``
        for a ``none`` container) make the namespace and start plugging it in. -> (kind,
        namespace path for the spec), kind "new" (a fresh one, made by the runtime), "host",
        "join" (container:) or "made".

        Raises Conflict (address or port in use), NotFound.
        """
        s = self.table.sandboxes.get(cv.id)
        if s is None:
            s = Sandbox(container_id=cv.id, mode="bridge", sandbox_id=secrets.token_hex(32))
            s.endpoints.append(Endpoint(network_id=self.table.get("bridge").id))
        if s.endpoints:
            await self.bridges.ensure_ready()
        host_text = _read("/etc/resolv.conf")
        if s.mode.startswith("container:") and joined_files is not None:
            for src, dst in zip(joined_files, (hosts_path, resolv_path, hostname_path)):
                _write(dst, _read(str(src)))
            return "join", ""
        if s.mode == "host":
            _write(hosts_path, _read("/etc/hosts") or etcfiles.DEFAULT_HOSTS)
            text, _ = etcfiles.resolv_conf(host_text, embedded=False, host_network=True, dns=cv.dns,
                                           search=cv.dns_search, options=cv.dns_options)
            _write(resolv_path, text)
            return "host", ""
        try:
            self._allocate(cv, s)
        except BaseException:
            for e in s.endpoints:
                e.ip = ""
            raise
        self.table.save_sb(s)
        embedded = network_names.uses_embedded_dns(self.table, s)
        text, upstreams = etcfiles.resolv_conf(host_text, embedded=embedded, dns=cv.dns, search=cv.dns_search,
                                               options=cv.dns_options)
        s.upstreams = upstreams if cv.dns else []
        _write(resolv_path, text)
        _write(hosts_path, network_names.hosts(self.table, cv, s))
        if not s.endpoints:
            return ("made", await self._make_netns(cv.id, s, plug)) if plug is not None else ("new", "")
        return "made", await self._make_netns(cv.id, s)

    def _allocate(self, cv: ContainerView, s: Sandbox) -> None:
        """Addresses on every network, then the host ports. Raises RuntimeFailure (a start
        failure, as dockerd's 500s: ``run --rm`` then removes the container)."""
        for e in s.endpoints:
            try:
                network_ipam.allocate(self.table, s, e)
            except (Conflict, InvalidArgument) as ex:
                raise RuntimeFailure(str(ex)) from None
        s.ports = []
        if s.endpoints:
            self.port_sockets[cv.id] = _reserve_ports(cv, s, self.port_start)

    async def _make_netns(self, cid: str, s: Sandbox, plug: NetnsPlug | None = None) -> str:
        try:
            fd, path = await self.kernel.new_netns()
        except RuntimeFailure:
            await self.release(cid)
            raise
        task = asyncio.get_running_loop().create_task(self._plug_all(s, path) if plug is None else plug(path))
        self.pending[cid] = (fd, task)
        if plug is not None:
            self.external.add(cid)
        return path

    async def _plug_all(self, s: Sandbox, path: str) -> None:
        s.ns_path = path
        for i, e in enumerate(s.endpoints):
            await self.plug(s, e, i)

    async def ready_before_start(self, cid: str) -> bool:
        """True once the container's network is complete before its init runs, so the init
        need not wait for ``attach``: its veths are plugged (the namespace was made ahead)
        and there are no published ports or embedded DNS, which ``attach`` sets up once the
        init exists. Other modes have nothing to plug."""
        s = self.table.sandboxes.get(cid)
        pending = self.pending.get(cid)
        if s is None or not s.endpoints and pending is None:
            return True
        if s.endpoints and (pending is None or s.ports or network_names.uses_embedded_dns(self.table, s)):
            return False
        # the veths, or a plug from outside (a CRI pod's CNI ADD): complete before the init runs
        assert pending is not None
        try:
            await asyncio.shield(pending[1])
        except Exception:  # attach raises it again, and the start fails
            return False
        return True

    async def attach(self, cid: str, pid: int) -> None:
        """The init is blocked before execve in its new namespace: plug it in. Raises."""
        s = self.table.sandboxes.get(cid)
        pending = self.pending.pop(cid, None)
        if pending is not None and cid in self.external:
            self.pending[cid] = pending
            await self._attach_external(cid, s, pid)
            return
        if s is None or not s.endpoints or pending is None:
            if s is not None and s.mode == "none":
                s.ns_path = f"/proc/{pid}/ns/net"
                self.table.save_sb(s)
            if pending is not None:
                self.pending[cid] = pending
                await self.release(cid)
            return
        fd, task = pending
        try:
            try:
                await task
            finally:
                self.kernel.release_netns(fd)  # the init has joined the namespace: it holds it now
            s.ns_path = f"/proc/{pid}/ns/net"
            self.table.running.add(cid)
            self.table.save_sb(s)
            if s.ports:
                await self.bridges.apply_rules()
                await self._proxy(s)
            if network_names.uses_embedded_dns(self.table, s):
                await self.serve_dns(s)
        except BaseException:
            await self.release(cid)
            raise
        self._events("connect", s)

    async def _attach_external(self, cid: str, s: Sandbox | None, pid: int) -> None:
        """A ``none`` container's namespace, plugged in from outside: wait for the plug."""
        fd, task = self.pending[cid]
        try:
            await task
        except BaseException:
            await self.release(cid)
            raise
        self.pending.pop(cid, None)
        self.external.discard(cid)
        self.kernel.release_netns(fd)  # the init has joined the namespace: it holds it now
        if s is not None:
            s.ns_path = f"/proc/{pid}/ns/net"
            self.table.save_sb(s)

    async def plug(self, s: Sandbox, e: Endpoint, index: int, at_start: bool = True) -> None:
        n = self.table.nets[e.network_id]
        e.ifname = f"eth{index}"
        e.host_if = veth_name(s.container_id, n.id)
        # At start the gateway endpoint gets the default route; one connected later only if alone.
        routed = e is network_ipam.gateway_endpoint(self.table, s) if at_start else index == 0
        gw = n.gateway if routed and not n.internal else None
        gw6 = n.gateway6 if routed and not n.internal and e.ip6 else None
        mtu = n.options.get("com.docker.network.driver.mtu")
        prefix6 = IPv6Network(n.subnet6).prefixlen if e.ip6 else 64
        await self.kernel.plug(Plug(n.bridge, e.host_if, s.ns_path, e.ifname, e.mac, e.ip,
                                    IPv4Network(n.subnet).prefixlen, gw, int(mtu) if mtu else None,
                                    e.ip6, prefix6, gw6))

    async def _proxy(self, s: Sandbox) -> None:
        """Serve the IPv6 TCP and UDP ports for [::1], the one address the kernel cannot DNAT."""
        ip6 = s.endpoints[0].ip6 if s.endpoints else ""
        if not ip6:
            return
        servers = self.proxies.setdefault(s.container_id, [])
        for sock in self.port_sockets.get(s.container_id, []):
            proto = {socket.SOCK_STREAM: "tcp", socket.SOCK_DGRAM: "udp"}.get(sock.type)
            if sock.family != socket.AF_INET6 or proto is None:
                continue
            port = sock.getsockname()[1]
            cport = next((p.container_port for p in s.ports
                          if p.host_port == port and p.proto == proto and ":" in p.host_ip), 0)
            if cport:
                proxy = ports.proxy if proto == "tcp" else ports.udp_proxy
                servers.append(await proxy(sock, (ip6, cport)))

    async def serve_dns(self, s: Sandbox) -> None:
        await self.kernel.serve_dns(s.container_id, s.ns_path, s.upstreams or None)

    def _events(self, action: str, s: Sandbox) -> None:
        for e in s.endpoints:
            n = self.table.nets.get(e.network_id)
            if n is not None:
                self.emit("network", action, n.id, {"container": s.container_id, "name": n.name, "type": n.driver})

    # -- exit -------------------------------------------------------------------------------

    async def release(self, cid: str) -> None:
        """The container stopped: its addresses, ports, veths, DNS socket go."""
        s = self.table.sandboxes.get(cid)
        pending = self.pending.pop(cid, None)
        if pending is not None:
            fd, task = pending
            if cid not in self.external:
                task.cancel()
            self.external.discard(cid)
            try:
                await task
            except BaseException:  # noqa: BLE001 - the start failed already; this is cleanup
                pass
            self.kernel.release_netns(fd)
        self.close_ports(cid)
        self.kernel.close_dns(cid)   # the socket pins the namespace: close it first
        was_running = cid in self.table.running
        self.table.running.discard(cid)
        if s is None:
            return
        # The veths go with the namespace (the kernel deletes both ends when it is freed);
        # deleting them here would only wait for that on berthd's start/exit path. A namespace
        # still alive (a failed start whose init is being killed) loses them the same way.
        had_ports = bool(s.ports)
        network_ipam.release(s)
        s.ports = []
        s.ns_path = ""
        try:
            self.table.save_sb(s)
        except OSError as err:  # a full disk: the rules below must still go (saved at the next change)
            log.error("container %s: saving its network sandbox: %s", cid[:12], err)
        if was_running and had_ports:
            await self.bridges.apply_rules()
        if was_running:
            self._events("disconnect", s)

    def close_ports(self, cid: str) -> None:
        for server in self.proxies.pop(cid, []):
            server.close()
        for sock in self.port_sockets.pop(cid, []):
            sock.close()

    def close_all(self) -> None:
        """berthd stops: its port and DNS sockets (the containers keep their namespaces)."""
        for cid in list(self.port_sockets):
            self.close_ports(cid)
        self.kernel.close_all_dns()

    # -- berthd start -----------------------------------------------------------------------

    async def recover(self, running: dict[str, int]) -> None:
        """berthd start: ``running`` maps live container IDs to their init pids. The bridges,
        forwarding and rules are set up in the background (``Bridges.ensure_ready`` waits for
        them): a request need not wait for pyroute2 and nft, a container start does."""
        for cid, s in list(self.table.sandboxes.items()):
            if cid not in running:
                if any(e.ip for e in s.endpoints) or s.ports:
                    network_ipam.release(s)
                    s.ports = []
                    self.table.save_sb(s)
                continue
            if not s.endpoints:
                continue
            self.table.running.add(cid)
            s.ns_path = f"/proc/{running[cid]}/ns/net"
            self.port_sockets[cid] = _reserve_again(s.ports, listen=self.port_start is not None)
            await self._proxy(s)
            if network_names.uses_embedded_dns(self.table, s):
                await self.serve_dns(s)
        self.bridges.setup_soon()  # its last step applies the rules, with the ports recovered above


def _reserve_ports(cv: ContainerView, s: Sandbox, port_start: int | None) -> list[socket.socket]:
    """The host ports of ``s``'s bindings, held by berthd's sockets (listening when rootless:
    ``port_start`` is then the lowest unprivileged port)."""
    socks: list[socket.socket] = []
    has6 = bool(s.endpoints[0].ip6)
    reqs = list(ports.requests(cv.port_bindings, cv.exposed, cv.publish_all))
    rootless = port_start is not None
    for req in reqs:
        if port_start is not None and 0 < req.host_port_lo < port_start:
            raise RuntimeFailure(ports.privileged_port(req.host_port_lo, port_start))
    try:
        for req in reqs:
            if ":" in req.host_ip and not has6:
                continue   # an IPv6 host address for a container without IPv6 (dockerd's proxy would)
            b, sock = ports.reserve(req, listen=rootless)
            socks.append(sock)
            s.ports.append(PortBinding(b.proto, b.container_port, b.host_ip, b.host_port))
            if has6 and not req.host_ip:   # every address: IPv6's too, on the same port
                b6, sock6 = ports.reserve(ports.Request(req.proto, req.container_port, "::",
                                                        b.host_port, b.host_port), rootless)
                socks.append(sock6)
                s.ports.append(PortBinding(b6.proto, b6.container_port, "::", b6.host_port))
    except OSError as err:  # in use, an address the host lacks, out of descriptors: none is kept
        for sock in socks:
            sock.close()
        reason = err.strerror if isinstance(err, ports.BindFailed) else os_text(err)
        raise RuntimeFailure(f"driver failed programming external connectivity on endpoint "
                             f"{cv.name} ({s.endpoints[0].endpoint_id}): {reason}") from None
    return socks


def _reserve_again(bindings: list[PortBinding], listen: bool = False) -> list[socket.socket]:
    """The host ports a running container held before berthd restarted."""
    socks = []
    for p in bindings:
        try:
            _, sock = ports.reserve(ports.Request(p.proto, p.container_port, p.host_ip, p.host_port, p.host_port),
                                    listen)
            socks.append(sock)
        except OSError as e:
            log.warning("re-reserve port %s: %s", p.host_port, e)
    return socks


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _write(path: Path, text: str) -> None:
    write_atomic(path, text.encode(), sync=False)  # per-container files, rebuilt on restart
