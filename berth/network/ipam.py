"""IP address management (pure): choosing subnets and handing out addresses.

Terms: a network's *pool* is its subnet (``172.18.0.0/16``); the *range* (``--ip-range``) is the
part of it that automatic allocation draws from; the *gateway* is the bridge's own address.
Addresses are handed out in order from a *cursor* that only moves forward (wrapping at the end
of the range), as Docker's bit-sequence allocator does: a released address is not reused
until every other one has been, so a name that still resolves to a stale address never finds a
new container behind it. The cursor is stored with the network, so this survives restarts; the
set of addresses in use is rebuilt from the endpoints.

    subnet = choose_subnet(in_use=[...])              # 172.17.0.0/16 unless that is taken
    addr, cursor = allocate(subnet, None, gateway, taken, cursor)

IPv6 works the same way over an IPv6 subnet (``parse_subnet6``; ``allocate`` and ``request``
take either family). A network with IPv6 but no subnet given gets a random ULA /64
(``ula_subnet``), as dockerd 27+ does from its default fd00::/8 pool.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import TypeVar

from berth.errors import Conflict, InvalidArgument

# Docker's default address pools: 172.17-31.0.0/16, then 192.168.0.0/20 steps.
DEFAULT_POOLS: tuple[IPv4Network, ...] = tuple(
    [IPv4Network(f"172.{n}.0.0/16") for n in range(17, 32)]
    + [IPv4Network(f"192.168.{n}.0/20") for n in range(0, 256, 16)]
)


Addr = TypeVar("Addr", IPv4Address, IPv6Address)
Net = IPv4Network | IPv6Network


class PoolExhausted(Conflict):
    pass


def _parse_net(text: str) -> Net:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid subnet {text}: invalid CIDR address: {text}") from None


def _check_size(net: Net, text: str, smallest: int) -> None:
    if net.prefixlen > smallest:
        raise InvalidArgument(f"subnet {text} is too small: a network needs at least a /{smallest}")


def parse_subnet(text: str) -> IPv4Network:
    net = _parse_net(text)
    if not isinstance(net, IPv4Network):
        raise InvalidArgument(f"IPv6 subnets are not supported: {text}")
    _check_size(net, text, 30)
    return net


def parse_subnet6(text: str) -> IPv6Network:
    net = _parse_net(text)
    if not isinstance(net, IPv6Network):
        raise InvalidArgument(f"invalid IPv6 subnet {text}")
    _check_size(net, text, 126)
    return net


def parse_address6(text: str, what: str = "IPv6 address") -> IPv6Address:
    try:
        return IPv6Address(text.split("/")[0].strip("[]"))
    except ValueError:
        raise InvalidArgument(f"invalid {what} {text}") from None


def ula_subnet(in_use: Iterable[IPv6Network]) -> IPv6Network:
    """A random unique local /64 (RFC 4193) that overlaps nothing in ``in_use``."""
    used = list(in_use)
    while True:
        net = IPv6Network((int.from_bytes(b"\xfd" + secrets.token_bytes(5) + b"\0\0", "big") << 64, 64))
        if not any(net.overlaps(u) for u in used):
            return net


def parse_address(text: str, what: str = "address") -> IPv4Address:
    try:
        return IPv4Address(text.split("/")[0])
    except ValueError:
        raise InvalidArgument(f"invalid {what} {text}") from None


def expand_pools(pools: Iterable[tuple[IPv4Network, int]]) -> Iterable[IPv4Network]:
    """daemon.json's default-address-pools ((base, size) pairs) as the subnets they hand out,
    lazily (10.0.0.0/8 in /24s is 65536 of them)."""
    for base, size in pools:
        yield from base.subnets(new_prefix=size)


def unusable_pools(pools: Iterable[tuple[IPv4Network, int]],
                   host: Iterable[IPv4Network]) -> list[tuple[IPv4Network, IPv4Network]]:
    """The pools whose every subnet overlaps a host network: [(pool base, a route in the way)]."""
    used = list(host)
    out = []
    for base, size in pools:
        hits = [u for u in used if base.overlaps(u)]
        if hits and all(any(s.overlaps(u) for u in hits) for s in base.subnets(new_prefix=size)):
            out.append((base, hits[0]))
    return out


def choose_subnet(in_use: Iterable[IPv4Network],
                  pools: Iterable[IPv4Network] = DEFAULT_POOLS) -> IPv4Network:
    """The first default pool that overlaps nothing in use (host routes and addresses, other
    networks). Raises PoolExhausted."""
    used = list(in_use)
    for pool in pools:
        if not any(pool.overlaps(u) for u in used):
            return pool
    raise PoolExhausted("all predefined address pools have been fully subnetted")


def default_gateway(subnet: IPv4Network) -> IPv4Address:
    return subnet.network_address + 1


def check_config(subnet: Net, gateway: IPv4Address | IPv6Address | None, ip_range: Net | None) -> None:
    if gateway is not None and gateway not in subnet:
        raise InvalidArgument(f"no matching subnet for gateway {gateway}")
    if ip_range is not None and (ip_range.version != subnet.version or not ip_range.subnet_of(subnet)):  # type: ignore[arg-type]
        raise InvalidArgument(f"no matching subnet for range {ip_range}")


def allocate(subnet: Net, ip_range: Net | None, taken: set[Addr], cursor: int) -> tuple[Addr, int]:
    """The next free address after ``cursor`` (an offset into the range), wrapping once.

    -> (address, new cursor). The network and broadcast addresses of the subnet are never
    handed out; ``taken`` must hold the gateway and every address in use.
    Raises PoolExhausted when the range is full.
    """
    rng = ip_range or subnet
    make = type(subnet.network_address)
    first = int(rng.network_address)
    size = rng.num_addresses
    lo, hi = int(subnet.network_address), int(subnet.broadcast_address)
    taken_ints = {int(a) for a in taken}
    for step in range(size):
        off = (cursor + step) % size
        a = first + off
        if a <= lo or a >= hi or a in taken_ints:
            continue
        return make(a), off + 1  # type: ignore[return-value]
    raise PoolExhausted(f"no available IPv{subnet.version} addresses on this network's address pools: {subnet}")


def request(subnet: Net, addr: Addr, taken: set[Addr]) -> Addr:
    """A specific address (``--ip``). Raises InvalidArgument or Conflict."""
    if addr not in subnet or addr in (subnet.network_address, subnet.broadcast_address):
        raise InvalidArgument(f"no configured subnet or ip-range contain the IP address {addr}")
    if addr in taken:
        raise Conflict(f"Address already in use: {addr}")
    return addr


def mac_for(addr: IPv4Address) -> str:
    """Docker's generated MAC: 02:42 followed by the IPv4 address."""
    return "02:42:" + ":".join(f"{b:02x}" for b in addr.packed)
