"""A container's /etc/hosts and /etc/resolv.conf, as dockerd writes them (pure).

    hosts(own=[("172.18.0.2", ["web", "1a2b3c4d5e6f"])], extra=[("db", "10.0.0.5")])
    resolv_conf(host_text, embedded=True, dns=[], search=[], options=[])
"""

from __future__ import annotations

DEFAULT_HOSTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
                 "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
FALLBACK_DNS = ["8.8.8.8", "8.8.4.4"]


def hosts(own: list[tuple[str, list[str]]], extra: list[tuple[str, str]],
          links: list[tuple[str, list[str]]] = ()) -> str:  # type: ignore[assignment]
    """``extra``: --add-host (name, address); ``links``: --link (address, names);
    ``own``: the container's addresses and its names."""
    out = [DEFAULT_HOSTS]
    for name, addr in extra:
        out.append(f"{addr}\t{name}\n")
    for addr, names in links:
        out.append(f"{addr}\t{' '.join(names)}\n")
    for addr, names in own:
        out.append(f"{addr}\t{' '.join(names)}\n")
    return "".join(out)


def parse_extra_host(item: str) -> tuple[str, str]:
    """``name:addr`` or ``name=addr`` (docker 25+); the address may be IPv6 or host-gateway."""
    if "=" in item:
        name, _, addr = item.partition("=")
    else:
        name, _, addr = item.partition(":")
    return name.strip(), addr.strip().strip("[]")


def _host_lines(host_text: str) -> tuple[list[str], list[str], list[str], list[str]]:
    ns, search, options, other = [], [], [], []
    for line in host_text.splitlines():
        parts = line.split()
        if not parts or parts[0].startswith(("#", ";")):
            continue
        if parts[0] == "nameserver" and len(parts) > 1:
            ns.append(parts[1])
        elif parts[0] in ("search", "domain"):
            search = parts[1:]
        elif parts[0] == "options":
            options += parts[1:]
        else:
            other.append(line)
    return ns, search, options, other


def resolv_conf(host_text: str, *, embedded: bool, host_network: bool = False,
                dns: list[str] | None = None, search: list[str] | None = None,
                options: list[str] | None = None) -> tuple[str, list[str]]:
    """-> (the file, the servers the embedded DNS server forwards to).

    ``embedded``: a user-defined network; the container asks 127.0.0.11, which forwards to
    ``dns`` or the host's servers. Otherwise the container asks the servers itself, so the
    host's loopback servers (unreachable from another namespace) are dropped.
    """
    h_ns, h_search, h_options, _ = _host_lines(host_text)
    servers = list(dns or h_ns)
    search_ = list(search) if search else h_search
    opts = list(options) if options else h_options
    if embedded:
        lines = ["nameserver 127.0.0.11"]
        if search_ and search_ != ["."]:
            lines.append("search " + " ".join(search_))
        opts = [o for o in opts if not o.startswith("ndots:")] + ["ndots:0"] if not options else opts
        lines.append("options " + " ".join(opts))
        lines.append("")
        lines.append("# Based on host file: '/etc/resolv.conf' (internal resolver)")
        lines.append("# ExtServers: [" + " ".join(f"host({s})" for s in servers) + "]")
        lines.append("# Overrides: []")
        lines.append("# Option ndots from: internal")
        return "\n".join(lines) + "\n", servers
    if not host_network:
        servers = [s for s in servers if not (s.startswith("127.") or s == "::1")] or \
            ([] if dns else FALLBACK_DNS)
    lines = [f"nameserver {s}" for s in servers]
    if search_ and search_ != ["."]:
        lines.append("search " + " ".join(search_))
    if opts:
        lines.append("options " + " ".join(opts))
    return "\n".join(lines) + "\n", servers
