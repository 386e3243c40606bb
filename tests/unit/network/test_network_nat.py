"""nftables rendering (pure): one table, replaced whole; ports, masquerade, isolation."""

from __future__ import annotations

from berth.network import nat


def test_render_replaces_only_our_table():
    script = nat.render("berth", [], [])
    lines = script.splitlines()
    assert lines[:3] == ["table ip berth {}", "delete table ip berth", "table ip berth {"]
    assert "set bridges" not in script
    assert "table ip6 berth {\n" not in script and script.endswith("delete table ip6 berth\n")
    assert nat.render_delete("berth") == ("table ip berth {}\ndelete table ip berth\n"
                                          "table ip6 berth {}\ndelete table ip6 berth\n")


def test_render_ipv6_table_for_ipv6_bridges_and_ports():
    script = nat.render("t", [nat.BridgeRules("br-a", "172.18.0.0/16", subnet6="fd00:1::/64"),
                              nat.BridgeRules("br-b", "172.19.0.0/16")],
                        [nat.PortRule("tcp", "", 8080, "172.18.0.2", 80),
                         nat.PortRule("tcp", "::", 8080, "fd00:1::2", 80),
                         nat.PortRule("tcp", "2001:db8::1", 8081, "fd00:1::2", 81)])
    v4, _, v6 = script.partition("table ip6 t {\n")
    assert "tcp dport 8080 dnat to 172.18.0.2:80" in v4 and "fd00" not in v4
    assert "    tcp dport 8080 dnat to [fd00:1::2]:80" in v6
    assert "ip6 daddr 2001:db8::1 tcp dport 8081 dnat to [fd00:1::2]:81" in v6
    assert "ip6 daddr != ::1 fib daddr type local jump ports" in v6     # ::1: berthd's proxy
    assert 'ip6 saddr fd00:1::/64 oifname != "br-a" masquerade' in v6
    assert 'oifname "br-a" ct status dnat ip6 saddr fd00:1::/64 masquerade' in v6
    assert "br-b" not in v6 and "127.0.0.0/8" not in v6 and "172." not in v6
    assert script.count("{") == script.count("}")


def test_render_ports_masquerade_and_isolation():
    script = nat.render("t", [nat.BridgeRules("br-a", "172.18.0.0/16"),
                              nat.BridgeRules("br-i", "172.19.0.0/16", internal=True)],
                        [nat.PortRule("tcp", "127.0.0.1", 8080, "172.18.0.2", 80),
                         nat.PortRule("udp", "", 5353, "172.18.0.2", 53)])
    assert "ip daddr 127.0.0.1 tcp dport 8080 dnat to 172.18.0.2:80" in script
    assert "    udp dport 5353 dnat to 172.18.0.2:53" in script
    assert 'ip saddr 172.18.0.0/16 oifname != "br-a" masquerade' in script
    assert 'ip saddr 172.19.0.0/16 oifname != "br-i" masquerade' not in script  # internal
    assert 'iifname "br-i" oifname != "br-i" drop' in script
    assert 'iifname "br-a" oifname != "br-a" oifname @bridges drop' in script
    assert 'oifname "br-a" ip saddr 127.0.0.0/8 masquerade' in script
    assert 'elements = { "br-a", "br-i" }' in script
    assert script.count("{") == script.count("}")


def test_render_icc_false_drops_within_its_bridge_after_dnat_and_replies():
    script = nat.render("t", [nat.BridgeRules("br-a", "172.18.0.0/16", icc=False, subnet6="fd00:1::/64"),
                              nat.BridgeRules("br-b", "172.19.0.0/16")], [])
    v4, _, v6 = script.partition("table ip6 t {\n")
    for part in (v4, v6):
        fwd = part[part.index("chain forward"):].splitlines()
        drop = fwd.index('    iifname "br-a" oifname "br-a" drop')
        assert fwd.index("    ct status dnat accept") < drop            # published ports still pass
        assert fwd.index("    ct state established,related accept") < drop
    assert 'iifname "br-b" oifname "br-b" drop' not in script
