"""Engine-core benchmarks through the real docker CLI and the API (not a test).

    python bench/engine.py [--runs 20] [--containers 100] [--cold 10] [--dockerd] [--baseline TREE]

(a) `docker run --rm busybox true` latency; (c) daemon start on an empty data root and restart
on an existing one, each until /_ping answers and until GET /containers/json (which needs the
recovered state) answers; (b) N x `docker run -d busybox sleep 3600` (containers/s), then
`docker ps` and GET /containers/json with N running, PSS per shim (/proc/PID/smaps_rollup),
berthd's RSS, and a restart with the N running (live restore) to /_ping and to the list.
--dockerd starts Debian's dockerd (bench/daemons.py: own socket, roots on /var/tmp, live
restore, stopped by its PID); --baseline runs a berthd from another tree (``git archive
HEAD`` unpacked) for before/after. Daemons alternate in one run; medians and ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.daemons import Berthd, Dockerd, request  # noqa: E402
from tests.integration.daemon import ROOT  # noqa: E402

Starter = Berthd | Dockerd

DOCKER = "/usr/local/bin/docker"


def docker(host: str, *args: str, check: bool = True) -> float:
    env = dict(os.environ, DOCKER_HOST=host)
    t0 = time.perf_counter()
    p = subprocess.run([DOCKER, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if check and p.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} against {host}: {p.stderr.decode()}")
    return dt


def ensure_busybox(host: str, rootfs: Path) -> None:
    env = dict(os.environ, DOCKER_HOST=host)
    if subprocess.run([DOCKER, "image", "inspect", "busybox:latest"], env=env, capture_output=True).returncode == 0:
        return
    subprocess.run([DOCKER, "import", "--change", 'CMD ["sh"]', str(rootfs), "busybox:latest"], env=env,
                   check=True, capture_output=True)


def kib(path: str, key: str) -> int:
    try:
        for line in open(path):
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def shim_pids(exec_root: Path) -> list[int]:
    out = []
    needle = f"forkserver {exec_root}/forkserver.sock".encode()
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            comm = open(f"/proc/{p}/comm", "rb").read().strip()
            cmd = open(f"/proc/{p}/cmdline", "rb").read().replace(b"\0", b" ")
        except OSError:
            continue
        if comm == b"berth-shim" and needle in cmd:
            out.append(int(p))
    return out


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def api_ms(sock: str, path: str, n: int = 50) -> float:
    """Median ms of GET path through the API (no CLI), after one warm-up."""
    request(sock, "GET", path)
    xs = []
    for _ in range(n):
        t0 = time.perf_counter()
        status, _ = request(sock, "GET", path)
        xs.append(time.perf_counter() - t0)
        assert status == 200
    return med(xs) * 1000


def report(title: str, res: dict[str, list[float]]) -> None:
    line = f"    {title:34s}"
    for name, xs in res.items():
        line += f"  {name} {med(xs) * 1000:6.1f} ms"
    for other in ("before", "dockerd"):
        if other in res and "berthd" in res:
            line += f"  berthd/{other} {med(res['berthd']) / med(res[other]):.2f}x"
    print(line, flush=True)


def starts(daemons: dict[str, Starter], runs: int, fresh: bool, title: str) -> None:
    """Stop and start each daemon ``runs`` times, alternating; ``fresh``: a new data root each time."""
    ping: dict[str, list[float]] = {k: [] for k in daemons}
    ready: dict[str, list[float]] = {k: [] for k in daemons}
    cpu_ping: dict[str, list[float]] = {k: [] for k in daemons}
    cpu_ready: dict[str, list[float]] = {k: [] for k in daemons}
    for _ in range(runs):
        for k in list(daemons):
            dm = daemons[k]
            dm.stop()
            if fresh:
                dm.cleanup()
                dm = daemons[k] = type(dm)(dm.code) if isinstance(dm, Berthd) else Dockerd()
            p, r = dm.timed_start()
            ping[k].append(p)
            ready[k].append(r)
            cpu_ping[k].append(dm.cpu[0])
            cpu_ready[k].append(dm.cpu[1])
    report(f"{title} -> /_ping", ping)
    report("  daemon's own CPU by then", cpu_ping)
    report(f"{title} -> GET /containers/json", ready)
    report("  daemon's own CPU by then", cpu_ready)


def run_detached(host: str, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        docker(host, "run", "-d", "busybox", "sleep", "3600")
    return n / (time.perf_counter() - t0)


def remove_all(host: str) -> None:
    env = dict(os.environ, DOCKER_HOST=host)
    ids = subprocess.run([DOCKER, "ps", "-aq", "--no-trunc"], env=env, capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run([DOCKER, "rm", "-f", *ids], env=env, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--containers", type=int, default=100)
    ap.add_argument("--cold", type=int, default=10)
    ap.add_argument("--dockerd", action="store_true", help="start Debian's dockerd for the comparison")
    ap.add_argument("--baseline", help="a second berth source tree to run side by side (before/after)")
    ap.add_argument("--only", default="", help="comma list of: run,ps,start,restart")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else {"run", "ps", "start", "restart"}

    daemons: dict[str, Starter] = {"berthd": Berthd()}
    if args.baseline:
        daemons["before"] = Berthd(Path(args.baseline))
    if args.dockerd:
        daemons["dockerd"] = Dockerd()
    for tree in {str(ROOT), *([args.baseline] if args.baseline else [])}:
        # an installed berth has its bytecode; PYTHONDONTWRITEBYTECODE would leave every start compiling
        subprocess.run([sys.executable, "-m", "compileall", "-q", f"{tree}/berth"], check=True, capture_output=True)
    rootfs: Path | None = None
    try:
        for dm in daemons.values():
            dm.timed_start()
        first = daemons["berthd"]
        assert isinstance(first, Berthd)
        first.import_busybox()
        rootfs = Path(tempfile.mkdtemp(prefix="bench-", dir="/var/tmp")) / "rootfs.tar"
        shutil.copy(first.base / "rootfs.tar", rootfs)
        hosts = {k: dm.host for k, dm in daemons.items()}
        for h in hosts.values():
            ensure_busybox(h, rootfs)
        if "run" in only:
            lat: dict[str, list[float]] = {k: [] for k in hosts}
            for h in hosts.values():
                docker(h, "run", "--rm", "busybox", "true")  # warm up
            for _ in range(args.runs):
                for k, h in hosts.items():
                    lat[k].append(docker(h, "run", "--rm", "busybox", "true"))
            print(f"(a) median of {args.runs}:")
            report("docker run --rm busybox true", lat)
        if "start" in only:
            print(f"(c) daemon start, median of {args.cold}:")
            starts(daemons, args.cold, True, "empty data root")
            for h in daemons.values():
                ensure_busybox(h.host, rootfs)
            starts(daemons, args.cold, False, "restart, existing data root")
        if "ps" in only or "restart" in only:
            print(f"(b) {args.containers} running:")
            for k, dm in daemons.items():
                rate = run_detached(dm.host, args.containers)
                ps = [docker(dm.host, "ps") for _ in range(20)]
                print(f"    {k}: {args.containers} x run -d: {rate:.1f}/s; docker ps {med(ps) * 1000:.1f} ms; "
                      f"GET /containers/json {api_ms(str(dm.sock), '/containers/json'):.2f} ms", flush=True)
                if isinstance(dm, Berthd):
                    shim_memory(dm)
            if "restart" in only:
                starts(daemons, args.cold, False, f"restart with {args.containers} running")
                for k, dm in daemons.items():
                    print(f"    {k}: GET /containers/json after the restart "
                          f"{api_ms(str(dm.sock), '/containers/json'):.2f} ms")
            for dm in daemons.values():
                remove_all(dm.host)
    finally:
        for dm in daemons.values():
            dm.cleanup()
        if rootfs is not None:
            shutil.rmtree(rootfs.parent, ignore_errors=True)


def shim_memory(d: Berthd) -> None:
    pids = shim_pids(d.exec_root)
    pss = [kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids]
    assert d.proc is not None
    rss = kib(f"/proc/{d.proc.pid}/status", "VmRSS:")
    print(f"      shims: {len(pids)}, PSS per shim median {med(pss) / 1024:.2f} MiB "
          f"(max {max(pss) / 1024 if pss else 0:.2f}); berthd RSS {rss / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
