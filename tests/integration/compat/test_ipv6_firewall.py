"""IPv6 networks and the firewall back ends, against a real berthd in a network namespace of
its own (the host's firewall and sysctls are never touched).

- nftables (the default), with ``--ipv6 --fixed-cidr-v6`` for the default bridge: IPv6
  addresses, container to container over IPv6, ``--ip6``, AAAA from the embedded DNS, a
  published port on ``[::1]`` and on the namespace's IPv6 address, Docker's inspect fields.
- iptables-legacy (forced by BERTH_FIREWALL_BACKEND): berth's chains in iptables and ip6tables,
  nothing in nftables, and the same traffic under a FORWARD DROP policy (what Docker and ufw
  leave) with br_netfilter on; every chain gone when berthd stops.
- ``--iptables=false``: berthd writes no rule at all.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon

pytestmark = pytest.mark.root

DOCKER = "/usr/local/bin/docker"
NS_ADDR6 = "fd00:e0::1"        # the namespace's own (uplink) IPv6 address
SUBNET6 = "fd00:b1::/64"
DEFAULT6 = "fd00:b0::/64"
WEB = "mkdir /www && echo hello-v6 > /www/index.html && exec httpd -f -p 80 -h /www"


def sh(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, f"{argv}: {r.stdout}{r.stderr}"
    return r


def in_ns(ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("nsenter", f"--net=/run/netns/{ns}", "--", *argv, check=check)


def fetch6(ns: str, host: str, port: int) -> str:
    """An HTTP GET from the namespace itself (the host's side), over IPv6."""
    code = ("import socket,sys\n"
            f"s=socket.create_connection(('{host}',{port}),timeout=5)\n"
            "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
            "d=b''\n"
            "while (b:=s.recv(4096)): d+=b\n"
            "sys.stdout.write(d.decode(errors='replace'))\n")
    return in_ns(ns, sys.executable, "-c", code).stdout


class Berthd:
    def __init__(self, ns: str, args: list[str], env: dict[str, str] | None = None):
        self.ns = ns
        sh("ip", "netns", "add", ns)
        try:
            self._uplink(ns)
        except BaseException:
            sh("ip", "netns", "del", ns, check=False)
            raise
        self.d = Daemon(netns=ns, args=args, env=env)

    @staticmethod
    def _uplink(ns: str) -> None:
        in_ns(ns, "ip", "link", "set", "lo", "up")
        in_ns(ns, "ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1")
        in_ns(ns, "ip", "link", "set", "uplink1", "up")
        in_ns(ns, "ip", "addr", "add", "198.51.100.1/24", "dev", "uplink0")
        in_ns(ns, "ip", "addr", "add", f"{NS_ADDR6}/64", "dev", "uplink0", "nodad")
        in_ns(ns, "ip", "link", "set", "uplink0", "up")

    def start(self) -> None:
        self.d.start()
        self.d.import_busybox("busybox:latest")

    def docker(self, *args: str, ok: bool = True) -> str:
        r = subprocess.run([DOCKER, *args], env=self.d.env, capture_output=True, text=True, timeout=90)
        if ok:
            assert r.returncode == 0, f"docker {args}: {r.stdout}{r.stderr}"
        return r.stdout

    def close(self) -> None:
        try:
            self.d.remove_all_containers()
            for n in json.loads(self.d.request("GET", "/networks")[1]):
                if n["Name"] not in ("bridge", "host", "none"):
                    self.d.request("DELETE", f"/networks/{n['Id']}")
        except OSError:
            pass
        self.d.cleanup()
        sh("ip", "netns", "del", self.ns, check=False)


def _ns() -> str:
    return f"b6{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def nft6() -> Iterator[Berthd]:
    if not shutil.which("nft"):
        pytest.fail("needs nft (.ci/run installs nftables)")
    b = Berthd(_ns(), ["--ipv6", "--fixed-cidr-v6", DEFAULT6], env={"BERTH_FIREWALL_BACKEND": "nftables"})
    try:
        b.start()
        yield b
    finally:
        b.close()


def test_ipv6_network_container_to_container_ip6_and_aaaa(nft6: Berthd) -> None:
    net = f"v6{uuid.uuid4().hex[:6]}"
    nft6.docker("network", "create", "--ipv6", "--subnet", SUBNET6, net)
    info = json.loads(nft6.docker("network", "inspect", net))[0]
    assert info["EnableIPv6"] is True
    assert {"Subnet": SUBNET6, "Gateway": "fd00:b1::1"} in info["IPAM"]["Config"]
    nft6.docker("run", "-d", "--name", "web6", "--network", net, "--ip6", "fd00:b1::10", "busybox:latest",
                "sh", "-c", WEB)
    c = json.loads(nft6.docker("inspect", "web6"))[0]
    ep = c["NetworkSettings"]["Networks"][net]
    assert (ep["GlobalIPv6Address"], ep["GlobalIPv6PrefixLen"], ep["IPv6Gateway"]) == ("fd00:b1::10", 64, "fd00:b1::1")
    assert ep["IPAMConfig"] == {"IPv6Address": "fd00:b1::10"}
    net_info = json.loads(nft6.docker("network", "inspect", net))[0]
    assert net_info["Containers"][c["Id"]]["IPv6Address"] == "fd00:b1::10/64"
    script = ("for i in $(seq 20); do wget -q -O - http://[fd00:b1::10]/ && break; sleep 0.2; done; "
              "nslookup -type=AAAA web6 127.0.0.11; ip -6 route")
    out = nft6.docker("run", "--rm", "--network", net, "busybox:latest", "sh", "-c", script)
    assert "hello-v6" in out, out
    assert "fd00:b1::10" in out.split("hello-v6", 1)[1], out        # the AAAA answer
    assert "default via fd00:b1::1" in out, out
    r = subprocess.run([DOCKER, "run", "--rm", "--network", net, "--ip6", "fd00:b1::10", "busybox:latest", "true"],
                       env=nft6.d.env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "in use" in r.stderr, r.stderr
    r = subprocess.run([DOCKER, "run", "--rm", "--ip6", "fd00:b0::9", "busybox:latest", "true"],
                       env=nft6.d.env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 125 and "user defined networks" in r.stderr, r.stderr
    nft6.docker("rm", "-f", "web6")
    nft6.docker("network", "rm", net)


def test_published_port_answers_on_ipv6_loopback_and_address(nft6: Berthd) -> None:
    net = f"v6{uuid.uuid4().hex[:6]}"
    nft6.docker("network", "create", "--ipv6", net)                   # a ULA /64 of berth's choice
    nft6.docker("run", "-d", "--name", "pub6", "--network", net, "-p", "18086:80", "busybox:latest", "sh", "-c", WEB)
    try:
        c = json.loads(nft6.docker("inspect", "pub6"))[0]
        assert c["NetworkSettings"]["Networks"][net]["GlobalIPv6Address"].startswith("fd")
        assert {"HostIp": "::", "HostPort": "18086"} in c["NetworkSettings"]["Ports"]["80/tcp"]
        for host in ("::1", NS_ADDR6):
            body = ""
            for _ in range(20):
                try:
                    body = fetch6(nft6.ns, host, 18086)
                    break
                except AssertionError:
                    time.sleep(0.1)
            assert "hello-v6" in body, (host, body)
        assert "ip6 daddr != ::1 fib daddr type local jump ports" in in_ns(nft6.ns, "nft", "list", "ruleset").stdout
    finally:
        nft6.docker("rm", "-f", "pub6")
        nft6.docker("network", "rm", net)


def test_default_bridge_gets_fixed_cidr_v6(nft6: Berthd) -> None:
    out = nft6.docker("run", "--rm", "busybox:latest", "sh", "-c", "ip -6 addr show eth0; cat /etc/hosts")
    assert "inet6 fd00:b0::" in out, out
    assert any(line.startswith("fd00:b0::") for line in out.splitlines()), out   # its own name, as Docker
    info = json.loads(nft6.docker("network", "inspect", "bridge"))[0]
    assert info["EnableIPv6"] is True and any(c["Subnet"] == DEFAULT6 for c in info["IPAM"]["Config"])


# -- iptables back end ----------------------------------------------------------------------

def _legacy() -> None:
    for b in ("iptables-legacy", "ip6tables-legacy", "iptables-legacy-restore"):
        if not shutil.which(b):
            pytest.fail(f"needs {b} (.ci/run installs iptables)")
    if not Path("/proc/sys/net/bridge").is_dir() and shutil.which("modprobe"):
        sh("modprobe", "br_netfilter", check=False)


def test_iptables_legacy_back_end_under_forward_drop() -> None:
    _legacy()
    b = Berthd(_ns(), [], env={"BERTH_FIREWALL_BACKEND": "iptables-legacy"})
    try:
        for tool in ("iptables-legacy", "ip6tables-legacy"):
            in_ns(b.ns, tool, "-w", "-P", "FORWARD", "DROP")
        for fam in ("iptables", "ip6tables"):   # bridged traffic goes through FORWARD too
            in_ns(b.ns, "sh", "-c", f"echo 1 > /proc/sys/net/bridge/bridge-nf-call-{fam} || true")
        b.start()
        net = "v6legacy"
        b.docker("network", "create", "--ipv6", "--subnet", SUBNET6, net)
        b.docker("run", "-d", "--name", "web", "--network", net, "--ip6", "fd00:b1::10", "-p", "18087:80",
                 "busybox:latest", "sh", "-c", WEB)
        out = b.docker("run", "--rm", "--network", net, "busybox:latest", "sh", "-c",
                       "for i in $(seq 20); do wget -q -O - http://web/ && break; sleep 0.2; done; "
                       "timeout 5 wget -q -O - http://[fd00:b1::10]/")
        assert out.count("hello-v6") == 2, out
        nat4 = in_ns(b.ns, "iptables-legacy", "-w", "-t", "nat", "-S").stdout
        assert "--to-destination" in nat4 and "-A PREROUTING -m addrtype --dst-type LOCAL -j BERTH-PORTS" in nat4
        nat6 = in_ns(b.ns, "ip6tables-legacy", "-w", "-t", "nat", "-S").stdout
        assert "--to-destination [fd00:b1::10]:80" in nat6, nat6
        assert "-j BERTH-F" in in_ns(b.ns, "iptables-legacy", "-w", "-S", "FORWARD").stdout
        assert "-j BERTH-F" in in_ns(b.ns, "ip6tables-legacy", "-w", "-S", "FORWARD").stdout
        if shutil.which("nft"):
            assert "berth" not in in_ns(b.ns, "nft", "list", "tables").stdout
        assert "hello-v6" in fetch6(b.ns, NS_ADDR6, 18087)
        assert "hello-v6" in fetch6(b.ns, "::1", 18087)
        b.docker("rm", "-f", "web")
        b.docker("network", "rm", net)
        b.d.stop()
        for tool in ("iptables-legacy", "ip6tables-legacy"):
            for table in ("nat", "filter"):
                left = in_ns(b.ns, tool, "-w", "-t", table, "-S").stdout
                assert "BERTH" not in left, (tool, table, left)
    finally:
        b.close()


def test_iptables_false_writes_no_rules() -> None:
    _legacy()
    b = Berthd(_ns(), ["--iptables=false"])
    try:
        before = {t: in_ns(b.ns, t, "-w", "-S").stdout for t in ("iptables-legacy", "ip6tables-legacy")}
        b.start()
        b.docker("run", "-d", "--name", "pub", "-p", "18088:80", "busybox:latest", "sleep", "60")
        out = b.docker("run", "--rm", "busybox:latest", "ip", "-4", "addr", "show", "eth0")
        assert "inet 172." in out, out       # the bridge itself still works
        if shutil.which("nft"):
            assert in_ns(b.ns, "nft", "list", "ruleset").stdout.strip() == ""
        for tool, text in before.items():
            assert in_ns(b.ns, tool, "-w", "-S").stdout == text
            assert "BERTH" not in in_ns(b.ns, tool, "-w", "-t", "nat", "-S").stdout
    finally:
        b.close()
