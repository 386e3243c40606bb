"""Address management over the network records: a new network's subnet and gateway, a
container's address and MAC on each of its networks, and the checks of the endpoint settings a
client sends (``--ip``, ``--alias``, ``--mac-address``, ``GwPriority``). The arithmetic is
``network.ipam``'s; this module knows which addresses the records already hold.
"""

from __future__ import annotations

import re
import secrets
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

from berth.engine.network_records import (ContainerView, Endpoint, IPAMConfig, Network, NetworkTable, NoSuchNetwork,
                                          Sandbox)
from berth.errors import InvalidArgument, PermissionDenied
from berth.network import ipam

_MAC = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")


def assign_subnet(table: NetworkTable, n: Network, host: list[IPv4Network]) -> None:
    """Give ``n`` its subnet and gateway: the configured ones (checked), or the first free pool
    that overlaps neither another network nor ``host`` (the host's routes).

    Raises InvalidArgument, PermissionDenied (overlap).
    """
    assign_subnet6(table, n)
    cfg = configured(n)
    others = [IPv4Network(o.subnet) for o in table.nets.values() if o.subnet and o.id != n.id]
    if cfg is None:
        pools = ipam.expand_pools(table.pools) if table.pools else ipam.DEFAULT_POOLS
        subnet = ipam.choose_subnet(others + host, pools)
        n.subnet, n.gateway = str(subnet), str(ipam.default_gateway(subnet))
        return
    subnet = ipam.parse_subnet(cfg.Subnet)
    gw = ipam.parse_address(cfg.Gateway, "gateway") if cfg.Gateway else None
    rng = ipam.parse_subnet(cfg.IPRange) if cfg.IPRange else None
    ipam.check_config(subnet, gw, rng)
    if any(subnet.overlaps(o) for o in others):
        raise PermissionDenied("invalid pool request: Pool overlaps with other one on this address space")
    n.user_subnet = True
    n.subnet, n.gateway = str(subnet), str(gw or ipam.default_gateway(subnet))
    n.ip_range = str(rng) if rng else ""
    n.aux = [a for a in (cfg.AuxiliaryAddresses or {}).values()]


def assign_subnet6(table: NetworkTable, n: Network) -> None:
    """``n``'s IPv6 subnet and gateway when it has IPv6: the configured ones (checked), or a
    random ULA /64. Raises InvalidArgument, PermissionDenied (overlap)."""
    cfg = configured6(n)
    if cfg is not None and not n.enable_ipv6:
        raise InvalidArgument("an IPv6 subnet needs IPv6 enabled on the network (--ipv6)")
    if not n.enable_ipv6:
        return
    others = [IPv6Network(o.subnet6) for o in table.nets.values() if o.subnet6 and o.id != n.id]
    if cfg is None:
        subnet = ipam.ula_subnet(others)
        n.subnet6, n.gateway6 = str(subnet), str(subnet.network_address + 1)
        return
    subnet = ipam.parse_subnet6(cfg.Subnet)
    gw = ipam.parse_address6(cfg.Gateway, "gateway") if cfg.Gateway else None
    rng = ipam.parse_subnet6(cfg.IPRange) if cfg.IPRange else None
    ipam.check_config(subnet, gw, rng)
    if any(subnet.overlaps(o) for o in others):
        raise PermissionDenied("invalid pool request: Pool overlaps with other one on this address space")
    n.user_subnet6 = True
    n.subnet6, n.gateway6 = str(subnet), str(gw or subnet.network_address + 1)
    n.ip_range6 = str(rng) if rng else ""


def configured6(n: Network) -> IPAMConfig | None:
    """The network's first IPv6 IPAM config, or None."""
    return next((c for c in n.ipam_config if ":" in c.Subnet), None)


def configured(n: Network) -> IPAMConfig | None:
    """The network's first IPv4 IPAM config, or None (berth then picks a pool)."""
    return next((c for c in n.ipam_config if c.Subnet and ":" not in c.Subnet), None)


def taken(table: NetworkTable, n: Network, but: str = "") -> set[IPv4Address]:
    """The addresses of ``n`` that are not free: the gateway, the auxiliary ones, and every
    container's but ``but``'s."""
    out = {IPv4Address(n.gateway)} if n.gateway else set()
    out |= {IPv4Address(a) for a in n.aux}
    for cid, s in table.sandboxes.items():
        if cid == but:
            continue
        e = s.endpoint(n.id)
        if e is not None and e.ip:
            out.add(IPv4Address(e.ip))
    return out


def taken6(table: NetworkTable, n: Network, but: str = "") -> set[IPv6Address]:
    """As ``taken``, for the network's IPv6 subnet."""
    out = {IPv6Address(n.gateway6)} if n.gateway6 else set()
    for cid, s in table.sandboxes.items():
        e = s.endpoint(n.id) if cid != but else None
        if e is not None and e.ip6:
            out.add(IPv6Address(e.ip6))
    return out


def _allocate6(table: NetworkTable, s: Sandbox, e: Endpoint, n: Network) -> None:
    held = taken6(table, n, but=s.container_id)
    subnet = IPv6Network(n.subnet6)
    if e.ipv6:
        e.ip6 = str(ipam.request(subnet, IPv6Address(e.ipv6), held))
        return
    rng = IPv6Network(n.ip_range6) if n.ip_range6 else None
    addr, n.cursor6 = ipam.allocate(subnet, rng, held, n.cursor6)
    e.ip6 = str(addr)


def allocate(table: NetworkTable, s: Sandbox, e: Endpoint) -> None:
    """Give the endpoint its address (the requested one, or the next free one after the
    network's cursor), its MAC and its ID. Raises NoSuchNetwork, Conflict (address in use)."""
    n = table.nets.get(e.network_id)
    if n is None:
        raise NoSuchNetwork(f"network {e.network_id} not found")
    held = taken(table, n, but=s.container_id)
    subnet = IPv4Network(n.subnet)
    if e.ipv4:
        addr = ipam.request(subnet, IPv4Address(e.ipv4), held)
    else:
        rng = IPv4Network(n.ip_range) if n.ip_range else None
        addr, n.cursor = ipam.allocate(subnet, rng, held, n.cursor)
        table.save_net(n)
    e.ip = str(addr)
    e.ip6 = ""
    if n.enable_ipv6 and n.subnet6:
        _allocate6(table, s, e, n)
        table.save_net(n)
    e.mac = e.mac_req or ipam.mac_for(addr)
    e.endpoint_id = secrets.token_hex(32)


def endpoint_from(n: Network, cfg: dict[str, Any] | None, cv: ContainerView) -> Endpoint:
    """An endpoint on ``n`` from a client's endpoint settings (as Docker's EndpointSettings).

    Raises InvalidArgument.
    """
    cfg = cfg or {}
    ipc = cfg.get("IPAMConfig") or {}
    ip = ipc.get("IPv4Address") or ""
    ip6 = ipc.get("IPv6Address") or ""
    aliases = list(cfg.get("Aliases") or [])
    links = list(cfg.get("Links") or [])
    mac = cfg.get("MacAddress") or cv.mac or ""
    if n.predefined:
        if ip:
            raise InvalidArgument("user specified IP address is supported on user defined networks only")
        if aliases:
            raise InvalidArgument("network-scoped alias is supported only for containers in user defined networks")
    if ip:
        if not n.user_subnet:
            raise InvalidArgument("user specified IP address is supported only when connecting to networks "
                                  "with user configured subnets")
        addr = ipam.parse_address(ip, "IPv4 address")
        if addr not in IPv4Network(n.subnet):
            raise InvalidArgument(f"no configured subnet or ip-range contain the IP address {ip}")
    if ip6:
        _check_ip6(n, ip6)
    if mac and not _MAC.match(mac):
        raise InvalidArgument(f"invalid MAC address: {mac}")
    try:
        prio = int(cfg.get("GwPriority") or 0)
    except (TypeError, ValueError):
        raise InvalidArgument(f"invalid GwPriority: {cfg.get('GwPriority')!r}") from None
    return Endpoint(network_id=n.id, aliases=aliases, links=links, ipv4=ip, mac_req=mac.lower(),
                    driver_opts=cfg.get("DriverOpts"), gw_priority=prio, ipv6=ip6)


def _check_ip6(n: Network, ip6: str) -> None:
    """``--ip6``: on a user-defined IPv6 network whose IPv6 subnet was given. Raises InvalidArgument."""
    if n.predefined:
        raise InvalidArgument("user specified IP address is supported on user defined networks only")
    if not n.enable_ipv6 or not n.user_subnet6:
        raise InvalidArgument("user specified IP address is supported only when connecting to networks "
                              "with user configured subnets")
    if ipam.parse_address6(ip6) not in IPv6Network(n.subnet6):
        raise InvalidArgument(f"no configured subnet or ip-range contain the IP address {ip6}")


def gateway_endpoint(table: NetworkTable, s: Sandbox) -> Endpoint | None:
    """The endpoint whose network gives the default route: the highest GwPriority (API 1.48)
    among the non-internal ones, the first on a tie."""
    cands = [x for x in s.endpoints if x.network_id in table.nets and not table.nets[x.network_id].internal]
    return max(cands, key=lambda x: x.gw_priority, default=None)


def release(s: Sandbox) -> None:
    """The container stopped: its endpoints keep their settings, not their addresses."""
    for e in s.endpoints:
        e.ip = e.ip6 = e.host_if = e.ifname = e.endpoint_id = ""
        e.mac = ""
