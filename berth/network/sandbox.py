"""The kernel side of berth's networks: bridges, network namespaces, veth endpoints, the NAT
and forward rules, and the embedded DNS sockets. ``engine.networks`` keeps the records and the
address management, and asks this module for the kernel objects, with plain values (names,
addresses, paths): nothing here knows a record.

Netlink work runs on one thread (``Kernel.run``), so that the asyncio loop never blocks on it
and netlink requests never interleave.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from berth.errors import RuntimeFailure, os_text
from berth.network import forward, nat

if TYPE_CHECKING:
    from berth.network.dns.server import DnsServer, Lookup

log = logging.getLogger("berth.network")

T = TypeVar("T")


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


class Kernel:
    """The kernel objects of one berthd's networks."""

    def __init__(self, data_root: Path, lookup: Lookup):
        self.data_root = data_root
        self.lookup = lookup
        self.dns: DnsServer | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="netlink")

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on the netlink thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # -- bridges ----------------------------------------------------------------------------

    async def bridge_up(self, bridge: str, gateway: str, prefixlen: int, mtu: int | None) -> None:
        from berth.network import netlink

        await self.run(netlink.ensure_bridge, bridge, gateway, prefixlen, mtu, str(self.data_root))

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
                nat.apply(nat.render_delete(table))
                forward.sync(forward.chain_name(table), [])
            except RuntimeFailure as e:
                log.warning("%s", e)

    @staticmethod
    def enable_forwarding() -> None:
        try:
            from berth.linux.netns import read_sysctl, write_sysctl

            if read_sysctl("net.ipv4.ip_forward") != "1":
                write_sysctl("net.ipv4.ip_forward", "1")
        except OSError as e:
            log.warning("cannot enable IPv4 forwarding: %s", e)

    # -- rules ------------------------------------------------------------------------------

    async def apply_nat(self, ruleset: str) -> None:
        await self.run(nat.apply, ruleset)

    async def sync_forward(self, tag: str, bridges: list[str]) -> None:
        await self.run(forward.sync, tag, bridges)

    # -- namespaces and endpoints -----------------------------------------------------------

    @staticmethod
    async def new_netns() -> tuple[int, str]:
        """A fresh network namespace, held by an fd of berthd -> (fd, path for the spec)."""
        from berth.linux.netns import new_netns

        try:
            fd = await asyncio.get_running_loop().run_in_executor(None, new_netns)
        except OSError as e:
            raise RuntimeFailure(f"failed to create a network namespace: {e}") from None
        return fd, f"/proc/{os.getpid()}/fd/{fd}"

    @staticmethod
    def release_netns(fd: int) -> None:
        """berthd lets go of a namespace it made (the init holds it once it joined)."""
        os.close(fd)

    async def plug(self, p: Plug) -> None:
        from berth.network import netlink

        try:
            await self.run(netlink.add_endpoint, p.bridge, p.host_if, p.ns_path, p.ifname, p.mac, p.ip,
                           p.prefixlen, p.gateway, p.mtu)
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
