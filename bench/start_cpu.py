"""The start path's CPU and the detached start, two berthd trees side by side (not a test).

    python bench/start_cpu.py --baseline TREE [--runs 40]

Both berthds run with ``BERTH_SHIM_GROUP=1``: each shim host exits with its container and the
fork server reaps it, so the fork server's ``cutime + cstime`` holds the runtime side of a run
(shim, setup helper, init; ``bench/engine.py``'s ``cpu`` counts berthd only). Run by run,
alternating between the trees:

    runtime and berthd CPU per `docker run --rm --network none`, `run --rm`, `run -d`, and
        the CLI's wall
    the API start of a detached container (create, then the timed start: berthd's early
        Start applies), default network and --network none
    sequential `docker run -d`, alternating blocks of 10

CPU figures are clock-tick sums over all runs / runs; on a shared machine trust them and the
ratios, not the walls.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tests.integration.daemon as daemon_mod  # noqa: E402
from tests.integration.daemon import Daemon  # noqa: E402

DOCKER = "/usr/local/bin/docker"
TICK = os.sysconf("SC_CLK_TCK")
RUNS = {"run --rm --network none": ["run", "--rm", "--network", "none", "busybox", "true"],
        "run --rm (bridge)": ["run", "--rm", "busybox", "true"],
        "run -d (bridge)": ["run", "-d", "busybox", "true"]}


def cpu(pid: int) -> tuple[float, float]:
    """(own, reaped children's) CPU seconds of ``pid``."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK, (int(f[13]) + int(f[14])) / TICK


def fork_server(d: Daemon) -> int:
    assert d.proc is not None
    for p in open(f"/proc/{d.proc.pid}/task/{d.proc.pid}/children").read().split():
        if b"berth.runtime.forkserver" in open(f"/proc/{p}/cmdline", "rb").read():
            return int(p)
    raise RuntimeError("no fork server")


def started(code: Path) -> Daemon:
    d = Daemon(base=Path(tempfile.mkdtemp(prefix="bsc-", dir="/var/tmp")), env={"BERTH_SHIM_GROUP": "1"},
               code=code, args=["--log-level", "info"])
    here, daemon_mod.ROOT = daemon_mod.ROOT, code
    try:
        d.start(timeout=60)
    finally:
        daemon_mod.ROOT = here
    d.import_busybox()
    return d


def docker(d: Daemon, args: list[str]) -> None:
    subprocess.run([DOCKER, *args], env=d.env, check=True, capture_output=True)


def cli_runs(ds: dict[str, Daemon], runs: int) -> None:
    for name, args in RUNS.items():
        for d in ds.values():
            docker(d, args)  # warm
        walls: dict[str, list[float]] = {k: [] for k in ds}
        rt = dict.fromkeys(ds, 0.0)
        own = dict.fromkeys(ds, 0.0)
        for _ in range(runs):
            for k, d in ds.items():
                assert d.proc is not None
                fs = fork_server(d)
                r0, b0 = sum(cpu(fs)), cpu(d.proc.pid)[0]
                t0 = time.perf_counter()
                docker(d, args)
                walls[k].append((time.perf_counter() - t0) * 1000)
                time.sleep(0.15 if "-d" in args else 0.05)  # the detached one exits meanwhile
                rt[k] += sum(cpu(fs)) - r0
                own[k] += cpu(d.proc.pid)[0] - b0
        print(f"{name}: " + "  ".join(f"{k}: wall {statistics.median(walls[k]):.1f} ms, runtime CPU "
                                      f"{1000 * rt[k] / runs:.1f} ms, berthd CPU {1000 * own[k] / runs:.1f} ms"
                                      for k in ds), flush=True)


def api_starts(ds: dict[str, Daemon], runs: int, net: str) -> None:
    body = json.dumps({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": net}}).encode()
    times: dict[str, list[float]] = {k: [] for k in ds}
    for i in range(runs + 3):
        for k, d in ds.items():
            cid = json.loads(d.request("POST", "/containers/create", body, {"Content-Type": "application/json"})[1])["Id"]
            t0 = time.perf_counter()
            d.request("POST", f"/containers/{cid}/start")
            if i >= 3:
                times[k].append((time.perf_counter() - t0) * 1000)
            d.request("POST", f"/containers/{cid}/wait")
            d.request("DELETE", f"/containers/{cid}")
    print(f"API start, detached, --network {net}: " + "  ".join(
        f"{k}: median {statistics.median(v):.1f} ms, p25 {sorted(v)[len(v) // 4]:.1f} ms" for k, v in times.items()),
        flush=True)


def rate(ds: dict[str, Daemon]) -> None:
    rates: dict[str, list[float]] = {k: [] for k in ds}
    for _ in range(3):
        for k, d in ds.items():
            t0 = time.perf_counter()
            for _ in range(10):
                docker(d, ["run", "-d", "busybox", "sleep", "60"])
            rates[k].append(10 / (time.perf_counter() - t0))
    print("sequential run -d: " + "  ".join(f"{k}: {statistics.median(v):.1f}/s" for k, v in rates.items()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", required=True, help="a second berth source tree (git archive, byte-compiled)")
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args()
    print(f"load average {open('/proc/loadavg').read().split()[:3]}", flush=True)
    ds: dict[str, Daemon] = {}
    try:
        ds["berthd"] = started(Path(__file__).resolve().parents[1])
        ds["before"] = started(Path(args.baseline))
        cli_runs(ds, args.runs)
        for net in ("default", "none"):
            api_starts(ds, args.runs, net)
        rate(ds)
    finally:
        for d in ds.values():
            d.cleanup()
    print(f"load average {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
