"""A client elsewhere, for the rootless published-port tests: a network namespace of the test's
own behind a veth to the host (addresses from a /30 of 10.200-249.x), so a connection to the
host's end reaches the host from an address that is not one of the host's own. Traffic stays
on this machine; both ends go at exit.

    with ClientNetns() as c:
        c.get(f"http://{c.host_addr}:{port}/hostname")     # from c.addr, retried until it answers
"""

from __future__ import annotations

import os
import subprocess
import sys
import time


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
