"""Names on berth's networks: a container's /etc/hosts (its own names, ``--add-host`` and
``--link`` entries) and the answers of the embedded DNS server (container names, aliases and
short IDs on the user-defined networks a container shares with them).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

from berth.engine.network_records import ContainerView, NetworkTable, Sandbox
from berth.network import etcfiles


def hosts(table: NetworkTable, cv: ContainerView, s: Sandbox) -> str:
    """The text of the container's /etc/hosts."""
    # libnetwork: the FQDN (hostname, or hostname.domainname), then its first label if it has dots
    fqdn = f"{cv.hostname}.{cv.domainname}" if cv.domainname else cv.hostname
    names = [fqdn, fqdn.split(".", 1)[0]] if "." in fqdn else [fqdn]
    own = [(a, names) for e in s.endpoints[:1] for a in (e.ip, e.ip6) if a]
    gw = next((table.nets[e.network_id].gateway for e in s.endpoints if e.network_id in table.nets), "")
    extra = []
    for item in cv.extra_hosts:
        name, addr = etcfiles.parse_extra_host(item)
        extra.append((name, gw if addr == "host-gateway" else addr))
    links = []
    for link in cv.links:
        target, _, alias = link.partition(":")
        target = target.lstrip("/")
        alias = alias.rsplit("/", 1)[-1] if alias else target
        ip = _ip_of_name(table, target, s)
        if ip:
            tid = _id_of_name(table, target) or ""
            links.append((ip, [alias, tid[:12], target] if alias != target else [target, tid[:12]]))
    return etcfiles.hosts(own, extra, links)


def _id_of_name(table: NetworkTable, name: str) -> str | None:
    for cid in table.sandboxes:
        info = table.names(cid)
        if info and (info[0] == name or cid.startswith(name)):
            return cid
    return None


def _ip_of_name(table: NetworkTable, name: str, s: Sandbox) -> str | None:
    cid = _id_of_name(table, name)
    if cid is None:
        return None
    other = table.sandboxes.get(cid)
    if other is None:
        return None
    for e in s.endpoints:
        oe = other.endpoint(e.network_id)
        if oe is not None and oe.ip:
            return oe.ip
    return None


def resolve(table: NetworkTable, cid: str, name: str) -> tuple[list[IPv4Address | IPv6Address] | None, bool]:
    """The embedded DNS server's lookup for container ``cid``: -> (the addresses of ``name`` on
    its user networks or None, whether a name not found there may go to the upstream servers)."""
    s = table.sandboxes.get(cid)
    if s is None:
        return None, False
    name = name.lower().rstrip(".")
    may_forward = False
    found: list[IPv4Address | IPv6Address] = []
    for e in s.endpoints:
        n = table.nets.get(e.network_id)
        if n is None or not n.user_defined:
            continue
        if not n.internal:
            may_forward = True
        base = name
        if name.endswith("." + n.name.lower()):
            base = name[: -len(n.name) - 1]
        for ocid in table.running:
            os_ = table.sandboxes.get(ocid)
            oe = os_.endpoint(n.id) if os_ else None
            if oe is None or not oe.ip:
                continue
            info = table.names(ocid)
            cands = {a.lower() for a in oe.aliases} | {ocid[:12]}
            if info:
                cands.add(info[0].lower())
            if base in cands:
                for addr in (ip_address(a) for a in (oe.ip, oe.ip6) if a):
                    if addr not in found:
                        found.append(addr)
    return (found if found else None), may_forward


def uses_embedded_dns(table: NetworkTable, s: Sandbox) -> bool:
    """A container on a user-defined network asks berth's DNS server (Docker's 127.0.0.11)."""
    return any(table.nets[e.network_id].user_defined for e in s.endpoints if e.network_id in table.nets)
