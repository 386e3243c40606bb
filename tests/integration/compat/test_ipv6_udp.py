"""UDP published ports on [::1] (``-p [::1]:P:53/udp``, and ``-p P:53/udp`` with IPv6 on): the
kernel cannot DNAT from ::1 out through a bridge, so berthd relays the datagrams (as it copies
TCP connections there), and replies go back to each client.

The UDP echo runs in the container's network namespace: Debian's static busybox has no UDP
server (its nc has no -u, and there is no udpsvd), so a small Python echo is started there with
nsenter, bound to [::]:53 of the container; everything on the way (the host port's socket,
berthd's relay, the bridge) is the real path. berthd runs in a network namespace of its own
(test_ipv6_firewall's set-up), with ``--ipv6 --fixed-cidr-v6`` for the default bridge.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.compat.test_ipv6_firewall import DEFAULT6, NS_ADDR6, Berthd, in_ns

pytestmark = pytest.mark.root

ECHO = """
import socket, time
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 53))
s.settimeout(0.5)
end = time.monotonic() + 60
print("ready", flush=True)
while time.monotonic() < end:
    try:
        data, addr = s.recvfrom(2048)
    except socket.timeout:
        continue
    s.sendto(b"echo:" + data, addr)
"""

CLIENT = """
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
socks = [socket.socket(fam, socket.SOCK_DGRAM) for _ in range(n)]
for i, s in enumerate(socks):
    s.settimeout(3)
    s.sendto(b"ping%d" % i, (host, port))
for s in socks:
    try:
        print(s.recv(2048).decode())
    except socket.timeout:
        print("timeout")
"""


@pytest.fixture(scope="module")
def nft6() -> Iterator[Berthd]:
    if not shutil.which("nft"):
        pytest.fail("needs nft (.ci/run installs nftables)")
    b = Berthd(f"b6u{uuid.uuid4().hex[:7]}", ["--ipv6", "--fixed-cidr-v6", DEFAULT6],
               env={"BERTH_FIREWALL_BACKEND": "nftables"})
    try:
        b.start()
        yield b
    finally:
        b.close()


def _udp_echo(b: Berthd, *publish: str) -> tuple[str, subprocess.Popen[str]]:
    cid = b.docker("run", "-d", *publish, "busybox:latest", "sleep", "120").strip()
    pid = b.docker("inspect", "-f", "{{.State.Pid}}", cid).strip()
    echo = subprocess.Popen(["nsenter", f"--net=/proc/{pid}/ns/net", "--", sys.executable, "-c", ECHO],
                            stdout=subprocess.PIPE, text=True)
    assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
    return cid, echo


def _ask(b: Berthd, host: str, port: int, n: int = 1) -> list[str]:
    return in_ns(b.ns, sys.executable, "-c", CLIENT, host, str(port), str(n)).stdout.split()


def _stop(echo: subprocess.Popen[str]) -> None:
    echo.kill()
    echo.wait()


def test_udp_on_loopback6_only(nft6: Berthd) -> None:
    cid, echo = _udp_echo(nft6, "-p", "[::1]:15353:53/udp")
    try:
        ports = nft6.docker("port", cid)
        assert "53/udp -> [::1]:15353" in ports, ports
        assert _ask(nft6, "::1", 15353, n=3) == ["echo:ping0", "echo:ping1", "echo:ping2"]   # each client its reply
        assert _ask(nft6, "127.0.0.1", 15353) == ["timeout"]     # published on [::1] only
    finally:
        _stop(echo)
        nft6.docker("rm", "-f", cid)
    # the host port is free again once the container is gone
    free = in_ns(nft6.ns, sys.executable, "-c",
                 "import socket; s=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind(('::1', 15353))",
                 check=False)
    assert free.returncode == 0, free.stderr


def test_udp_every_address_with_ipv6(nft6: Berthd) -> None:
    cid, echo = _udp_echo(nft6, "-p", "15354:53/udp")
    try:
        assert _ask(nft6, "::1", 15354, n=2) == ["echo:ping0", "echo:ping1"]          # berthd's relay
        assert _ask(nft6, NS_ADDR6, 15354) == ["echo:ping0"]                          # DNAT (IPv6)
        assert _ask(nft6, "127.0.0.1", 15354) == ["echo:ping0"]                       # DNAT (IPv4)
        # a restarted container gets a fresh relay to its (possibly new) address
        _stop(echo)
        nft6.docker("restart", "-t", "0", cid)
        pid = nft6.docker("inspect", "-f", "{{.State.Pid}}", cid).strip()
        echo = subprocess.Popen(["nsenter", f"--net=/proc/{pid}/ns/net", "--", sys.executable, "-c", ECHO],
                                stdout=subprocess.PIPE, text=True)
        assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 10
        while (got := _ask(nft6, "::1", 15354)) != ["echo:ping0"] and time.monotonic() < deadline:
            pass
        assert got == ["echo:ping0"]
    finally:
        _stop(echo)
        nft6.docker("rm", "-f", cid)
