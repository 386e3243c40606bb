"""Forward-path accept rules (pure parts): which firewalls drop, and the rules berth adds."""

from __future__ import annotations

from berth.network import forward


def _ruleset(*items: dict) -> dict:
    return {"nftables": [{"metainfo": {"version": "1.0.6"}}, *items]}


def _chain(family: str, table: str, name: str, policy: str = "accept", hook: str = "forward") -> dict:
    return {"chain": {"family": family, "table": table, "name": name, "handle": 1, "type": "filter",
                      "hook": hook, "prio": 0, "policy": policy}}


def _rule(family: str, table: str, chain: str, handle: int, expr: list, comment: str = "") -> dict:
    r = {"family": family, "table": table, "chain": chain, "handle": handle, "expr": expr}
    if comment:
        r["comment"] = comment
    return {"rule": r}


def test_chain_names_fit_iptables():
    assert forward.chain_name("berth") == "BERTH-FORWARD"
    assert forward.chain_name("berth_1a2b3c4d") == "BERTH-FWD-1a2b3c4d"
    assert len(forward.chain_name("berth_" + "f" * 64)) <= 28


def test_iptables_drops_on_policy_or_rule():
    assert forward.iptables_drops("-P INPUT ACCEPT\n-P FORWARD DROP\n-P OUTPUT ACCEPT\n")
    assert forward.iptables_drops("-P FORWARD ACCEPT\n-A FORWARD -j REJECT --reject-with icmp-host-prohibited\n")
    assert not forward.iptables_drops("-P FORWARD ACCEPT\n-A FORWARD -i eth0 -j ACCEPT\n-A INPUT -j DROP\n")


def test_iptables_rules_accept_in_replies_and_dnat():
    rules = forward.iptables_rules("BERTH-FORWARD", ["br-b", "berth0"])
    assert rules[0] == ["-A", "BERTH-FORWARD", "-i", "berth0", "-j", "ACCEPT"]
    assert ["-A", "BERTH-FORWARD", "-o", "br-b", "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"] in rules
    assert all("DROP" not in r for r in rules) and len(rules) == 6


def test_dropping_chains_skip_berth_iptables_and_other_hooks():
    rs = _ruleset(
        _chain("inet", "firewalld", "filter_FORWARD"),
        _rule("inet", "firewalld", "filter_FORWARD", 5, [{"reject": {"type": "icmpx"}}]),
        _chain("inet", "mine", "forward", policy="drop"),
        _chain("inet", "open", "forward"),
        _chain("ip", "filter", "FORWARD", policy="drop"),            # iptables-nft: its binary's job
        _chain("ip", "berth_1234", "forward"),
        _rule("ip", "berth_1234", "forward", 3, [{"drop": None}]),   # another berthd's isolation
        _chain("inet", "mine", "input", policy="drop", hook="input"),
        _chain("bridge", "l2", "forward", policy="drop"),
    )
    got = forward.nft_dropping_chains(rs)
    assert got == [forward.Chain("inet", "firewalld", "filter_FORWARD"), forward.Chain("inet", "mine", "forward")]


def test_nft_script_replaces_own_rules_in_one_transaction():
    rs = _ruleset(_chain("inet", "fw", "forward", policy="drop"),
                  _rule("inet", "fw", "forward", 7, [{"accept": None}], comment="BERTH-FORWARD"),
                  _rule("inet", "fw", "forward", 8, [{"accept": None}], comment="BERTH-FWD-other"))
    own = forward.nft_own_rules(rs, "BERTH-FORWARD")
    assert own == [(forward.Chain("inet", "fw", "forward"), 7)]
    script = forward.nft_script("BERTH-FORWARD", ["berth0", "br-x"], forward.nft_dropping_chains(rs), own)
    lines = script.splitlines()
    assert lines[0] == "delete rule inet fw forward handle 7"
    assert lines[1:] == [
        'insert rule inet fw forward oifname { "berth0", "br-x" } ct status dnat accept comment "BERTH-FORWARD"',
        'insert rule inet fw forward oifname { "berth0", "br-x" } ct state established,related accept '
        'comment "BERTH-FORWARD"',
        'insert rule inet fw forward iifname { "berth0", "br-x" } accept comment "BERTH-FORWARD"',
    ]
    assert forward.nft_script("BERTH-FORWARD", [], [], own) == "delete rule inet fw forward handle 7\n"
