"""The iptables back end: nat.py's rules written with iptables and ip6tables (rendering is pure).

nftables is berth's default. Where ``nft`` is missing, or the host's ``iptables`` is
iptables-legacy (whose rules nftables cannot see, so a host firewall made with it would not
notice berth's), berth writes the same rules as iptables chains of its own instead, as dockerd
does. ``backend()`` decides; ``BERTH_FIREWALL_BACKEND`` (``nftables``, ``iptables``,
``iptables-legacy``, ``iptables-nft``) forces a choice.

berth's chains (``BERTH-PORTS``, ``BERTH-POST``, ``BERTH-ISOL``, with ``-<instance>`` for a
non-default data root) are refilled in one ``iptables-restore --noflush`` transaction, which
flushes a chain it declares and leaves every other chain alone; the jumps to them from the
built-in chains are added once (``PREROUTING``/``OUTPUT`` to ports for local destinations,
``POSTROUTING`` to post, ``FORWARD`` to isol, kept first in FORWARD so that its drops come
before any accept). ``remove`` takes the jumps and chains away.

    apply(Binaries("iptables-legacy"), "berth", bridges, ports)
    remove(Binaries("iptables-legacy"), "berth")
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from berth.errors import RuntimeFailure
from berth.network.nat import BridgeRules, PortRule

ENV = "BERTH_FIREWALL_BACKEND"
BACKENDS = ("nftables", "iptables", "iptables-legacy", "iptables-nft")


@dataclass(frozen=True)
class Chains:
    ports: str
    post: str
    isol: str


def chains(table: str) -> Chains:
    """berth's chains for its nft-style ``table`` name (``berth`` or ``berth_<instance>``)."""
    inst = table.removeprefix("berth").lstrip("_")[:8]
    suffix = f"-{inst}" if inst else ""
    return Chains(f"BERTH-PORTS{suffix}", f"BERTH-POST{suffix}", f"BERTH-ISOL{suffix}")


# -- rendering (pure) -----------------------------------------------------------------------

def _jumps(family: str, c: Chains) -> list[tuple[str, list[str]]]:
    """(table, rule spec) of each jump from a built-in chain."""
    local = ["-m", "addrtype", "--dst-type", "LOCAL"]
    no_lo = ["!", "-d", "::1/128"] if family == "ip6" else []   # see nat.py: ::1 goes to the proxy
    return [("nat", ["PREROUTING", *local, "-j", c.ports]), ("nat", ["OUTPUT", *no_lo, *local, "-j", c.ports]),
            ("nat", ["POSTROUTING", "-j", c.post]), ("filter", ["FORWARD", "-j", c.isol])]


def restore_script(family: str, c: Chains, bridges: list[BridgeRules], ports: list[PortRule]) -> str:
    """The ``iptables-restore --noflush`` input that refills berth's chains for one family."""
    any_addr = ("", "0.0.0.0") if family == "ip" else ("", "::")
    nat = ["*nat", f":{c.ports} - [0:0]", f":{c.post} - [0:0]"]
    for p in sorted(ports, key=lambda p: (p.proto, p.host_port, p.host_ip)):
        if p.family != family:
            continue
        dst = f"-d {p.host_ip} " if p.host_ip not in any_addr else ""
        to = f"[{p.container_ip}]" if family == "ip6" else p.container_ip
        nat.append(f"-A {c.ports} {dst}-p {p.proto} -m {p.proto} --dport {p.host_port} "
                   f"-j DNAT --to-destination {to}:{p.container_port}")
    for b in bridges:
        subnet = b.subnet if family == "ip" else b.subnet6
        if family == "ip":
            nat.append(f"-A {c.post} -o {b.bridge} -s 127.0.0.0/8 -j MASQUERADE")
        nat.append(f"-A {c.post} -o {b.bridge} -s {subnet} -m conntrack --ctstate DNAT -j MASQUERADE")
        if b.masquerade and not b.internal:
            nat.append(f"-A {c.post} -s {subnet} ! -o {b.bridge} -j MASQUERADE")
    filt = ["*filter", f":{c.isol} - [0:0]"]
    for b in bridges:
        if b.internal:
            filt.append(f"-A {c.isol} -i {b.bridge} ! -o {b.bridge} -j DROP")
            filt.append(f"-A {c.isol} -o {b.bridge} ! -i {b.bridge} -j DROP")
    filt.append(f"-A {c.isol} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN")
    filt.append(f"-A {c.isol} -m conntrack --ctstate DNAT -j RETURN")
    for b in bridges:
        for other in bridges:
            if other.bridge != b.bridge:
                filt.append(f"-A {c.isol} -i {b.bridge} -o {other.bridge} -j DROP")
        if not b.icc:
            filt.append(f"-A {c.isol} -i {b.bridge} -o {b.bridge} -j DROP")
    return "\n".join([*nat, "COMMIT", *filt, "COMMIT"]) + "\n"


# -- choosing and running -------------------------------------------------------------------

@dataclass(frozen=True)
class Binaries:
    """The iptables flavour in use: ``iptables``, ``iptables-legacy`` or ``iptables-nft``."""

    flavour: str

    def tool(self, family: str, suffix: str = "") -> str:
        """``tool("ip6", "-restore")`` -> the path of ip6tables-legacy-restore (say)."""
        name = ("ip6tables" if family == "ip6" else "iptables") + self.flavour.removeprefix("iptables") + suffix
        return shutil.which(name) or f"/usr/sbin/{name}"


def backend(forced: str = "") -> str:
    """nftables, or the iptables flavour to use. Raises RuntimeFailure for a bad forced value."""
    forced = forced or os.environ.get(ENV, "")
    if forced:
        if forced not in BACKENDS:
            raise RuntimeFailure(f"{ENV}={forced}: expected one of {', '.join(BACKENDS)}")
        return forced
    if shutil.which("nft") is None:
        return "iptables"
    plain = shutil.which("iptables")
    if plain and "legacy" in _run([plain, "-V"]).stdout:
        return "iptables-legacy"
    return "nftables"


def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise RuntimeFailure(f"{argv[0]} not found: install iptables or nftables") from None


def _check(r: subprocess.CompletedProcess[str], what: str) -> str:
    if r.returncode != 0:
        raise RuntimeFailure(f"{what}: {(r.stderr or r.stdout).strip()}")
    return r.stdout


def _ensure_jumps(b: Binaries, family: str, c: Chains) -> None:
    ipt = b.tool(family)
    listings = {t: _check(_run([ipt, "-w", "-t", t, "-S"]), f"{ipt} -S").splitlines() for t in ("nat", "filter")}
    for table, spec in _jumps(family, c):
        line = "-A " + " ".join(spec)
        have = listings[table]
        if table == "filter":
            rules = [x for x in have if x.startswith("-A FORWARD ")]
            if rules[:1] == [line]:
                continue
            while line in have:       # not first any more (another chain went to the top)
                _check(_run([ipt, "-w", "-t", table, "-D", *spec]), f"{ipt} -D {spec[0]}")
                have.remove(line)
            _check(_run([ipt, "-w", "-t", table, "-I", spec[0], "1", *spec[1:]]), f"{ipt} -I {spec[0]}")
        elif line not in have:
            _check(_run([ipt, "-w", "-t", table, "-I", spec[0], "1", *spec[1:]]), f"{ipt} -I {spec[0]}")


def apply(b: Binaries, table: str, bridges: list[BridgeRules], ports: list[PortRule], ipv6: bool = True) -> None:
    """berth's chains for ``bridges`` and ``ports``, in iptables and (with IPv6 bridges and
    ``ipv6``) ip6tables. Raises RuntimeFailure."""
    c = chains(table)
    bridges = sorted(bridges, key=lambda x: x.bridge)
    families = ["ip"] + (["ip6"] if ipv6 and any(x.subnet6 for x in bridges) else [])
    for family in families:
        own = bridges if family == "ip" else [x for x in bridges if x.subnet6]
        restore = b.tool(family, "-restore")
        _check(_run([restore, "-w", "--noflush"], restore_script(family, c, own, ports)), restore)
        _ensure_jumps(b, family, c)
    if "ip6" not in families and ipv6:
        remove_family(b, "ip6", c)


def remove_family(b: Binaries, family: str, c: Chains) -> None:
    ipt = b.tool(family)
    try:
        listing = _run([ipt, "-w", "-t", "filter", "-S"]).stdout + _run([ipt, "-w", "-t", "nat", "-S"]).stdout
    except RuntimeFailure:
        return
    if f"-N {c.isol}" not in listing and f"-N {c.ports}" not in listing:
        return
    for table, spec in _jumps(family, c):
        while _run([ipt, "-w", "-t", table, "-D", *spec]).returncode == 0:
            pass
    for table, chain in (("nat", c.ports), ("nat", c.post), ("filter", c.isol)):
        _run([ipt, "-w", "-t", table, "-F", chain])
        _run([ipt, "-w", "-t", table, "-X", chain])


def remove(b: Binaries, table: str) -> None:
    """Every jump and chain of berth's ``table``, in both families."""
    for family in ("ip", "ip6"):
        remove_family(b, family, chains(table))
