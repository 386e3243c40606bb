"""The kernel side of berth's networks: bridges, network namespaces, veth endpoints, the NAT
and forward rules, and the embedded DNS sockets. ``engine.networks`` keeps the records and the
address management, and asks this module for the kernel objects, with plain values (names,
addresses, paths): nothing here knows a record.

Netlink work runs on one thread (``Kernel.run``), so that the asyncio loop never blocks on it
and netlink requests never interleave. ``SPARE_NETNS`` network namespaces are made ahead (each
with a netlink socket inside, so the plug needs no thread of its own), held by berthd's fds
only: a berthd killed with -9 leaves none behind.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from berth.errors import RuntimeFailure, os_text
from berth.linux.netns import read_sysctl, write_sysctl
from berth.linux.rtnl import Rtnl
from berth.network import forward, iptables, nat

if TYPE_CHECKING:
    from berth.network.dns.server import DnsServer, Lookup

log = logging.getLogger("berth.network")

T = TypeVar("T")
SPARE_NETNS = 2   # network namespaces made ahead for the next starts


def _close_all(sock: Rtnl | None, fd: int) -> None:
    if sock is not None:
        sock.close()
    os.close(fd)


def _make_netns() -> tuple[int, Rtnl]:
    from berth.linux.netns import new_netns_with

    return new_netns_with(Rtnl)


def _drop(fd: int, sock: Rtnl) -> None:
    sock.close()
    os.close(fd)


def instance_of(data_root: Path) -> str:
    """"" for the default data root; else a short stable tag, so that two berthds on one host
    (tests, benchmarks) never share a bridge or a rule table."""
    if str(data_root) == "/var/lib/berth":
        return ""
    return hashlib.sha256(str(data_root).encode()).hexdigest()[:8]


def table_name(instance: str) -> str:
    """The nftables table of a berthd's NAT rules."""
    return "berth" + (f"_{instance}" if instance else "")


def veth_name(container_id: str, network_id: str) -> str:
    """The host end of a container's veth on a network (stable across restarts)."""
    return "veth" + hashlib.sha256((container_id + network_id).encode()).hexdigest()[:11]


@dataclass(frozen=True)
class Plug:
    """One veth endpoint: the host end on ``bridge``, the other as ``ifname`` in ``ns_path``."""

    bridge: str
    host_if: str
    ns_path: str
    ifname: str
    mac: str
    ip: str
    prefixlen: int
    gateway: str | None   # the default route through it, if any
    mtu: int | None
    ip6: str = ""         # its IPv6 address on an IPv6 network, with the prefix and route
    prefixlen6: int = 64
    gateway6: str | None = None


class Kernel:
    """The kernel objects of one berthd's networks."""

    def __init__(self, data_root: Path, lookup: Lookup):
        self.data_root = data_root
        self.lookup = lookup
        self.dns: DnsServer | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="netlink")
        # Network namespaces made ahead, each held only by its fd (and the netlink socket
        # opened in it): nothing outlives berthd, even after kill -9.
        self._spare: list[tuple[int, Rtnl]] = []
        self._inside: dict[str, Rtnl] = {}     # namespace path -> its socket, until released
        self._filling = False
        self._closed = False

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on the netlink thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._closed = True
        while self._spare:
            _drop(*self._spare.pop())
        self._pool.shutdown(wait=True)

    # -- bridges ----------------------------------------------------------------------------

    async def bridge_up(self, bridge: str, gateway: str, prefixlen: int, mtu: int | None) -> None:
        from berth.network import netlink

        await self.run(netlink.ensure_bridge, bridge, gateway, prefixlen, mtu, str(self.data_root))

    async def bridge_up6(self, bridge: str, gateway: str, prefixlen: int) -> None:
        """The IPv6 gateway address of a bridge ``bridge_up`` made."""
        from berth.network import netlink

        try:
            await self.run(netlink.add_address6, bridge, gateway, prefixlen)
        except OSError as e:
            raise RuntimeFailure(f"failed to add the IPv6 address {gateway}/{prefixlen} to {bridge}: {e}") from None

    async def bridge_down(self, bridge: str) -> None:
        from berth.network import netlink

        await self.run(netlink.delete_link, bridge)

    async def host_networks(self, exclude: set[str]) -> list[IPv4Network]:
        """The routes of the host's interfaces but ``exclude`` (subnets a bridge must avoid)."""
        from berth.network import netlink

        return await self.run(netlink.host_networks, exclude)

    async def sweep_stale(self) -> None:
        """Bridges and rule tables of berthds whose data root is gone (a test's daemon killed
        with -9, say): nothing can use them any more."""
        try:
            await self.run(self._sweep_stale)
        except OSError as e:
            log.warning("sweeping stale bridges: %s", e)

    def _sweep_stale(self) -> None:
        from berth.network import netlink

        tables = set()
        for bridge, root in netlink.stale_bridges(str(self.data_root)):
            log.info("removing bridge %s left by a berthd on %s (gone)", bridge, root)
            netlink.delete_link(bridge)
            tables.add(table_name(instance_of(Path(root))))
        for table in tables:
            try:
                if shutil.which("nft"):
                    nat.apply(nat.render_delete(table))
                iptables.remove(iptables.Binaries(iptables.backend().replace("nftables", "iptables")), table)
                forward.sync(forward.chain_name(table), [])
            except RuntimeFailure as e:
                log.warning("%s", e)

    @staticmethod
    def enable_forwarding(ipv6: bool = False) -> None:
        """IPv4 forwarding (and IPv6's, when a network has IPv6), as dockerd's ip-forward."""
        keys = [("net.ipv4.ip_forward", "IPv4")] + ([("net.ipv6.conf.all.forwarding", "IPv6")] if ipv6 else [])
        for key, family in keys:
            try:
                if read_sysctl(key) != "1":
                    write_sysctl(key, "1")
            except OSError as e:
                log.warning("cannot enable %s forwarding: %s", family, e)

    @staticmethod
    def enable_bridge_netfilter() -> None:
        """Bridged IPv4/IPv6 through the ip and ip6 hooks (br_netfilter), as dockerd sets it
        for a bridge with icc=false: traffic between two ports of one bridge never reaches a
        forward chain otherwise."""
        for key in ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"):
            try:
                if read_sysctl(key) != "1":
                    write_sysctl(key, "1")
            except OSError as e:
                log.warning("icc=false is not enforced: cannot set %s (is br_netfilter loaded?): %s", key, e)

    # -- rules ------------------------------------------------------------------------------

    async def apply_nat(self, ruleset: str) -> None:
        await self.run(nat.apply, ruleset)

    async def apply_iptables(self, flavour: str, table: str, bridges: list[nat.BridgeRules],
                             ports: list[nat.PortRule], ipv6: bool) -> None:
        await self.run(iptables.apply, iptables.Binaries(flavour), table, bridges, ports, ipv6)

    async def remove_iptables(self, flavour: str, table: str) -> None:
        await self.run(iptables.remove, iptables.Binaries(flavour), table)

    async def sync_forward(self, tag: str, bridges: list[str]) -> None:
        await self.run(forward.sync, tag, bridges)

    # -- namespaces and endpoints -----------------------------------------------------------

    async def new_netns(self) -> tuple[int, str]:
        """A fresh network namespace, held by an fd of berthd -> (fd, path for the spec). One
        made ahead if there is one (``SPARE_NETNS``), with a netlink socket opened inside it
        for the plug; the pool refills after each start."""
        if self._spare:
            fd, sock = self._spare.pop()
        else:
            try:
                fd, sock = await asyncio.get_running_loop().run_in_executor(None, _make_netns)
            except OSError as e:
                raise RuntimeFailure(f"failed to create a network namespace: {os_text(e)}") from None
        path = f"/proc/{os.getpid()}/fd/{fd}"
        self._inside[path] = sock
        return fd, path

    def release_netns(self, fd: int) -> None:
        """berthd lets go of a namespace it made (the init holds it once it joined)."""
        sock = self._inside.pop(f"/proc/{os.getpid()}/fd/{fd}", None)
        # Both go after any plug still queued on the netlink thread (a cancelled start): a plug
        # must never find the fd closed, or worse, its number reused by another file (EINVAL).
        try:
            self._pool.submit(_close_all, sock, fd)
        except RuntimeError:                    # the netlink thread is gone (berthd stopping)
            _close_all(sock, fd)
        self._refill()

    def _refill(self) -> None:
        if self._filling or self._closed or len(self._spare) >= SPARE_NETNS:
            return
        self._filling = True
        asyncio.get_running_loop().create_task(self._fill())

    async def _fill(self) -> None:
        try:
            while len(self._spare) < SPARE_NETNS and not self._closed:
                made = await asyncio.get_running_loop().run_in_executor(None, _make_netns)
                if self._closed:
                    _drop(*made)
                    break
                self._spare.append(made)
        except OSError as e:
            log.warning("making a network namespace ahead: %s", e)
        finally:
            self._filling = False

    async def plug(self, p: Plug) -> None:
        from berth.network import netlink

        try:
            await self.run(netlink.add_endpoint, p.bridge, p.host_if, p.ns_path, p.ifname, p.mac, p.ip,
                           p.prefixlen, p.gateway, p.mtu, self._inside.get(p.ns_path))
            if p.ip6:
                await self.run(netlink.add_endpoint6, p.ns_path, p.ifname, p.ip6, p.prefixlen6, p.gateway6)
        except OSError as ex:
            raise RuntimeFailure(f"failed to set up container networking: {os_text(ex)}") from None

    async def unplug(self, host_if: str) -> None:
        from berth.network import netlink

        await self.run(netlink.remove_endpoint, host_if)

    # -- embedded DNS -----------------------------------------------------------------------

    async def serve_dns(self, cid: str, ns_path: str, upstreams: list[str] | None) -> None:
        if self.dns is None:
            from berth.network.dns.server import DnsServer

            self.dns = DnsServer(self.lookup)
        try:
            await self.dns.serve(cid, ns_path, upstreams)
        except OSError as e:
            log.warning("embedded DNS for %s: %s", cid[:12], e)

    def serving_dns(self, cid: str) -> bool:
        return self.dns is not None and cid in self.dns.transports

    def close_dns(self, cid: str) -> None:
        if self.dns is not None:
            self.dns.close(cid)   # the socket pins the namespace: close it first

    def close_all_dns(self) -> None:
        if self.dns is not None:
            self.dns.close_all()
