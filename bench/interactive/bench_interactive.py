"""Interactive benchmarks (not a test): exec latency and attach round trip.

    python bench/interactive/bench_interactive.py [--runs 30] [--other unix:///var/run/docker.sock]

(a) `docker exec C true` through the real docker CLI; (b) the same through the API alone
(create + start + inspect, what the CLI does minus its own start-up); (c) attach round trip:
one byte typed into an attached `cat` on a tty until the same byte comes back echoed.
Runs against a fresh berthd on temporary roots, and with --other (or BENCH_OTHER_HOST) against a
second daemon too (e.g. a real dockerd), alternating; medians and ratios are printed.
"""

from __future__ import annotations

import argparse
import http.client
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


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def _path(host: str) -> str:
    return host.removeprefix("unix://")


def api(host: str, method: str, path: str, body: object = None) -> tuple[int, bytes]:
    c = _Unix(_path(host))
    try:
        data = json.dumps(body).encode() if body is not None else None
        c.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def docker(host: str, *args: str) -> str:
    return subprocess.run([DOCKER, *args], env=dict(os.environ, DOCKER_HOST=host), check=True,
                          capture_output=True, text=True).stdout


def ensure_busybox(host: str, d: Daemon | None) -> None:
    env = dict(os.environ, DOCKER_HOST=host)
    if subprocess.run([DOCKER, "image", "inspect", "busybox:latest"], env=env, capture_output=True).returncode == 0:
        return
    if d is not None:
        d.import_busybox()
        return
    raise SystemExit(f"no busybox:latest image at {host}")


def exec_cli(host: str, cid: str) -> float:
    env = dict(os.environ, DOCKER_HOST=host)
    t0 = time.perf_counter()
    subprocess.run([DOCKER, "exec", cid, "true"], env=env, check=True)
    return time.perf_counter() - t0


def exec_api(host: str, cid: str) -> float:
    t0 = time.perf_counter()
    st, body = api(host, "POST", f"/containers/{cid}/exec", {"Cmd": ["true"], "AttachStdout": True,
                                                               "AttachStderr": True})
    eid = json.loads(body)["Id"]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(_path(host))
    payload = b'{"Detach":false,"Tty":false}'
    s.sendall(b"POST /exec/%s/start HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (eid.encode(), len(payload), payload))
    s.shutdown(socket.SHUT_WR)
    while s.recv(65536):
        pass
    s.close()
    st, body = api(host, "GET", f"/exec/{eid}/json")
    assert json.loads(body)["ExitCode"] == 0, body
    return time.perf_counter() - t0


def attach_rtt(host: str, cid: str, runs: int) -> list[float]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(_path(host))
    s.sendall(b"POST /containers/%s/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: x\r\n"
              b"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n" % cid.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    time.sleep(0.2)
    s.setblocking(True)
    out = []
    for i in range(runs):
        ch = bytes([ord("a") + i % 26])
        t0 = time.perf_counter()
        s.sendall(ch)
        got = b""
        while ch not in got:
            got += s.recv(4096)
        out.append(time.perf_counter() - t0)
    s.close()
    return out


def bench(host: str, runs: int, d: Daemon | None) -> dict[str, float]:
    ensure_busybox(host, d)
    cid = docker(host, "run", "-d", "busybox", "sleep", "3600").strip()
    tty = docker(host, "run", "-dit", "busybox", "cat").strip()
    try:
        for _ in range(3):
            exec_cli(host, cid)
            exec_api(host, cid)
        cli = [exec_cli(host, cid) for _ in range(runs)]
        apis = [exec_api(host, cid) for _ in range(runs)]
        rtt = attach_rtt(host, tty, runs)
    finally:
        docker(host, "rm", "-f", cid, tty)
    return {"exec_cli_ms": statistics.median(cli) * 1e3, "exec_api_ms": statistics.median(apis) * 1e3,
            "attach_rtt_ms": statistics.median(rtt) * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--other", default=os.environ.get("BENCH_OTHER_HOST"))
    args = ap.parse_args()
    d = Daemon()
    d.start()
    try:
        res = {"berthd": bench(d.host, args.runs, d)}
        if args.other:
            res["other"] = bench(args.other, args.runs, None)
    finally:
        d.cleanup()
    for name, r in res.items():
        print(f"{name:8} docker exec C true (CLI) {r['exec_cli_ms']:6.1f} ms   exec via API {r['exec_api_ms']:6.1f} ms"
              f"   attach round trip {r['attach_rtt_ms']:6.2f} ms   (median of {args.runs})")
    if "other" in res:
        for k in ("exec_cli_ms", "exec_api_ms", "attach_rtt_ms"):
            print(f"ratio berthd/other {k}: {res['berthd'][k] / res['other'][k]:.2f}")


if __name__ == "__main__":
    main()
