"""Clients of a rootless engine's published ports, and what the container sees of them.

``ClientNetns`` is a client elsewhere: a network namespace of the test's own behind a veth to
the host (addresses from a /30 of 10.200-249.x), so a connection to the host's end reaches the
host from an address that is not one of the host's own. Traffic stays on this machine; both
ends go at exit. ``clients_seen`` runs a busybox httpd with a published port and GETs from
there, then from the host's own addresses and its loopback.

    with ClientNetns() as c:
        c.get(f"http://{c.host_addr}:{port}/hostname")     # from c.addr, retried until it answers
    sent, seen = clients_seen(d, "web")                    # what each tool keeps: seen vs sent
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request

from tests.integration.rootless.user import RootlessDaemon


class ClientNetns:
    def __init__(self) -> None:
        tag = os.urandom(3).hex()
        self.ns, self.host_if = f"brlc{tag}", f"brlh{tag}"
        net = f"10.{200 + int(tag[:2], 16) % 50}.{int(tag[2:4], 16)}"
        self.host_addr, self.addr = f"{net}.1", f"{net}.2"

    def __enter__(self) -> ClientNetns:
        try:
            for cmd in (f"ip netns add {self.ns}",
                        f"ip link add {self.host_if} type veth peer name eth0 netns {self.ns}",
                        f"ip addr add {self.host_addr}/30 dev {self.host_if}", f"ip link set {self.host_if} up",
                        f"ip -n {self.ns} addr add {self.addr}/30 dev eth0", f"ip -n {self.ns} link set eth0 up",
                        f"ip -n {self.ns} link set lo up"):
                subprocess.run(cmd.split(), check=True, capture_output=True)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)

    def get(self, url: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        """GET ``url`` from the namespace (its body on stdout), retried until it answers or
        ``timeout`` runs out (a published port is forwarded up to a second after start)."""
        code = ("import sys, urllib.request; "
                f"sys.stdout.write(urllib.request.urlopen({url!r}, timeout=2).read().decode())")
        deadline = time.monotonic() + timeout
        while True:
            got = subprocess.run(["ip", "netns", "exec", self.ns, sys.executable, "-c", code],
                                 capture_output=True, text=True)
            if got.returncode == 0 or time.monotonic() > deadline:
                return got
            time.sleep(0.2)


def http_get(url: str, timeout: float = 10) -> bytes:
    """GET from the host with retries: pasta binds a published port on the host within a second."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return bytes(r.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def default_route() -> tuple[str, str]:
    """The host's IPv4 default gateway and its address on that route's interface (the address
    pasta would copy into the engine's namespace by default)."""
    gw = subprocess.run(["ip", "-4", "route", "show", "default"], capture_output=True, text=True,
                        check=True).stdout.split()[2]
    src = subprocess.run(["ip", "-4", "route", "get", gw], capture_output=True, text=True, check=True).stdout
    return gw, src.split(" src ")[1].split()[0]


def client_addresses(d: RootlessDaemon, name: str) -> list[str]:
    """The client addresses busybox httpd -vv logged (``[::ffff:A.B.C.D]:port: ...`` lines: two a
    request), in the order they came, each once."""
    logs = d.docker("logs", name)
    return list(dict.fromkeys(re.findall(r"^\[(?:::ffff:)?([0-9.]+)\]:\d+:", logs.stdout + logs.stderr, re.M)))


def clients_seen(d: RootlessDaemon, name: str) -> tuple[list[str], list[str]]:
    """A busybox httpd published on every address; GETs from a client elsewhere, from the host
    to its veth end, to its default-route address and to its loopback. -> (the sources the
    host used, the client addresses the container logged), in that order."""
    from tests.integration.images.registry_proc import free_port
    port = free_port()
    r = d.docker("run", "-d", "--name", name, "-p", f"{port}:80", "busybox", "httpd", "-f", "-vv", "-p", "80",
                 "-h", "/etc")
    assert r.returncode == 0, r.stderr
    want = r.stdout.strip()[:12] + "\n"
    try:
        with ClientNetns() as c:
            got = c.get(f"http://{c.host_addr}:{port}/hostname")
            assert got.stdout == want, got.stderr
            assert client_addresses(d, name) == [c.addr]
            own = default_route()[1]
            for host in (c.host_addr, own, "127.0.0.1"):
                assert http_get(f"http://{host}:{port}/hostname") == want.encode()
        return [c.addr, c.host_addr, own, "127.0.0.1"], client_addresses(d, name)
    finally:
        d.docker("rm", "-f", name)
