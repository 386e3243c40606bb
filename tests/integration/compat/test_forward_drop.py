"""berth's bridges work beside a firewall whose forward path drops (Docker, ufw, firewalld).

Docker 20.10+ behaviour: dockerd sets the iptables FORWARD policy to DROP and makes its own
bridges work anyway through its DOCKER-USER / DOCKER-FORWARD chains (Docker 28: DOCKER-FORWARD,
DOCKER-CT, DOCKER-BRIDGE); netavark and firewalld's "docker" zone do the same. With
br_netfilter, even traffic between two containers on one bridge passes that hook. berth must
make its bridges work whatever the host's filter policy is, and leave nothing behind.

The host's firewall is never touched: berthd runs in a network namespace of its own
(``Daemon(netns=...)``), where iptables-legacy and iptables-nft get ``-P FORWARD DROP`` and an
nftables table gets a forward base chain with policy drop (firewalld's kind). A
veth pair to a second namespace is "the world", and its end in berthd's namespace has "the
host address".
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from berth.network.forward import chain_name
from tests.integration.daemon import Daemon

pytestmark = pytest.mark.root

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


def _br_netfilter() -> bool:
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


@pytest.fixture(scope="module")
def fw() -> Iterator[Firewalled]:
    if not _br_netfilter():
        pytest.skip("br_netfilter is not available")
    if not shutil.which("nft"):
        pytest.fail("needs nft (.ci/run installs nftables)")
    tag = uuid.uuid4().hex[:6]
    ns, world = f"bfw{tag}", f"bfwout{tag}"
    _make_netns(ns, world)
    d = Daemon(netns=ns)
    web_root = d.base / "www"
    world_proc = None
    try:
        d.start()
        d.import_busybox("busybox:latest")
        web_root.mkdir()
        (web_root / "index.html").write_text("hello from the world\n")
        world_proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{world}", "--", "busybox", "httpd", "-f",
                                       "-p", f"{WORLD_ADDR}:8080", "-h", str(web_root)])
        fw = Firewalled(ns, world, d)
        ok(fw.docker("run", "--rm", "busybox:latest", "true"))   # berthd sets its network up lazily
        yield fw
    finally:
        if world_proc is not None:
            world_proc.kill()
            world_proc.wait()
        d.cleanup()
        _remove_netns(ns, world)


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.fixture
def made(fw: Firewalled) -> Iterator[Callable[[str, str], str]]:
    """made("container"|"network", name): removed after the test."""
    names: list[tuple[str, str]] = []

    def add(kind: str, name: str) -> str:
        names.append((kind, name))
        return name
    yield add
    for kind, name in reversed(names):
        fw.docker("rm", "-f", name) if kind == "container" else fw.docker("network", "rm", name)


def _web(fw: Firewalled, made: Callable[[str, str], str], *args: str) -> str:
    name = made("container", f"web{_uid()}")
    ok(fw.docker("run", "-d", "--name", name, *args, "busybox:latest", "sh", "-c",
                 "mkdir /www && echo hello-from-web > /www/index.html && exec httpd -f -p 80 -h /www"))
    return name


def _fetch(fw: Firewalled, net: str, url: str, tries: int = 10) -> subprocess.CompletedProcess[str]:
    """wget from a fresh container; retries a short while for the server to listen. The last
    exit status goes to stderr: 143 is a timeout (this busybox's ``wget -T`` crashes)."""
    script = (f"for i in $(seq {tries}); do timeout 3 wget -q -O - {url} && exit 0; rc=$?; sleep 0.2; done; "
              "echo rc=$rc >&2; exit 1")
    return fw.docker("run", "--rm", "--network", net, "busybox:latest", "sh", "-c", script, timeout=120)


def test_containers_on_user_network_reach_each_other_by_name(fw: Firewalled, made) -> None:
    net = made("network", f"fwnet{_uid()}")
    ok(fw.docker("network", "create", net))
    web = _web(fw, made, "--network", net)
    r = _fetch(fw, net, f"http://{web}/")
    assert r.returncode == 0 and r.stdout == "hello-from-web\n", r.stdout + r.stderr


@pytest.mark.parametrize("where", [*IPTABLES, "nft"])
def test_forward_drop_really_drops_without_berths_rules(fw: Firewalled, made, where: str) -> None:
    """The control: take berth's rules out of any one of the firewalls and the same traffic
    times out (a packet must be accepted by every base chain on the hook); it works again
    when berth next applies its rules (here: another network is created)."""
    net = made("network", f"fwnet{_uid()}")
    ok(fw.docker("network", "create", net))
    web = _web(fw, made, "--network", net)
    assert _fetch(fw, net, f"http://{web}/").returncode == 0
    assert any(r.startswith(f"{where}:") for r in fw.berth_rules()), fw.berth_rules()
    fw.drop_berth_rules(where)
    assert not any(r.startswith(f"{where}:") for r in fw.berth_rules()), fw.berth_rules()
    r = _fetch(fw, net, f"http://{web}/", tries=1)
    assert r.returncode != 0 and "rc=143" in r.stderr, r.stdout + r.stderr
    other = made("network", f"fwnet{_uid()}")
    ok(fw.docker("network", "create", other))
    assert _fetch(fw, net, f"http://{web}/").returncode == 0


def test_container_reaches_published_port_through_host_address(fw: Firewalled, made) -> None:
    """Server on a user network, client on the default bridge: DNAT then bridge to bridge."""
    net = made("network", f"fwnet{_uid()}")
    ok(fw.docker("network", "create", net))
    web = _web(fw, made, "--network", net, "-p", "18080:80")
    assert web
    r = _fetch(fw, "bridge", f"http://{HOST_ADDR}:18080/")
    assert r.returncode == 0 and r.stdout == "hello-from-web\n", r.stdout + r.stderr


def test_container_reaches_the_world_through_masquerade(fw: Firewalled) -> None:
    r = _fetch(fw, "bridge", f"http://{WORLD_ADDR}:8080/")
    assert r.returncode == 0 and r.stdout == "hello from the world\n", r.stdout + r.stderr


def test_connect_then_reach_by_name(fw: Firewalled, made) -> None:
    net = made("network", f"fwnet{_uid()}")
    ok(fw.docker("network", "create", net))
    web = _web(fw, made)
    ok(fw.docker("network", "connect", net, web))
    r = _fetch(fw, net, f"http://{web}/")
    assert r.returncode == 0 and r.stdout == "hello-from-web\n", r.stdout + r.stderr


def test_rules_follow_the_bridges(fw: Firewalled) -> None:
    """A network's bridge gets rules in every dropping firewall; they go with the network."""
    net = f"fwnet{_uid()}"
    ok(fw.docker("network", "create", net))
    try:
        bridge = "br-" + ok(fw.docker("network", "inspect", "-f", "{{.Id}}", net)).strip()[:12]
        rules = fw.berth_rules()
        for where in [*IPTABLES, "nft"]:
            assert any(r.startswith(f"{where}:") and bridge in r for r in rules), (where, rules)
    finally:
        ok(fw.docker("network", "rm", net))
    assert not any(bridge in r for r in fw.berth_rules())
    assert fw.berth_rules(), "the default bridge's rules went too"


def test_nothing_left_after_berthd_stops() -> None:
    """A berthd with no running containers that stops removes its chains and rules."""
    if not _br_netfilter() or not shutil.which("nft"):
        pytest.skip("needs br_netfilter and nft")
    tag = uuid.uuid4().hex[:6]
    ns, world = f"bfw{tag}", f"bfwout{tag}"
    _make_netns(ns, world)
    d = Daemon(netns=ns)
    try:
        d.start()
        d.import_busybox("busybox:latest")
        fw = Firewalled(ns, world, d)
        ok(fw.docker("run", "--rm", "busybox:latest", "true"))   # berthd sets its network up lazily
        ok(fw.docker("network", "create", "leftover"))
        assert fw.berth_rules()
        d.stop()
        assert fw.berth_rules() == []
        assert "table ip berth" not in in_ns(ns, "nft", "list", "tables").stdout
    finally:
        d.cleanup()
        _remove_netns(ns, world)
