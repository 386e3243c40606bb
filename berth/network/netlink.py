"""Links, addresses and routes through netlink (pyroute2): bridges and veth endpoints.

These are blocking calls. pyroute2 runs an event loop of its own inside each call, so they
must not run on berthd's asyncio thread: the engine calls them from one worker thread
(``engine.networks`` owns it). Work inside a container's network namespace runs in a
throwaway thread that joined it (``linux.netns.run_in_netns``).

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

from berth.linux import netns

_local = threading.local()


def preload() -> None:
    """Import pyroute2 ahead of use (berthd does it in a thread while it starts)."""
    import pyroute2  # noqa: F401

    # Its import resets its logger to NOTSET, and at debug level it logs every message it
    # parses (whole link dumps: tens of ms per bridge at berthd's start).
    logging.getLogger("pyroute2").setLevel(logging.WARNING)


def _ipr() -> Any:
    ipr = getattr(_local, "ipr", None)
    if ipr is None:
        preload()  # ~200 ms the first time: never on the path to berthd's first /_ping
        from pyroute2 import IPRoute

        ipr = _local.ipr = IPRoute()
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


def add_endpoint(bridge: str, host_if: str, ns_path: str, ifname: str, mac: str, address: str,
                 prefixlen: int, gateway: str | None, mtu: int | None = None) -> None:
    """A veth pair: ``host_if`` on the bridge, ``ifname`` in the namespace with its address,
    MAC and (when ``gateway``) the default route."""
    ipr = _ipr()
    br = _index(ipr, bridge)
    if br is None:
        raise OSError(errno.ENODEV, "bridge not found", bridge)
    fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _index(ipr, host_if) is not None:
            delete_link(host_if)
        peer: dict[str, Any] = {"ifname": ifname, "net_ns_fd": fd}
        kw: dict[str, Any] = {"ifname": host_if, "kind": "veth", "peer": peer}
        if mtu:
            kw["mtu"] = mtu
            peer["mtu"] = mtu
        ipr.link("add", **kw)
    finally:
        os.close(fd)
    idx = _index(ipr, host_if)
    ipr.link("set", index=idx, master=br, state="up")

    def inside() -> None:
        preload()
        from pyroute2 import IPRoute

        with IPRoute() as nsr:
            k = _index(nsr, ifname)
            if k is None:
                raise OSError(errno.ENODEV, "veth peer not found in the container", ifname)
            nsr.link("set", index=k, address=mac)
            nsr.addr("add", index=k, address=address, prefixlen=prefixlen)
            nsr.link("set", index=k, state="up")
            if gateway:
                try:
                    nsr.route("add", dst="0.0.0.0/0", gateway=gateway)
                except Exception as e:
                    if getattr(e, "code", None) != errno.EEXIST:
                        raise

    try:
        netns.run_in_netns(ns_path, inside)
    except BaseException:
        delete_link(host_if)
        raise


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
    delete_link(host_if)


def interfaces_in(ns_path: str) -> list[str]:
    def names() -> list[str]:
        preload()
        from pyroute2 import IPRoute

        with IPRoute() as nsr:
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
