"""Shim memory per running container for each shim group size (d), plus the engine figures as they were measured when shim groups came in (bench/engine.py has the current start-path benchmarks; use --only-shim-memory here).

    python bench/shim_memory.py --only-shim-memory [--containers 100] [--shim-groups 1,8,16]

(a) `docker run --rm busybox true` latency; (b) N x `docker run -d busybox sleep 3600`
(containers/s), then `docker ps` latency with N running, PSS per shim (from
/proc/PID/smaps_rollup) and berthd's RSS; (c) berthd cold start until /_ping answers;
(d) shim memory with N running for each shim group size in --shim-groups (BERTH_SHIM_GROUP;
1 = a shim process per container), each on its own berthd, one after the other in one run:
shim processes, PSS per process, and the figure that counts, the shims' total PSS divided by
the containers running (with --other, the same sum for containerd-shim processes).
With --other (or BENCH_OTHER_HOST), the same runs go to a second daemon (e.g. a real dockerd),
alternating the two in one run; medians and ratios are reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.daemon import Daemon  # noqa: E402

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


def shim_memory(pids: list[int], containers: int) -> str:
    pss = [kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids]
    priv = [kib(f"/proc/{p}/smaps_rollup", "Private_Dirty:") + kib(f"/proc/{p}/smaps_rollup", "Private_Clean:")
            for p in pids]
    return (f"{len(pids)} shim processes, PSS per process median {med(pss) / 1024:.2f} MiB, "
            f"private {med(priv) / 1024:.2f} MiB; PSS per running container {sum(pss) / max(containers, 1) / 1024:.2f} "
            f"MiB (private {sum(priv) / max(containers, 1) / 1024:.2f} MiB)")


def containerd_shims() -> list[int]:
    out = []
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and open(f"/proc/{p}/comm").read().strip().startswith("containerd-shim"):
                out.append(int(p))
        except OSError:
            pass
    return out


def group_memory(group: int, containers: int) -> None:
    """(d) one berthd with BERTH_SHIM_GROUP=group, N sleepers, the shims' memory."""
    d = Daemon(env={"BERTH_SHIM_GROUP": str(group)})
    d.start()
    try:
        d.import_busybox()
        for _ in range(containers):
            docker(d.host, "run", "-d", "busybox", "sleep", "3600")
        time.sleep(1)
        print(f"(d) shim group {group}, {containers} running: {shim_memory(shim_pids(d.exec_root), containers)}")
        env = dict(os.environ, DOCKER_HOST=d.host)
        ids = subprocess.run([DOCKER, "ps", "-q", "--no-trunc"], env=env, capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run([DOCKER, "rm", "-f", *ids], env=env, capture_output=True)
    finally:
        d.cleanup()


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--containers", type=int, default=100)
    ap.add_argument("--cold", type=int, default=10)
    ap.add_argument("--other", default=os.environ.get("BENCH_OTHER_HOST"))
    ap.add_argument("--shim-groups", default="1,8", help="shim group sizes for (d); '' to skip")
    ap.add_argument("--only-shim-memory", action="store_true", help="run (d) alone")
    args = ap.parse_args()
    groups = [int(g) for g in args.shim_groups.split(",") if g]
    if args.only_shim_memory:
        for g in groups:
            group_memory(g, args.containers)
        return

    d = Daemon()
    d.start()
    rootfs = d.base / "rootfs.tar"
    d.import_busybox()
    hosts = {"berthd": d.host}
    if args.other:
        hosts["other"] = args.other
        ensure_busybox(args.other, rootfs)
    try:
        # (a) run --rm latency, alternating daemons
        lat: dict[str, list[float]] = {k: [] for k in hosts}
        for name, h in hosts.items():
            docker(h, "run", "--rm", "busybox", "true")  # warm up
        for _ in range(args.runs):
            for name, h in hosts.items():
                lat[name].append(docker(h, "run", "--rm", "busybox", "true"))
        print(f"(a) docker run --rm busybox true, median of {args.runs}:")
        for name in hosts:
            print(f"    {name:7s} {med(lat[name]) * 1000:7.1f} ms")
        if "other" in hosts:
            print(f"    ratio berthd/other: {med(lat['berthd']) / med(lat['other']):.2f}")

        # (b) N detached containers, ps latency, memory
        for name, h in hosts.items():
            t0 = time.perf_counter()
            for _ in range(args.containers):
                docker(h, "run", "-d", "busybox", "sleep", "3600")
            rate = args.containers / (time.perf_counter() - t0)
            ps = [docker(h, "ps") for _ in range(20)]
            print(f"(b) {name}: {args.containers} x run -d: {rate:.1f} containers/s; "
                  f"docker ps with {args.containers} running: {med(ps) * 1000:.1f} ms median")
            if name == "berthd":
                assert d.proc is not None
                rss = kib(f"/proc/{d.proc.pid}/status", "VmRSS:")
                fs = [p for p in os.listdir("/proc") if p.isdigit() and kib(f"/proc/{p}/status", "PPid:") == d.proc.pid]
                fs_rss = sum(kib(f"/proc/{p}/status", "VmRSS:") for p in fs)
                print(f"    {shim_memory(shim_pids(d.exec_root), args.containers)}; berthd RSS {rss / 1024:.1f} MiB; "
                      f"fork server RSS {fs_rss / 1024:.1f} MiB")
            else:
                print(f"    containerd-shim: {shim_memory(containerd_shims(), args.containers)}")
            env = dict(os.environ, DOCKER_HOST=h)
            ids = subprocess.run([DOCKER, "ps", "-q", "--no-trunc"], env=env, capture_output=True, text=True).stdout.split()
            if ids:
                subprocess.run([DOCKER, "rm", "-f", *ids], env=env, capture_output=True)

        # (c) cold start of berthd until /_ping answers
        cold = []
        for _ in range(args.cold):
            d.stop()
            cold.append(d.start())
        print(f"(c) berthd cold start to /_ping: {med(cold) * 1000:.1f} ms median of {args.cold} "
              f"(min {min(cold) * 1000:.1f})")
    finally:
        d.cleanup()
    for g in groups:
        group_memory(g, args.containers)


if __name__ == "__main__":
    main()
