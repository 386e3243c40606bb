"""Links, addresses and routes through netlink: bridges and veth endpoints.

A container's veth (``add_endpoint``, ``remove_endpoint``: every start on a bridge) goes
through raw rtnetlink messages (``linux.rtnl``) on one socket kept by the netlink thread; the
rarer work (bridges, the host's routes, listing) through pyroute2, which runs an event loop of
its own inside each call. These are blocking calls: the engine makes them from one worker
thread (``network.sandbox.Kernel`` owns it), never on berthd's asyncio thread. Work inside a
container's network namespace uses a socket opened there by a thread that joined it
(``linux.netns``).

    ensure_bridge("br-1a2b3c4d5e6f", "172.18.0.1", 16)
    add_endpoint("br-1a2b...", "veth1a2b3c4", "/proc/4242/ns/net", "eth0", "02:42:ac:12:00:02",
                 "172.18.0.2", 16, "172.18.0.1")
    remove_endpoint("veth1a2b3c4")        # the peer in the container goes with it
    delete_link("br-1a2b3c4d5e6f")
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import threading
from ipaddress import IPv4Network
from typing import Any

from berth.linux import netns, rtnl

_local = threading.local()
log = logging.getLogger("berth.network")


def _iproute() -> Any:
    """pyroute2's IPRoute class. ~200 ms to import: never on berthd's start-up path. Its
    import sets the "pyroute2" logger to level 0 (pyroute2/config/log.py), which under a
    debug root logs every message it sends: quieted after the import, not before."""
    from pyroute2 import IPRoute

    logging.getLogger("pyroute2").setLevel(logging.WARNING)
    return IPRoute


def _ipr() -> Any:
    ipr = getattr(_local, "ipr", None)
    if ipr is None:
        ipr = _local.ipr = _iproute()()
    return ipr


def _index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def link_exists(name: str) -> bool:
    return _index(_ipr(), name) is not None


def ensure_bridge(name: str, address: str, prefixlen: int, mtu: int | None = None, owner: str = "") -> None:
    """Create the bridge if missing, give it its gateway address, bring it up. ``owner`` is
    written as the link's alias (``berth:<data root>``), so a later berthd can tell a bridge
    left by a berthd that is gone for good (see ``stale_bridges``)."""
    ipr = _ipr()
    idx = _index(ipr, name)
    if idx is None:
        kw: dict[str, Any] = {"ifname": name, "kind": "bridge"}
        if mtu:
            kw["mtu"] = mtu
        ipr.link("add", **kw)
        idx = _index(ipr, name)
        assert idx is not None
        if owner:
            ipr.link("set", index=idx, ifalias=f"berth:{owner}")
    have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=idx, family=2)}
    if (address, prefixlen) not in have:
        ipr.addr("add", index=idx, address=address, prefixlen=prefixlen)
    ipr.link("set", index=idx, state="up")
    # Connections from the host to 127.0.0.1:<published port> are DNATed out of this bridge.
    try:
        netns.write_sysctl(f"net.ipv4.conf.{name}.route_localnet", "1")
    except OSError:
        pass


def delete_link(name: str) -> None:
    ipr = _ipr()
    idx = _index(ipr, name)
    if idx is not None:
        try:
            ipr.link("del", index=idx)
        except Exception as e:  # pyroute2's NetlinkError: gone meanwhile
            if getattr(e, "code", None) not in (errno.ENODEV, errno.ENOENT):
                raise


def _rtnl() -> rtnl.Rtnl:
    """The netlink thread's own raw socket, in berthd's namespace, made once."""
    sock = getattr(_local, "rtnl", None)
    if sock is None:
        sock = _local.rtnl = rtnl.Rtnl()
    return sock


def add_endpoint(bridge: str, host_if: str, ns_path: str, ifname: str, mac: str, address: str,
                 prefixlen: int, gateway: str | None, mtu: int | None = None,
                 inside: rtnl.Rtnl | None = None) -> None:
    """A veth pair: ``host_if`` on the bridge, ``ifname`` in the namespace with its address,
    MAC and (when ``gateway``) the default route. Raw rtnetlink: one request in berthd's
    namespace, one batch in the container's, through ``inside`` (a socket already opened in
    that namespace) or one opened now."""
    host = _rtnl()
    master = rtnl.if_index(bridge)
    fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            host.add_veth(host_if, ifname, fd, mac, master, mtu)
        except FileExistsError:  # left by a berthd killed before the namespace went
            host.delete_link(host_if)
            host.add_veth(host_if, ifname, fd, mac, master, mtu)
        except OSError as e:
            log.warning("add veth %s (bridge %s, index %d; namespace %s -> %s): %s", host_if, bridge, master,
                        ns_path, _target(fd), e)
            raise
    finally:
        os.close(fd)
    try:
        if inside is None:
            with netns.run_in_netns(ns_path, rtnl.Rtnl) as sock:
                sock.configure(ifname, address, prefixlen, gateway)
        else:
            inside.configure(ifname, address, prefixlen, gateway)
    except BaseException:
        host.delete_link(host_if)
        raise


def _target(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError as e:
        return str(e)


IFA_F_NODAD = 0x02   # no duplicate address detection: the address works at once (as libnetwork)


def add_address6(name: str, address: str, prefixlen: int) -> None:
    """An IPv6 address on a host link (a bridge's gateway), IPv6 switched on for it."""
    try:
        netns.write_sysctl(f"net.ipv6.conf.{name}.disable_ipv6", "0")
    except OSError:
        pass
    ipr = _ipr()
    idx = _index(ipr, name)
    if idx is None:
        raise OSError(errno.ENODEV, "link not found", name)
    have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=idx, family=10)}
    if (address, prefixlen) not in have:
        ipr.addr("add", index=idx, address=address, prefixlen=prefixlen, flags=IFA_F_NODAD)


def add_endpoint6(ns_path: str, ifname: str, address: str, prefixlen: int, gateway: str | None) -> None:
    """The IPv6 address (and default route, when ``gateway``) of an endpoint ``add_endpoint`` made."""
    def inside() -> None:
        from pyroute2 import IPRoute

        netns.write_sysctl(f"net.ipv6.conf.{ifname}.disable_ipv6", "0")
        with IPRoute() as nsr:
            k = _index(nsr, ifname)
            if k is None:
                raise OSError(errno.ENODEV, "veth peer not found in the container", ifname)
            nsr.addr("add", index=k, address=address, prefixlen=prefixlen, flags=IFA_F_NODAD)
            if gateway:
                try:
                    nsr.route("add", dst="::/0", gateway=gateway, family=10)
                except Exception as e:
                    if getattr(e, "code", None) != errno.EEXIST:
                        raise

    netns.run_in_netns(ns_path, inside)


def stale_bridges(own: str) -> list[tuple[str, str]]:
    """(bridge, data root) of bridges made by a berthd whose data root no longer exists."""
    out = []
    for link in _ipr().get_links():
        alias = link.get_attr("IFLA_IFALIAS") or ""
        if not alias.startswith("berth:"):
            continue
        root = alias[len("berth:"):]
        if root != own and not os.path.exists(os.path.join(root, "berth.db")):
            out.append((link.get_attr("IFLA_IFNAME"), root))
    return out


def remove_endpoint(host_if: str) -> None:
    _rtnl().delete_link(host_if)


def interfaces_in(ns_path: str) -> list[str]:
    def names() -> list[str]:
        with _iproute()() as nsr:
            return [link.get_attr("IFLA_IFNAME") for link in nsr.get_links()]

    return netns.run_in_netns(ns_path, names)


def host_networks(exclude: set[str] = frozenset()) -> list[IPv4Network]:  # type: ignore[assignment]
    """Subnets the host already uses (interface addresses and routes), but not those of the
    links named in ``exclude`` (berth's own bridges)."""
    ipr = _ipr()
    names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
    out: list[IPv4Network] = []
    for a in ipr.get_addr(family=2):
        if names.get(a["index"]) in exclude:
            continue
        addr = a.get_attr("IFA_ADDRESS")
        if addr and not addr.startswith("127."):
            out.append(ipaddress.IPv4Network(f"{addr}/{a['prefixlen']}", strict=False))
    for r in ipr.get_routes(family=2, table=254):
        dst = r.get_attr("RTA_DST")
        oif = r.get_attr("RTA_OIF")
        if dst and r["dst_len"] > 0 and names.get(oif) not in exclude:
            out.append(ipaddress.IPv4Network(f"{dst}/{r['dst_len']}", strict=False))
    return out
