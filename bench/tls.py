"""`docker run --rm busybox true` over TLS (tcp://, client certificates) against the Unix socket,
one berthd serving both, alternating run by run (not a test).

    python bench/tls.py [--runs 20]

Also: a fresh TLS connection's handshake + GET /_ping, against the same over the Unix socket.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.daemon import Daemon  # noqa: E402
from tests.integration.remote.certs import make_certs  # noqa: E402
from tests.integration.remote.conftest import free_port  # noqa: E402

DOCKER = "/usr/local/bin/docker"


def run(env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([DOCKER, "run", "--rm", "busybox", "true"], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def ping_tls(port: int, ctx: ssl.SSLContext) -> float:
    t0 = time.perf_counter()
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost") as s:
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while s.recv(4096):
            pass
    return time.perf_counter() - t0


def ping_unix(path: str) -> float:
    t0 = time.perf_counter()
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while s.recv(4096):
            pass
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    bench(ap.parse_args().runs)


def bench(runs: int) -> None:
    """The figures, on a berthd of their own (bench/engine.py --only tls runs this too)."""
    with tempfile.TemporaryDirectory(prefix="berth-bench-tls-") as tmp:
        certs = make_certs(Path(tmp))
        port = free_port()
        d = Daemon(args=["-H", f"tcp://127.0.0.1:{port}", "--tlsverify", f"--tlscacert={certs.ca / 'ca.pem'}",
                         f"--tlscert={certs.server / 'cert.pem'}", f"--tlskey={certs.server / 'key.pem'}",
                         "--log-level", "info"])
        d.start()
        try:
            d.import_busybox()
            base = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
            unix = {**base, "DOCKER_HOST": d.host}
            tls = {**base, "DOCKER_HOST": f"tcp://127.0.0.1:{port}", "DOCKER_TLS_VERIFY": "1",
                   "DOCKER_CERT_PATH": str(certs.client)}
            run(unix), run(tls)  # warm up
            times: dict[str, list[float]] = {"unix": [], "tls": []}
            for _ in range(runs):
                times["unix"].append(run(unix))
                times["tls"].append(run(tls))
            ctx = ssl.create_default_context(cafile=str(certs.ca / "ca.pem"))
            ctx.load_cert_chain(str(certs.client / "cert.pem"), str(certs.client / "key.pem"))
            pings: dict[str, list[float]] = {"unix": [], "tls": []}
            for _ in range(200):
                pings["unix"].append(ping_unix(str(d.sock)))
                pings["tls"].append(ping_tls(port, ctx))
        finally:
            d.cleanup()
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"docker run --rm busybox true, median of {runs}: unix {med['unix']:.1f} ms, "
          f"tls {med['tls']:.1f} ms, tls - unix {med['tls'] - med['unix']:+.1f} ms")
    pm = {k: statistics.median(v) * 1000 for k, v in pings.items()}
    print(f"new connection + GET /_ping, median of 200: unix {pm['unix']:.2f} ms, tls {pm['tls']:.2f} ms "
          f"(handshake with client certificate {pm['tls'] - pm['unix']:+.2f} ms)")
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus")


if __name__ == "__main__":
    main()
