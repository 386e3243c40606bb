"""`docker run --rm busybox true` with berth's own runtime against runc and crun (not a test).

    python bench/runtimes.py [--runs 20] [--runtimes runc,crun]

One berthd with the external runtimes added (``--add-runtime``; crun through the same wrapper
as the tests on a hybrid cgroup host), the runtimes alternating run by run; medians and the
ratio to berth's own are printed. berth's own should stay the fastest: runc and crun cost a
create, a state and a start process each, plus the rootfs mount on the host.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine import docker, med  # noqa: E402
from tests.integration.daemon import Daemon  # noqa: E402
from tests.integration.runtimes.conftest import _crun_path  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--runtimes", default="runc,crun")
    opts = ap.parse_args()
    bench(opts.runs, opts.runtimes)


def bench(runs: int, which: str = "runc,crun") -> None:
    """The figures, on a berthd of their own (bench/engine.py --only runtimes runs this too)."""
    d = Daemon()
    names = [n for n in which.split(",") if shutil.which(n)]
    paths = {n: shutil.which(n) if n == "runc" else _crun_path(d.base) for n in names}
    d.extra_args = ["--log-level", "info", *[a for n in names for a in ("--add-runtime", f"{n}={paths[n]}")]]
    d.start()
    try:
        d.import_busybox()
        runtimes = ["berth", *names]
        for rt in runtimes:  # warm up
            docker(d.host, "run", "--rm", "--runtime", rt, "busybox", "true")
        res: dict[str, list[float]] = {rt: [] for rt in runtimes}
        for _ in range(runs):
            for rt in runtimes:
                res[rt].append(docker(d.host, "run", "--rm", "--runtime", rt, "busybox", "true"))
        own = med(res["berth"])
        print(f"docker run --rm busybox true, median of {runs} (alternating):")
        for rt in runtimes:
            m = med(res[rt])
            print(f"  {rt:6s} {m * 1000:7.1f} ms   x{m / own:.2f} of berth's own")
    finally:
        d.cleanup()


if __name__ == "__main__":
    main()
