"""`docker run --rm busybox true` in a user namespace of its own against the host's (not a test).

    python bench/userns.py [--runs 30] [--copy] [--baseline TREE]

One berthd with ``userns-default: auto`` and subordinate id files of its own; the docker CLI
gets ``auto`` from that default and opts out with ``--userns=host``, run by run alternately.
Medians of the wall time and of the engine's CPU per run, their differences (issue 17's
target: under +10 ms), and the disk a running container of each kind uses besides the image
(its directory, plus with ``--copy``, which forces the chown'd-copy fallback, the range's copy
of the layers). With ``--baseline TREE`` (another checkout, e.g. ``git archive`` of main) a
second berthd runs that tree's code and the loop alternates all four kinds.

The engine's CPU: each berthd starts in a cpuacct cgroup of its own and puts its containers
below it (``--cgroup-parent``), so its fork server, shims, inits and containers are counted
(cpuacct charges every ancestor); the docker CLI is not. The cgroups are removed at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine import docker, docker_out, med  # noqa: E402
from tests.integration.daemon import Daemon  # noqa: E402

CGROUPS = Path("/sys/fs/cgroup")
KINDS = {"host": ["--userns=host"], "auto": []}


def _du(*paths: Path) -> int:
    """KiB on disk (du -sk), hard links counted once."""
    existing = [str(p) for p in paths if p.exists()]
    if not existing:
        return 0
    out = subprocess.run(["du", "-skc", *existing], capture_output=True, text=True).stdout.splitlines()
    return int(out[-1].split()[0])


def disk_per_container(d: Daemon, extra: list[str]) -> int:
    cid = docker_out(d.host, "run", "-d", *extra, "busybox", "sleep", "30").strip()
    try:
        return _du(d.data_root / "containers" / cid, d.data_root / "image" / "userns")
    finally:
        docker(d.host, "rm", "-f", cid)


class Engine:
    """One berthd of a tree, in cpuacct cgroup ``name``."""

    def __init__(self, label: str, code: Path | None, copy: bool) -> None:
        self.label = label
        self.cgroup = f"berth-bench-userns-{os.getpid()}-{label}"
        self.cpuacct = CGROUPS / "cpuacct" / self.cgroup
        self.cpuacct.mkdir()
        self.d = Daemon(args=["--log-level", "info", "--userns-default", "auto", "--cgroup-parent", "/" + self.cgroup],
                        env={"BERTH_FORCE_USERNS_COPY": "1"} if copy else {}, code=code)
        self.d.launcher = ["sh", "-c", f'echo $$ > {self.cpuacct}/cgroup.procs && exec "$@"', "sh"]
        self.d.base.mkdir(parents=True, exist_ok=True)
        for name in ("subuid", "subgid"):
            (self.d.base / name).write_text("berth:300000:6553600\n")

    def cpu_ns(self) -> int:
        return int((self.cpuacct / "cpuacct.usage").read_text())

    def run(self, extra: list[str]) -> tuple[float, float]:
        """(wall, engine CPU) seconds of one ``docker run --rm busybox true``."""
        c0 = self.cpu_ns()
        wall = docker(self.d.host, "run", "--rm", *extra, "busybox", "true")
        return wall, (self.cpu_ns() - c0) / 1e9

    def cleanup(self) -> None:
        try:
            self.d.cleanup()
        finally:
            for hierarchy in CGROUPS.iterdir():  # berthd made the parent in every hierarchy
                if (hierarchy / self.cgroup).is_dir():
                    (hierarchy / self.cgroup).rmdir()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--copy", action="store_true", help="force the chown'd-copy fallback")
    ap.add_argument("--baseline", type=Path, help="another tree's berth, run side by side")
    opts = ap.parse_args()
    engines: list[Engine] = []
    try:
        for label, code in (("this", None), ("baseline", opts.baseline)):
            if label == "baseline" and code is None:
                continue
            engines.append(Engine(label, code, opts.copy))
            engines[-1].d.start()
            engines[-1].d.import_busybox()
        for e in engines:
            for extra in KINDS.values():  # warm up
                e.run(extra)
        res: dict[tuple[str, str], list[tuple[float, float]]] = {(e.label, k): [] for e in engines for k in KINDS}
        for _ in range(opts.runs):
            for e in engines:
                for k, extra in KINDS.items():
                    res[e.label, k].append(e.run(extra))
        load = os.getloadavg()
        print(f"docker run --rm busybox true, median of {opts.runs} (alternating)"
              f"{' (copy fallback)' if opts.copy else ''}; load average {load[0]:.1f} {load[1]:.1f}:")
        for e in engines:
            walls = {k: med([w for w, _ in res[e.label, k]]) * 1000 for k in KINDS}
            cpus = {k: med([c for _, c in res[e.label, k]]) * 1000 for k in KINDS}
            print(f"  {e.label}:")
            for k in KINDS:
                print(f"    --userns={k:5s} wall {walls[k]:7.1f} ms   engine CPU {cpus[k]:6.1f} ms")
            print(f"    difference     wall {walls['auto'] - walls['host']:+7.1f} ms   "
                  f"engine CPU {cpus['auto'] - cpus['host']:+6.1f} ms")
        e = engines[0]
        for k, extra in KINDS.items():
            print(f"  disk of a running --userns={k} container: {disk_per_container(e.d, extra)} KiB")
    finally:
        for e in engines:
            e.cleanup()


if __name__ == "__main__":
    main()
