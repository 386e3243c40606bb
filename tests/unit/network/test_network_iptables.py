"""The iptables back end's rendering (pure): berth's chains, per family, and the jumps."""

from __future__ import annotations

from berth.network import iptables
from berth.network.nat import BridgeRules, PortRule

BRIDGES = [BridgeRules("br-a", "172.18.0.0/16", subnet6="fd00:1::/64"), BridgeRules("br-i", "172.19.0.0/16", internal=True)]
PORTS = [PortRule("tcp", "", 8080, "172.18.0.2", 80), PortRule("tcp", "::", 8080, "fd00:1::2", 80)]


def test_chain_names_per_instance_fit_iptables():
    assert iptables.chains("berth") == iptables.Chains("BERTH-PORTS", "BERTH-POST", "BERTH-ISOL")
    c = iptables.chains("berth_1a2b3c4d")
    assert c.ports == "BERTH-PORTS-1a2b3c4d" and all(len(n) <= 28 for n in (c.ports, c.post, c.isol))


def test_restore_script_ipv4():
    c = iptables.chains("berth")
    script = iptables.restore_script("ip", c, BRIDGES, PORTS)
    lines = script.splitlines()
    assert lines[:3] == ["*nat", ":BERTH-PORTS - [0:0]", ":BERTH-POST - [0:0]"]
    assert "-A BERTH-PORTS -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.18.0.2:80" in lines
    assert "-A BERTH-POST -s 172.18.0.0/16 ! -o br-a -j MASQUERADE" in lines
    assert "-A BERTH-POST -s 172.19.0.0/16 ! -o br-i -j MASQUERADE" not in lines   # internal
    assert "-A BERTH-ISOL -i br-i ! -o br-i -j DROP" in lines
    assert "-A BERTH-ISOL -i br-a -o br-i -j DROP" in lines
    # replies and published ports pass before the bridge-to-bridge drops
    assert lines.index("-A BERTH-ISOL -m conntrack --ctstate DNAT -j RETURN") < lines.index(
        "-A BERTH-ISOL -i br-a -o br-i -j DROP")
    assert "fd00" not in script and lines.count("COMMIT") == 2


def test_restore_script_ipv6():
    script = iptables.restore_script("ip6", iptables.chains("berth"), BRIDGES[:1], PORTS)
    assert "-A BERTH-PORTS -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00:1::2]:80" in script
    assert "-A BERTH-POST -s fd00:1::/64 ! -o br-a -j MASQUERADE" in script
    assert "172." not in script and "127.0.0.0/8" not in script


def test_backend_forced_by_environment(monkeypatch):
    monkeypatch.setenv(iptables.ENV, "iptables-legacy")
    assert iptables.backend() == "iptables-legacy"
    assert iptables.Binaries("iptables-legacy").tool("ip6", "-restore").endswith("ip6tables-legacy-restore")
    monkeypatch.setenv(iptables.ENV, "pf")
    import pytest
    from berth.errors import RuntimeFailure
    with pytest.raises(RuntimeFailure):
        iptables.backend()


def test_restore_script_icc_false():
    c = iptables.chains("berth")
    lines = iptables.restore_script("ip", c, [BridgeRules("br-q", "172.20.0.0/16", icc=False),
                                              *BRIDGES], PORTS).splitlines()
    drop = lines.index("-A BERTH-ISOL -i br-q -o br-q -j DROP")
    assert lines.index("-A BERTH-ISOL -m conntrack --ctstate DNAT -j RETURN") < drop
    assert "-A BERTH-ISOL -i br-a -o br-a -j DROP" not in lines
