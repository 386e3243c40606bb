"""berth's accept rules in other firewalls' forward paths (Docker's DOCKER-FORWARD).

A packet that crosses a berth bridge (container to container, with br_netfilter; container to
the world; a published port to its container) passes the forward hook, where every base chain
of every table must let it through: nftables tables and iptables-legacy's FORWARD alike. A
drop anywhere is final, and an accept in berth's own table (nat.py) overrides nothing. Where
Docker, ufw or firewalld is installed, the iptables FORWARD policy is DROP, or an nftables
forward chain ends with a drop or reject, and berth's traffic would vanish.

So, as Docker 20.10+ (DOCKER-USER, DOCKER-FORWARD) and netavark do, berth adds its own
accept rules to each forward path that would drop:

- iptables and ip6tables (legacy when its filter table exists in this netns, nft when ``ip
  filter FORWARD`` or ``ip6 filter FORWARD`` exists): a chain of berth's (``BERTH-FORWARD``, ``BERTH-FWD-<tag>`` for a non-default data
  root), jumped to from the top of FORWARD, if FORWARD's policy is DROP or it has DROP or
  REJECT rules (or the chain is there already);
- nftables base chains of other tables (family ip, ip6 or inet, filter, hook forward) with policy
  drop or a drop/reject rule, such as firewalld's: the same rules inserted at the top, each
  carrying that chain name as its comment, so berth finds and deletes exactly its own.

For each berth bridge: accept what comes in from it (container to container and out to the
world), what goes out to it in a connection already accepted (replies), and what goes out to
it after berth's DNAT (published ports). berth's own table still drops what must not pass
(internal networks, bridge to bridge): its drop is final as well. Firewalls that accept
everything are left alone. ``sync(tag, [])`` removes every rule and chain of that tag.

    sync("BERTH-FORWARD", ["berth0", "br-1a2b3c4d5e6f"])   # after a bridge is added
    sync("BERTH-FORWARD", [])                              # the last bridge is gone
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from berth.errors import RuntimeFailure

log = logging.getLogger(__name__)

_LEGACY_TABLES = Path("/proc/net/ip_tables_names")   # this netns's iptables-legacy tables
_LEGACY_TABLES6 = Path("/proc/net/ip6_tables_names")  # and ip6tables-legacy's


def chain_name(table: str) -> str:
    """berth's iptables chain (and nftables rule comment) for berth's nft ``table``."""
    return "BERTH-FORWARD" if table == "berth" else "BERTH-FWD-" + table.removeprefix("berth_")[:18]


# -- iptables (pure) ------------------------------------------------------------------------

def iptables_drops(listing: str) -> bool:
    """Whether ``iptables -S`` output shows a FORWARD chain that drops or rejects."""
    for line in listing.splitlines():
        if line.strip() in ("-P FORWARD DROP", "-P FORWARD REJECT"):
            return True
        if line.startswith("-A FORWARD ") and (" -j DROP" in line or " -j REJECT" in line):
            return True
    return False


def iptables_rules(chain: str, bridges: list[str]) -> list[list[str]]:
    """The ``-A`` argument lists that fill berth's chain."""
    out: list[list[str]] = []
    for br in sorted(bridges):
        out.append(["-A", chain, "-i", br, "-j", "ACCEPT"])
        out.append(["-A", chain, "-o", br, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"])
        out.append(["-A", chain, "-o", br, "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"])
    return out


# -- nftables (pure) ------------------------------------------------------------------------

@dataclass(frozen=True)
class Chain:
    family: str
    table: str
    name: str


def _has_drop(node: Any) -> bool:
    if isinstance(node, dict):
        return "drop" in node or "reject" in node or any(_has_drop(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_drop(v) for v in node)
    return False


def _objects(ruleset: dict[str, Any], kind: str) -> Iterator[dict[str, Any]]:
    for item in ruleset.get("nftables", []):
        if kind in item:
            yield item[kind]


def _foreign(c: dict[str, Any]) -> bool:
    """Not berth's own tables (any data root), not iptables-nft's FORWARD (iptables' job)."""
    if c["table"] == "berth" or c["table"].startswith("berth_"):
        return False
    return not (c["family"] in ("ip", "ip6") and c["table"] == "filter" and c["name"] == "FORWARD")


def nft_dropping_chains(ruleset: dict[str, Any]) -> list[Chain]:
    """Other tables' forward base chains (ip, ip6, inet) that drop or reject something."""
    dropping = {(r["family"], r["table"], r["chain"]) for r in _objects(ruleset, "rule")
                if _has_drop(r.get("expr"))}
    out = []
    for c in _objects(ruleset, "chain"):
        if c.get("hook") != "forward" or c.get("type") != "filter" or c["family"] not in ("ip", "ip6", "inet"):
            continue
        if _foreign(c) and (c.get("policy") == "drop" or (c["family"], c["table"], c["name"]) in dropping):
            out.append(Chain(c["family"], c["table"], c["name"]))
    return out


def nft_own_rules(ruleset: dict[str, Any], tag: str) -> list[tuple[Chain, int]]:
    """berth's rules of this tag in other tables, with their handles."""
    return [(Chain(r["family"], r["table"], r["chain"]), int(r["handle"]))
            for r in _objects(ruleset, "rule") if r.get("comment") == tag]


def nft_script(tag: str, bridges: list[str], chains: list[Chain], own: list[tuple[Chain, int]]) -> str:
    """One nft transaction: delete berth's old rules, insert the current ones at the top."""
    lines = [f"delete rule {c.family} {c.table} {c.name} handle {h}" for c, h in own]
    if bridges:
        names = "{ " + ", ".join('"' + b.replace('"', "") + '"' for b in sorted(bridges)) + " }"
        rules = [f"iifname {names} accept", f"oifname {names} ct state established,related accept",
                 f"oifname {names} ct status dnat accept"]
        for c in chains:
            for rule in reversed(rules):   # each insert goes to the top
                lines.append(f'insert rule {c.family} {c.table} {c.name} {rule} comment "{tag}"')
    return "".join(line + "\n" for line in lines)


# -- applying -------------------------------------------------------------------------------

def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)


def _check(r: subprocess.CompletedProcess[str], what: str) -> None:
    if r.returncode != 0:
        raise RuntimeFailure(f"{what}: {(r.stderr or r.stdout).strip()}")


def _ruleset() -> dict[str, Any]:
    nft = shutil.which("nft")
    if nft is None:
        return {}
    r = _run([nft, "-j", "list", "ruleset"])
    _check(r, "nft list ruleset")
    try:
        data = json.loads(r.stdout or "{}")
    except ValueError as e:
        raise RuntimeFailure(f"nft list ruleset: {e}") from None
    return data if isinstance(data, dict) else {}


def _iptables_binary(variant: str, marker: str, base: str = "iptables") -> str | None:
    """``<base>-<variant>``, else a plain ``<base>`` whose ``-V`` names ``marker``."""
    found = shutil.which(f"{base}-{variant}")
    if found:
        return found
    plain = shutil.which(base)
    if plain and marker in _run([plain, "-V"]).stdout:
        return plain
    return None


def _iptables_nft_binary(base: str = "iptables") -> str | None:
    return _iptables_binary("nft", "nf_tables", base)


def _iptables_legacy_binary(base: str = "iptables") -> str | None:
    try:
        tables = (_LEGACY_TABLES6 if base == "ip6tables" else _LEGACY_TABLES).read_text()
        if "filter" not in tables.split():
            return None    # no legacy filter table here: nothing to get past, nothing to create
    except OSError:
        return None
    return _iptables_binary("legacy", "legacy", base)


def _iptables_sync(binary: str, chain: str, bridges: list[str]) -> None:
    ipt = [binary, "-w", "-t", "filter"]
    r = _run([*ipt, "-S"])
    _check(r, f"{binary} -S")
    listing = r.stdout
    have_chain = f"-N {chain}" in listing.splitlines()
    jump = ["FORWARD", "-j", chain]
    if not bridges:
        if have_chain:
            while _run([*ipt, "-D", *jump]).returncode == 0:
                pass
            _check(_run([*ipt, "-F", chain]), f"{binary} -F {chain}")
            _check(_run([*ipt, "-X", chain]), f"{binary} -X {chain}")
        return
    if not have_chain and not iptables_drops(listing):
        return
    if not have_chain:
        _check(_run([*ipt, "-N", chain]), f"{binary} -N {chain}")
    _check(_run([*ipt, "-F", chain]), f"{binary} -F {chain}")
    for rule in iptables_rules(chain, bridges):
        _check(_run([*ipt, *rule]), f"{binary} {' '.join(rule)}")
    if f"-A FORWARD -j {chain}" not in listing.splitlines():
        _check(_run([*ipt, "-I", "FORWARD", "1", "-j", chain]), f"{binary} -I FORWARD -j {chain}")


def sync(tag: str, bridges: list[str]) -> None:
    """Make every dropping forward path accept these bridges' traffic (none: remove berth's
    rules of ``tag``). Tries every firewall, then raises RuntimeFailure naming what failed."""
    errors: list[str] = []
    ruleset: dict[str, Any] = {}
    try:
        ruleset = _ruleset()
    except (RuntimeFailure, OSError, subprocess.SubprocessError) as e:
        errors.append(str(e))
    chains = [] if not bridges else nft_dropping_chains(ruleset)
    own = nft_own_rules(ruleset, tag)
    if chains or own:
        script = nft_script(tag, bridges, chains, own)
        try:
            _check(_run([shutil.which("nft") or "nft", "-f", "-"], script), "nft")
        except (RuntimeFailure, OSError, subprocess.SubprocessError) as e:
            errors.append(str(e))
    nft_forward = {c["family"] for c in _objects(ruleset, "chain") if c["table"] == "filter" and c["name"] == "FORWARD"}
    binaries = [_iptables_legacy_binary(), _iptables_legacy_binary("ip6tables")]
    binaries += [_iptables_nft_binary(b) for b, fam in (("iptables", "ip"), ("ip6tables", "ip6")) if fam in nft_forward]
    for binary in binaries:
        if binary is None:
            continue
        try:
            _iptables_sync(binary, tag, bridges)
        except (RuntimeFailure, OSError, subprocess.SubprocessError) as e:
            errors.append(str(e))
    if errors:
        raise RuntimeFailure("; ".join(errors))
