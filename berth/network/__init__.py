"""Container networking: IPAM, netlink (bridges, veths), nftables rules, published ports, the
embedded DNS server. ``engine.networks`` drives these; none of them imports the engine."""
