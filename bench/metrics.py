"""The metrics endpoint under load (issue 13's target: under 50 ms with 100 running containers).

    python bench/metrics.py [--containers 100] [--runs 20]

Starts a berthd with --metrics-addr on loopback, runs --containers busybox ``sleep``
containers (``docker run -d``), then times GET /metrics --runs times (one connection each, as
Prometheus scrapes) and prints the median, the 90th percentile, berthd's CPU time per scrape
(utime + stime from /proc: on a loaded machine the wall times wait for a core, this does not)
and the size of a scrape; also the same with no container running, so the per-container cost
shows. Not a test.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.daemon import Daemon  # noqa: E402

DOCKER = "/usr/local/bin/docker"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape_times(url: str, runs: int) -> tuple[list[float], int]:
    times, size = [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as r:
            size = len(r.read())
        times.append(time.perf_counter() - t0)
    return times, size


def report(label: str, pid: int, url: str, runs: int) -> None:
    cpu0 = cpu_seconds(pid)
    times, size = scrape_times(url, runs)
    cpu = (cpu_seconds(pid) - cpu0) / runs
    times = sorted(times)
    p90 = times[min(len(times) - 1, int(len(times) * 0.9))]
    print(f"{label:<16} median {statistics.median(times) * 1000:6.1f} ms   p90 {p90 * 1000:6.1f} ms   "
          f"berthd CPU {cpu * 1000:5.1f} ms/scrape   {size / 1024:6.1f} KiB", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--containers", type=int, default=100)
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    bench(a.containers, a.runs)


def bench(containers: int, runs: int) -> None:
    """The figures, on a berthd of their own (bench/engine.py --only metrics runs this too)."""
    port = _port()
    d = Daemon(args=["--metrics-addr", f"127.0.0.1:{port}", "--log-level", "info"])
    d.start()
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        d.import_busybox()
        assert d.proc is not None
        pid = d.proc.pid
        report("0 containers", pid, url, runs)
        t0 = time.monotonic()
        for i in range(containers):
            subprocess.run([DOCKER, "run", "-d", "--name", f"m{i}", "busybox", "sleep", "3600"], env=d.env,
                           check=True, capture_output=True)
        print(f"started {containers} containers in {time.monotonic() - t0:.1f} s", flush=True)
        report(f"{containers} containers", pid, url, runs)
    finally:
        d.remove_all_containers()
        d.cleanup()


if __name__ == "__main__":
    main()
