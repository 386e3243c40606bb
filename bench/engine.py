"""Engine-core benchmarks through the real docker CLI (not a test).

    python bench/engine.py [--runs 20] [--containers 100] [--other unix:///var/run/docker.sock]

(a) `docker run --rm busybox true` latency; (b) N x `docker run -d busybox sleep 3600`
(containers/s), then `docker ps` latency with N running, PSS per shim (from
/proc/PID/smaps_rollup) and berthd's RSS; (c) berthd cold start until /_ping answers.
With --other (or BENCH_OTHER_HOST), the same runs go to a second daemon (e.g. a real dockerd),
alternating the two in one run; medians and ratios are reported. With --tree DIR (repeatable),
a berthd of another checkout of berth (e.g. ``git worktree add /tmp/wt-before REV``) runs beside
this tree's, measured the same way, cold start and shim memory included.
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


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (/proc/PID/stat)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--containers", type=int, default=100)
    ap.add_argument("--cold", type=int, default=10)
    ap.add_argument("--other", default=os.environ.get("BENCH_OTHER_HOST"))
    ap.add_argument("--tree", action="append", default=[], help="another berth checkout to run beside this one")
    args = ap.parse_args()

    berths = {"berthd": Daemon()}
    for i, tree in enumerate(args.tree):
        berths[f"tree{i + 1}"] = Daemon(code=Path(tree).resolve())
        print(f"tree{i + 1}: {tree}")
    for b in berths.values():
        b.start()
        b.import_busybox()
    d = berths["berthd"]
    rootfs = d.base / "rootfs.tar"
    hosts = {name: b.host for name, b in berths.items()}
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
            if name in berths:
                b = berths[name]
                pids = shim_pids(b.exec_root)
                pss = [kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids]
                assert b.proc is not None
                rss = kib(f"/proc/{b.proc.pid}/status", "VmRSS:")
                fs = [p for p in os.listdir("/proc") if p.isdigit() and kib(f"/proc/{p}/status", "PPid:") == b.proc.pid]
                fs_rss = sum(kib(f"/proc/{p}/status", "VmRSS:") for p in fs)
                print(f"    shims: {len(pids)}, PSS per shim median {med(pss) / 1024:.2f} MiB "
                      f"(max {max(pss) / 1024 if pss else 0:.2f}); berthd RSS {rss / 1024:.1f} MiB; "
                      f"fork server RSS {fs_rss / 1024:.1f} MiB")
            env = dict(os.environ, DOCKER_HOST=h)
            ids = subprocess.run([DOCKER, "ps", "-q", "--no-trunc"], env=env, capture_output=True, text=True).stdout.split()
            if ids:
                subprocess.run([DOCKER, "rm", "-f", *ids], env=env, capture_output=True)

        # (c) cold start of each berthd until /_ping answers, alternating
        # (berthd's own CPU time then too: on a loaded machine the wall time says little)
        cold: dict[str, list[float]] = {k: [] for k in berths}
        cpu: dict[str, list[float]] = {k: [] for k in berths}
        for _ in range(args.cold):
            for name, b in berths.items():
                b.stop()
                cold[name].append(b.start(timeout=120))
                assert b.proc is not None
                cpu[name].append(cpu_seconds(b.proc.pid))
        for name in berths:
            print(f"(c) {name} cold start to /_ping: {med(cold[name]) * 1000:.1f} ms median of {args.cold} "
                  f"(min {min(cold[name]) * 1000:.1f}); berthd CPU by then {med(cpu[name]) * 1000:.0f} ms median")
    finally:
        for b in berths.values():
            b.cleanup()


if __name__ == "__main__":
    main()
