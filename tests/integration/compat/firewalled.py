"""A network namespace whose forward path drops (what Docker, ufw and firewalld do to a host),
with a berthd in it and a second namespace behind a veth pair as "the world".

The host's firewall is never touched: in berthd's namespace iptables-legacy and iptables-nft get
``-P FORWARD DROP`` and an nftables table gets a forward base chain with policy drop
(firewalld's kind); the veth's end there has "the host address". Shared by test_forward_drop
and test_icc:

    with firewalled("bfw", lambda d: ["busybox", "httpd", ...]) as fw:
        fw.docker("run", ...)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from berth.network.forward import chain_name
from tests.integration.daemon import Daemon

DOCKER = "/usr/local/bin/docker"
HOST_ADDR = "198.51.100.1"         # the namespace's own address (its uplink)
WORLD_ADDR = "198.51.100.2"        # a listener outside, behind a veth pair
FIREWALL_TABLE = "fwtest"          # the stand-in for firewalld's table
IPTABLES = [b for b in ("iptables-legacy", "iptables-nft") if shutil.which(b)]


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, f"{argv}: {r.stdout}{r.stderr}"
    return r


def in_ns(ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("nsenter", f"--net=/run/netns/{ns}", "--", *argv, check=check)


def br_netfilter() -> bool:
    if not Path("/proc/sys/net/bridge").is_dir() and shutil.which("modprobe"):
        sh("modprobe", "br_netfilter", check=False)
    return Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists()


@dataclass
class Firewalled:
    """A netns whose forward path drops, with a berthd in it."""
    ns: str
    world: str
    daemon: Daemon

    def docker(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DOCKER, *args], env=self.daemon.env, capture_output=True, text=True,
                              timeout=timeout)

    @property
    def tag(self) -> str:
        from berth.engine.networks import instance_of
        inst = instance_of(self.daemon.data_root)
        return chain_name("berth" + (f"_{inst}" if inst else ""))

    def berth_rules(self) -> list[str]:
        """Every trace of berth's forward rules outside berth's own nft table."""
        found = []
        for b in IPTABLES:
            found += [f"{b}: {line}" for line in in_ns(self.ns, b, "-w", "-S", check=False).stdout.splitlines()
                      if self.tag in line]
        ruleset = in_ns(self.ns, "nft", "-a", "list", "table", "inet", FIREWALL_TABLE).stdout
        found += [f"nft: {line.strip()}" for line in ruleset.splitlines() if self.tag in line]
        return found

    def drop_berth_rules(self, where: str) -> None:
        """Take berth's rules out of one firewall (what its reload would do): an iptables
        binary's name, or "nft"."""
        if where != "nft":
            while in_ns(self.ns, where, "-w", "-D", "FORWARD", "-j", self.tag, check=False).returncode == 0:
                pass
            in_ns(self.ns, where, "-w", "-F", self.tag)
            in_ns(self.ns, where, "-w", "-X", self.tag)
            return
        ruleset = json.loads(in_ns(self.ns, "nft", "-j", "-a", "list", "table", "inet", FIREWALL_TABLE).stdout)
        for item in ruleset["nftables"]:
            r = item.get("rule")
            if r and r.get("comment") == self.tag:
                in_ns(self.ns, "nft", "delete", "rule", "inet", FIREWALL_TABLE, r["chain"], "handle", str(r["handle"]))


def _make_netns(ns: str, world: str) -> None:
    sh("ip", "netns", "add", ns)
    sh("ip", "netns", "add", world)
    try:
        _set_up_netns(ns, world)
    except BaseException:
        _remove_netns(ns, world)
        raise


def _set_up_netns(ns: str, world: str) -> None:
    in_ns(ns, "ip", "link", "set", "lo", "up")
    # br_netfilter's switches are per netns on kernel 6.x: bridged IPv4 goes through FORWARD.
    in_ns(ns, "sh", "-c", "echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables")
    in_ns(ns, "ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "eth0", "netns", world)
    in_ns(ns, "ip", "addr", "add", f"{HOST_ADDR}/24", "dev", "uplink0")
    in_ns(ns, "ip", "link", "set", "uplink0", "up")
    in_ns(world, "ip", "link", "set", "lo", "up")
    in_ns(world, "ip", "addr", "add", f"{WORLD_ADDR}/24", "dev", "eth0")
    in_ns(world, "ip", "link", "set", "eth0", "up")
    # The firewalls: what Docker / ufw do to iptables, and what firewalld does in nftables.
    for b in IPTABLES:
        in_ns(ns, b, "-w", "-P", "FORWARD", "DROP")
    subprocess.run(["nsenter", f"--net=/run/netns/{ns}", "--", "nft", "-f", "-"], check=True, text=True,
                   input=f"table inet {FIREWALL_TABLE} {{\n chain forward {{\n"
                         "  type filter hook forward priority filter + 10; policy drop;\n"
                         "  iifname \"uplink0\" oifname \"uplink0\" accept\n }\n}\n")


def _remove_netns(ns: str, world: str) -> None:
    sh("ip", "netns", "del", ns, check=False)
    sh("ip", "netns", "del", world, check=False)


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@contextmanager
def firewalled(prefix: str, world: Callable[[Daemon], list[str]] | None, args: list[str] | None = None,
               env: dict[str, str] | None = None) -> Iterator[Firewalled]:
    """A berthd (``args``, ``env``) with busybox in a fresh firewalled namespace; ``world(d)``, if
    given, is the command run in the world's namespace for as long as it lasts. Everything is removed
    after. Fails when nft is missing (.ci/run installs it)."""
    if not shutil.which("nft"):
        pytest.fail("needs nft (.ci/run installs nftables)")
    tag = uuid.uuid4().hex[:6]
    ns, world_ns = f"{prefix}{tag}", f"{prefix}out{tag}"
    _make_netns(ns, world_ns)
    d = Daemon(netns=ns, args=args, env=env)
    world_proc = None
    try:
        d.start()
        d.import_busybox("busybox:latest")
        if world is not None:
            world_proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{world_ns}", "--", *world(d)])
        yield Firewalled(ns, world_ns, d)
    finally:
        if world_proc is not None:
            world_proc.kill()
            world_proc.wait()
        d.cleanup()
        _remove_netns(ns, world_ns)
