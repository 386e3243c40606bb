"""Network benchmarks against a berthd on temporary roots (not a test).

    python bench/network/run.py [--mib 1024] [--conns 2000] [--runs 20]

(a) TCP throughput and connection rate from the host to a published port (127.0.0.1:P ->
    container:5001), against the same server on host loopback (the floor);
(b) container to container over a user network (by name), against the floor;
(c) `docker run --rm --network bridge busybox true` vs `--network none` latency (the cost of
    network setup).

The same program serves and sends everywhere: the host's python3, which containers run through
a read-only bind of / and chroot (busybox has no fast TCP sink), so the only difference
between a figure and its floor is the path the bytes take. All traffic stays on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.integration.daemon import Daemon  # noqa: E402

DOCKER = "/usr/local/bin/docker"
PY = "/usr/bin/python3"

# A sink that reports bytes and seconds on its first connection with data, and an accept/close
# loop for the connection rate; the same code runs on the host and in containers.
SERVER = r"""
import socket, sys, time
mode, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port)); s.listen(512)
print("ready", flush=True)
if mode == "sink":
    while True:
        c, _ = s.accept(); buf = bytearray(1 << 20); n = 0
        while True:
            k = c.recv_into(buf)
            if not k: break
            n += k
        c.sendall(b"%d" % n); c.close()
else:
    while True:
        c, _ = s.accept(); c.close()
"""

CLIENT = r"""
import socket, sys, time
mode, host, port, amount = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if mode == "send":
    buf = b"x" * (1 << 20)
    t = time.perf_counter(); c = socket.create_connection((host, port))
    for _ in range(amount): c.sendall(buf)
    c.shutdown(socket.SHUT_WR); got = int(c.recv(64)); dt = time.perf_counter() - t
    assert got == amount << 20, got
    print(f"{amount / dt:.1f}")
else:
    t = time.perf_counter()
    for _ in range(amount):
        c = socket.create_connection((host, port)); c.recv(1); c.close()
    print(f"{amount / (time.perf_counter() - t):.0f}")
"""


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Bench:
    def __init__(self, d: Daemon):
        self.d = d

    def docker(self, *args: str, check: bool = True) -> str:
        r = subprocess.run([DOCKER, *args], env=self.d.env, capture_output=True, text=True, timeout=600)
        if check and r.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {r.stderr}")
        return r.stdout

    def timed(self, *args: str) -> float:
        t = time.perf_counter()
        self.docker(*args)
        return time.perf_counter() - t

    def server(self, name: str, mode: str, extra: list[str]) -> None:
        self.docker("run", "-d", "--name", name, "-v", "/:/host:ro", *extra, "busybox",
                    "chroot", "/host", PY, "-c", SERVER, mode, "5001")
        deadline = time.monotonic() + 10
        while "ready" not in self.docker("logs", name):
            if time.monotonic() > deadline:
                raise RuntimeError(f"server {name} did not start")
            time.sleep(0.05)

    def client_in(self, net: str, mode: str, name: str, *args: str) -> float:
        # The name is resolved in the container (the embedded DNS); the chroot has the host's
        # resolv.conf, which must not be used: no query may leave the machine.
        script = (f'ip=$(ping -c1 -W2 {name} | sed -n "1s/.*(\\(.*\\)).*/\\1/p") && '
                  f'exec chroot /host {PY} -c "$0" {mode} "$ip" "$@"')
        out = self.docker("run", "--rm", "--network", net, "-v", "/:/host:ro", "busybox",
                          "sh", "-c", script, CLIENT, *args)
        return float(out.strip().splitlines()[-1])


def host_server(mode: str, port: int) -> subprocess.Popen[str]:
    p = subprocess.Popen([PY, "-c", SERVER, mode, str(port)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and "ready" in p.stdout.readline()
    return p


def host_client(*args: str) -> float:
    return float(subprocess.run([PY, "-c", CLIENT, *args], capture_output=True, text=True,
                                check=True).stdout.strip())


def best(fn, n: int = 3) -> float:  # type: ignore[no-untyped-def]
    return max(fn() for _ in range(n))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1024, help="MiB per throughput run")
    ap.add_argument("--conns", type=int, default=2000, help="connections per rate run")
    ap.add_argument("--runs", type=int, default=20, help="docker run samples per network mode")
    ap.add_argument("--mtu", type=int, default=0, help="also measure container to container on a network "
                    "with this MTU (com.docker.network.driver.mtu)")
    a = ap.parse_args()
    d = Daemon()
    d.start()
    results: dict[str, float] = {}
    procs: list[subprocess.Popen[str]] = []
    b = Bench(d)
    try:
        d.import_busybox()
        # (a) the floor: host loopback
        ps, pc = free_port(), free_port()
        procs += [host_server("sink", ps), host_server("accept", pc)]
        results["floor_MiB_s"] = best(lambda: host_client("send", "127.0.0.1", str(ps), str(a.mib)))
        results["floor_conn_s"] = best(lambda: host_client("conn", "127.0.0.1", str(pc), str(a.conns)))
        # published ports (DNAT from 127.0.0.1)
        ps2, pc2 = free_port(), free_port()
        b.server("bsink", "sink", ["-p", f"127.0.0.1:{ps2}:5001"])
        b.server("bacc", "accept", ["-p", f"127.0.0.1:{pc2}:5001"])
        results["published_MiB_s"] = best(lambda: host_client("send", "127.0.0.1", str(ps2), str(a.mib)))
        results["published_conn_s"] = best(lambda: host_client("conn", "127.0.0.1", str(pc2), str(a.conns)))
        # (b) container to container, by name on a user network
        b.docker("network", "create", "benchnet")
        b.server("csink", "sink", ["--network", "benchnet"])
        b.server("cacc", "accept", ["--network", "benchnet"])
        results["c2c_MiB_s"] = best(lambda: b.client_in("benchnet", "send", "csink", "5001", str(a.mib)))
        results["c2c_conn_s"] = best(lambda: b.client_in("benchnet", "conn", "cacc", "5001", str(a.conns)))
        if a.mtu:
            b.docker("network", "create", "-o", f"com.docker.network.driver.mtu={a.mtu}", "benchmtu")
            b.server("msink", "sink", ["--network", "benchmtu"])
            results[f"c2c_mtu{a.mtu}_MiB_s"] = best(lambda: b.client_in("benchmtu", "send", "msink", "5001",
                                                                        str(a.mib)))
        # (c) run latency, alternating the modes
        for _ in range(3):
            b.timed("run", "--rm", "busybox", "true")
        bridge, none = [], []
        for _ in range(a.runs):
            bridge.append(b.timed("run", "--rm", "--network", "bridge", "busybox", "true"))
            none.append(b.timed("run", "--rm", "--network", "none", "busybox", "true"))
        results["run_bridge_ms"] = statistics.median(bridge) * 1000
        results["run_none_ms"] = statistics.median(none) * 1000
        results["network_setup_ms"] = results["run_bridge_ms"] - results["run_none_ms"]
        results["published_vs_floor"] = results["published_MiB_s"] / results["floor_MiB_s"]
        results["c2c_vs_floor"] = results["c2c_MiB_s"] / results["floor_MiB_s"]
    finally:
        for p in procs:
            p.kill()
            p.wait()
        try:
            d.remove_all_containers()
            b.docker("network", "rm", "benchnet", check=False)
            b.docker("network", "rm", "benchmtu", check=False)
        finally:
            d.cleanup()
    for k, v in results.items():
        print(f"{k:22s} {v:12.2f}")
    print(json.dumps({k: round(v, 3) for k, v in results.items()}))


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("bench/network/run.py: run as root")
    main()
