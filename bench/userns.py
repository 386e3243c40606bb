"""`docker run --rm busybox true` in a user namespace of its own against the host's (not a test).

    python bench/userns.py [--runs 30] [--copy]

One berthd with ``userns-default: auto`` and subordinate id files of its own; the docker CLI
gets ``auto`` from that default and opts out with ``--userns=host``, run by run alternately.
Medians, their difference (issue 17's target: under +10 ms), and the disk a running
container of each kind uses besides the image (its directory, plus with ``--copy``, which forces
the chown'd-copy fallback, the range's copy of the layers).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine import docker, docker_out, med  # noqa: E402
from tests.integration.daemon import Daemon  # noqa: E402


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--copy", action="store_true", help="force the chown'd-copy fallback")
    opts = ap.parse_args()
    d = Daemon(args=["--log-level", "info", "--userns-default", "auto"],
               env={"BERTH_FORCE_USERNS_COPY": "1"} if opts.copy else {})
    d.base.mkdir(parents=True, exist_ok=True)
    for name in ("subuid", "subgid"):
        (d.base / name).write_text("berth:300000:6553600\n")
    d.start()
    try:
        d.import_busybox()
        kinds = {"host": ["--userns=host"], "auto": []}
        for extra in kinds.values():  # warm up
            docker(d.host, "run", "--rm", *extra, "busybox", "true")
        res: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in range(opts.runs):
            for k, extra in kinds.items():
                res[k].append(docker(d.host, "run", "--rm", *extra, "busybox", "true"))
        print(f"docker run --rm busybox true, median of {opts.runs} (alternating){' (copy fallback)' if opts.copy else ''}:")
        for k in kinds:
            print(f"  --userns={k:5s} {med(res[k]) * 1000:7.1f} ms")
        print(f"  difference     {(med(res['auto']) - med(res['host'])) * 1000:+7.1f} ms")
        for k, extra in kinds.items():
            print(f"  disk of a running --userns={k} container: {disk_per_container(d, extra)} KiB")
    finally:
        d.cleanup()


if __name__ == "__main__":
    main()
