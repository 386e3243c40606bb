"""The host side of berth's networks, from the records: one Linux bridge per bridge network,
the NAT table (masquerade, isolation, published ports) and the accept rules in other firewalls'
forward paths. ``network.sandbox.Kernel`` makes the objects; this module decides which, and
redoes the rules from the records whenever they change.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from ipaddress import IPv4Interface, IPv4Network, IPv6Network

from berth.engine.network_ipam import assign_subnet, configured
from berth.engine.network_records import IPAMConfig, Network, NetworkTable
from berth.errors import RuntimeFailure
from berth.network import forward, iptables, nat
from berth.network.sandbox import Kernel, table_name
from berth.state import rootless

log = logging.getLogger("berth.network")


class Bridges:
    """Bridges and rules of one berthd (its nftables table is named after its instance)."""

    def __init__(self, table: NetworkTable, kernel: Kernel, instance: str):
        self.table = table
        self.kernel = kernel
        self.nft_table = table_name(instance)
        self.forward_tag = forward.chain_name(self.nft_table)
        self._forward_bridges: frozenset[str] | None = None   # what forward.sync last got
        self._rules_lock = asyncio.Lock()
        self.ready = False
        # daemon.json: iptables=false writes no rule at all; ip6tables=false none for IPv6;
        # ip-forward=false leaves the forwarding sysctls alone. The back end (nftables or an
        # iptables flavour, network.iptables.backend) is chosen at setup.
        self.iptables = True
        self.ip6tables = True
        self.ip_forward = True
        self.backend = ""
        self._setup: asyncio.Task[None] | None = None  # setup() in the background (berthd start)

    async def assign_subnet(self, n: Network) -> None:
        """``n``'s subnet: the configured one, or a pool that avoids the host's routes."""
        host: list[IPv4Network] = []
        if configured(n) is None:
            host = await self.kernel.host_networks({o.bridge for o in self.table.nets.values() if o.bridge})
        assign_subnet(self.table, n, host)

    async def up(self, n: Network) -> None:
        if not n.bridge or not n.subnet:
            return
        mtu = n.options.get("com.docker.network.driver.mtu")
        await self.kernel.bridge_up(n.bridge, n.gateway, IPv4Network(n.subnet).prefixlen, int(mtu) if mtu else None)
        if n.enable_ipv6 and n.subnet6:
            await self.kernel.bridge_up6(n.bridge, n.gateway6, IPv6Network(n.subnet6).prefixlen)
            if self.ip_forward:
                self.kernel.enable_forwarding(ipv6=True)

    async def down(self, n: Network) -> None:
        if n.bridge:
            await self.kernel.bridge_down(n.bridge)

    async def setup(self) -> None:
        """At berthd start: the default bridge's subnet (first time), bridges, forwarding, rules."""
        await self.kernel.sweep_stale()
        default = self.table.get("bridge")
        if not default.subnet:
            await self.assign_subnet(default)
            self.table.save_net(default)
        if self.iptables and not self.backend:
            self.backend = iptables.backend()
            log.info("firewall back end: %s", self.backend)
        for n in list(self.table.nets.values()):   # a create may come in while this awaits
            if n.is_bridge:
                await self.up(n)
        if self.ip_forward:
            self.kernel.enable_forwarding()
        self.ready = True
        await self.apply_rules()

    async def ensure_ready(self) -> None:
        """The kernel side is set up (setup(), once; the first caller starts it, the others
        wait for it). A setup that failed is tried again by the next caller."""
        if self.ready:
            return
        if self._setup is None:
            self._setup = asyncio.ensure_future(self.setup())
        task = self._setup
        try:
            await asyncio.shield(task)
        except Exception:
            if self._setup is task:
                self._setup = None
            raise

    def setup_soon(self) -> None:
        """Start setup() in the background (berthd start: requests need not wait for it)."""
        if self.ready or self._setup is not None:
            return
        self._setup = asyncio.ensure_future(self.setup())

        def done(t: asyncio.Task[None]) -> None:
            if not t.cancelled() and t.exception() is not None:
                log.error("network setup: %s (tried again at the next start of a container)", t.exception())
                if self._setup is t:
                    self._setup = None
        self._setup.add_done_callback(done)

    async def settle(self) -> None:
        """berthd stops: a background setup still running is let finish (one cut short would
        leave half its objects behind)."""
        if self._setup is not None and not self._setup.done():
            try:
                await self._setup
            except Exception:  # noqa: BLE001 - logged by its done callback
                pass

    async def apply_rules(self) -> None:
        """The NAT rules again, from the records: every bridge, every running container's ports."""
        if not self.ready or not self.iptables:
            return
        async with self._rules_lock:
            bridges, rules = self._rules()
            if not all(b.icc for b in bridges):
                self.kernel.enable_bridge_netfilter()   # bridged traffic must reach the icc drop
            if self.backend == "nftables":
                if not self.ip6tables:
                    bridges = [dataclasses.replace(b, subnet6="") for b in bridges]
                await self.kernel.apply_nat(nat.render(self.nft_table, bridges, rules))
            else:
                await self.kernel.apply_iptables(self.backend, self.nft_table, bridges, rules, self.ip6tables)
            await self._sync_forward(frozenset(b.bridge for b in bridges))

    def _rules(self) -> tuple[list[nat.BridgeRules], list[nat.PortRule]]:
        t = self.table
        bridges = [nat.BridgeRules(n.bridge, n.subnet, n.internal,
                                   n.options.get("com.docker.network.bridge.enable_ip_masquerade", "true") != "false",
                                   n.subnet6 if n.enable_ipv6 else "",
                                   n.options.get("com.docker.network.bridge.enable_icc", "true") != "false")
                   for n in t.nets.values() if n.is_bridge and n.subnet]
        rules = []
        for cid in t.running:
            s = t.sandboxes.get(cid)
            if s is None or not s.ports:
                continue
            ep = s.endpoints[0] if s.endpoints else None   # ports are published on the first one
            if ep is None or not ep.ip:
                continue
            for p in s.ports:
                to = ep.ip6 if ":" in p.host_ip else ep.ip
                if to:
                    rules.append(nat.PortRule(p.proto, _rule_ip(p.host_ip), p.host_port, to, p.container_port))
        return bridges, rules

    async def _sync_forward(self, bridges: frozenset[str]) -> None:
        """Accept rules in other firewalls' forward paths (forward.py), redone only when the
        set of bridges changes: not on the container start path."""
        if bridges == self._forward_bridges:
            return
        self._forward_bridges = bridges
        try:
            await self.kernel.sync_forward(self.forward_tag, sorted(bridges))
        except RuntimeFailure as e:
            log.warning("forward rules for berth's bridges: %s", e)

    async def teardown(self) -> None:
        """berthd stops with no container running: every rule and bridge goes (the next start
        makes them again)."""
        if not self.ready:
            return
        if self.iptables:
            try:
                if self.backend == "nftables":
                    await self.kernel.apply_nat(nat.render_delete(self.nft_table))
                else:
                    await self.kernel.remove_iptables(self.backend, self.nft_table)
            except RuntimeFailure as e:
                log.warning("%s", e)
            await self._sync_forward(frozenset())
        for n in list(self.table.nets.values()):
            if n.is_bridge:
                await self.down(n)


def configure_default(table: NetworkTable, bip: str, fixed_cidr: str, mtu: int, ip_masq: bool, icc: bool,
                      ipv6: bool = False, fixed_cidr_v6: str = "") -> None:
    """daemon.json's settings of the default bridge (``bip``, ``fixed-cidr``, ``mtu``, ``ip-masq``,
    ``icc``, ``ipv6`` with ``fixed-cidr-v6``), written into its record before the bridge comes
    up. A changed ``bip`` moves the bridge only while no container is attached to it (else the
    old subnet stays, logged)."""
    n = table.get("bridge")
    _configure_default6(table, n, ipv6, fixed_cidr_v6)
    opts = dict(n.options)
    opts["com.docker.network.driver.mtu"] = str(mtu or 1500)
    opts["com.docker.network.bridge.enable_ip_masquerade"] = "true" if ip_masq else "false"
    opts["com.docker.network.bridge.enable_icc"] = "true" if icc else "false"
    changed = opts != n.options
    n.options = opts
    if bip:
        iface = IPv4Interface(bip)
        subnet, gateway, rng = str(iface.network), str(iface.ip), fixed_cidr
        if (n.subnet, n.gateway, n.ip_range) != (subnet, gateway, rng):
            if table.containers_on(n):
                log.warning("bip %s not applied: containers are attached to the default bridge (%s)", bip, n.subnet)
            else:
                n.subnet, n.gateway, n.ip_range = subnet, gateway, rng
                n.ipam_config = [IPAMConfig(Subnet=subnet, Gateway=gateway, IPRange=rng)]
                changed = True
    elif fixed_cidr and n.ip_range != fixed_cidr and not table.containers_on(n):
        n.ip_range = fixed_cidr
        changed = True
    if changed:
        table.save_net(n)


def _configure_default6(table: NetworkTable, n: Network, ipv6: bool, fixed_cidr_v6: str) -> None:
    """``ipv6`` and ``fixed-cidr-v6``: the default bridge's IPv6 subnet (its gateway the first
    address), changed only while no container is attached."""
    subnet = str(IPv6Network(fixed_cidr_v6, strict=False)) if ipv6 and fixed_cidr_v6 else ""
    if (n.enable_ipv6, n.subnet6) == (bool(subnet), subnet):
        return
    if table.containers_on(n):
        log.warning("ipv6/fixed-cidr-v6 not applied: containers are attached to the default bridge")
        return
    n.enable_ipv6, n.subnet6 = bool(subnet), subnet
    n.gateway6 = str(IPv6Network(subnet).network_address + 1) if subnet else ""
    n.cursor6 = 0
    n.ipam_config = [c for c in n.ipam_config if ":" not in c.Subnet]
    if subnet:
        n.ipam_config.append(IPAMConfig(Subnet=subnet, Gateway=n.gateway6))
    table.save_net(n)


def _rule_ip(host_ip: str) -> str:
    """The address a port's DNAT matches. A rootless engine's slirp4netns delivers what reaches
    the host's 127.0.0.1 (the only address it forwards such a port from) to its tap address."""
    if host_ip.startswith("127.") and rootless.net_driver() == "slirp4netns":
        return ""
    return host_ip
