"""NAT and filter rules in one nftables table owned by berth (rendering is pure).

berth never edits rules it did not make: everything lives in ``table ip <name>`` (``berth``
for the default data root) and, for IPv6 networks, ``table ip6 <name>`` with the same chains, and every change replaces that whole table in one nft
transaction (``table x {}; delete table x; table x {...}``), so the kernel never sees half a
rule set and a restart re-creates it from berthd's records. Removing the table removes all of
berth's rules.

What the table does:

- ``prerouting``/``output`` (nat): traffic to a local address (``fib daddr type local``) and a
  published port is DNATed to the container; ``output`` covers connections from the host
  itself, including to 127.0.0.1 (the bridge gets ``route_localnet=1`` and the source is
  masqueraded, as dockerd does with ``--userland-proxy=false``): the kernel moves the bytes.
- ``postrouting`` (nat): outbound traffic from a non-internal bridge is masqueraded; DNATed
  traffic that comes back out of the same bridge (hairpin, container to a published port) is
  masqueraded so replies return through the host.
- ``forward`` (filter): internal networks talk only among themselves; different berth
  bridges are isolated from each other except through published ports; on a bridge with
  ``enable_icc=false`` containers cannot open connections to each other either (br_netfilter
  brings bridged traffic to this hook), but still reach published ports (DNATed hairpin).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from berth.errors import RuntimeFailure


@dataclass(frozen=True)
class BridgeRules:
    bridge: str
    subnet: str
    internal: bool = False
    masquerade: bool = True
    subnet6: str = ""       # an IPv6 network's: its rules go in ``table ip6 <name>``
    icc: bool = True        # false: its containers cannot reach each other (but published ports)


@dataclass(frozen=True)
class PortRule:
    proto: str              # "tcp" | "udp" | "sctp"
    host_ip: str            # "", "0.0.0.0" or "::": every local address (of the container_ip's family)
    host_port: int
    container_ip: str       # an IPv6 address: the rule is in ``table ip6``
    container_port: int

    @property
    def family(self) -> str:
        return "ip6" if ":" in self.container_ip else "ip"


def _q(name: str) -> str:
    return '"' + name.replace('"', "") + '"'


def render(table: str, bridges: Iterable[BridgeRules], ports: Iterable[PortRule]) -> str:
    """The nft script that replaces ``table ip <table>`` (and ``table ip6 <table>``, with its
    IPv6 bridges and ports, or gone when there are none) with these rules."""
    bridges = sorted(bridges, key=lambda b: b.bridge)
    ports = sorted(ports, key=lambda p: (p.proto, p.host_port, p.host_ip))
    out = _render_family("ip", table, bridges, [p for p in ports if p.family == "ip"])
    v6 = [b for b in bridges if b.subnet6]
    if v6:
        out += _render_family("ip6", table, v6, [p for p in ports if p.family == "ip6"])
    else:
        out += [f"table ip6 {table} {{}}", f"delete table ip6 {table}"]
    return "\n".join(out) + "\n"


def _render_family(family: str, table: str, bridges: list[BridgeRules], ports: list[PortRule]) -> list[str]:
    any_addr = ("", "0.0.0.0") if family == "ip" else ("", "::")
    out = [f"table {family} {table} {{}}", f"delete table {family} {table}", f"table {family} {table} {{"]
    if bridges:
        names = ", ".join(_q(b.bridge) for b in bridges)
        out.append(f"  set bridges {{ type ifname; elements = {{ {names} }} }}")
    # IPv6 has no route_localnet: a packet from ::1 cannot leave the host through a bridge, so
    # [::1]:<port> is left to the socket berthd listens on there (ports.Proxy).
    local_out = "fib daddr type local" if family == "ip" else "ip6 daddr != ::1 fib daddr type local"
    out += [
        "  chain prerouting {", "    type nat hook prerouting priority dstnat; policy accept;",
        "    fib daddr type local jump ports", "  }",
        "  chain output {", "    type nat hook output priority -100; policy accept;",
        f"    {local_out} jump ports", "  }",
        "  chain ports {",
    ]
    for p in ports:
        dst = f"{family} daddr {p.host_ip} " if p.host_ip not in any_addr else ""
        to = f"[{p.container_ip}]" if family == "ip6" else p.container_ip
        out.append(f"    {dst}{p.proto} dport {p.host_port} dnat to {to}:{p.container_port}")
    out += ["  }", "  chain postrouting {", "    type nat hook postrouting priority srcnat; policy accept;"]
    for b in bridges:
        br = _q(b.bridge)
        subnet = b.subnet if family == "ip" else b.subnet6
        if family == "ip":
            out.append(f"    oifname {br} ip saddr 127.0.0.0/8 masquerade")
        out.append(f"    oifname {br} ct status dnat {family} saddr {subnet} masquerade")
        if b.masquerade and not b.internal:
            out.append(f"    {family} saddr {subnet} oifname != {br} masquerade")
    out += ["  }", "  chain forward {", "    type filter hook forward priority filter; policy accept;"]
    for b in bridges:
        if b.internal:
            br = _q(b.bridge)
            out.append(f"    iifname {br} oifname != {br} drop")
            out.append(f"    oifname {br} iifname != {br} drop")
    out.append("    ct state established,related accept")
    out.append("    ct status dnat accept")
    for b in bridges:
        br = _q(b.bridge)
        out.append(f"    iifname {br} oifname != {br} oifname @bridges drop")
        if not b.icc:
            out.append(f"    iifname {br} oifname {br} drop")
    out += ["  }", "}"]
    return out


def render_delete(table: str) -> str:
    return "".join(f"table {f} {table} {{}}\ndelete table {f} {table}\n" for f in ("ip", "ip6"))


def apply(script: str) -> None:
    """Run an nft script as one transaction. Raises RuntimeFailure."""
    nft = shutil.which("nft") or "/usr/sbin/nft"
    try:
        r = subprocess.run([nft, "-f", "-"], input=script.encode(), capture_output=True, timeout=30)
    except FileNotFoundError:
        raise RuntimeFailure("nft not found: berth needs nftables (apt-get install nftables)") from None
    if r.returncode != 0:
        raise RuntimeFailure(f"nft: {r.stderr.decode(errors='replace').strip()}")
