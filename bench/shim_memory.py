"""Shim memory per running container for each shim group size (BERTH_SHIM_GROUP; 1 = a shim
process per container), each on its own berthd, one after the other in one run.

    python bench/shim_memory.py [--containers 100] [--shim-groups 1,8,16] [--containerd]

For each group size: N x `docker run -d busybox sleep 3600`, then the shim processes, PSS per
process, and the figure that counts, the shims' total PSS divided by the containers running.
--containerd prints the same sum for the containerd-shim processes running on this host (a
dockerd started for the comparison, e.g. by bench/engine.py --dockerd). The start-path and
run -d figures are bench/engine.py's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine import DOCKER, docker, kib, med  # noqa: E402
from tests.integration.daemon import Daemon  # noqa: E402


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--containers", type=int, default=100)
    ap.add_argument("--shim-groups", default="1,8", help="shim group sizes")
    ap.add_argument("--containerd", action="store_true", help="also the containerd-shims running on this host")
    args = ap.parse_args()
    for g in (int(g) for g in args.shim_groups.split(",") if g):
        group_memory(g, args.containers)
    if args.containerd:
        print(f"containerd-shim: {shim_memory(containerd_shims(), args.containers)}")


if __name__ == "__main__":
    main()
