"""Build benchmarks: berthd next to a real dockerd, both driven by the docker CLI with the
classic builder (``DOCKER_BUILDKIT=0``). Not a test.

    python bench/build/run.py [--runs 5] [--no-dockerd] [--root /var/tmp]

(a) FROM busybox + 5 RUN steps that each write a file: cold (``--no-cache``) and fully cached;
(b) COPY of a 1,000-file context (cold);
(c) a two-stage build (cold);
(d) the cost of one RUN step (the difference between a 6-RUN and a 1-RUN cold build, over 5)
    next to ``docker run --rm busybox sh -c ...`` of the same command.

dockerd (Debian's docker.io, /usr/sbin/dockerd) is started here on its own socket, data root and
exec root under ``--root`` (the real disk, not tmpfs), with ``--bridge=none --iptables=false``
so it touches nothing on the host, and stopped by PID at the end. Because it has no bridge,
every build and run of BOTH daemons uses ``--network none``. Its busybox is the same rootfs
tar (scripts/mkrootfs.sh) imported with ``docker import``. Runs alternate between the daemons;
medians and berthd/dockerd ratios are printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.daemons import DOCKER, DOCKERD, med, terminate  # noqa: E402
from tests.integration.daemon import Daemon  # noqa: E402


RUN5 = "FROM busybox\n" + "".join(f"RUN echo step{i} > /file{i}\n" for i in range(5))
RUN1 = "FROM busybox\nRUN echo step0 > /file0\n"
COPY1000 = "FROM busybox\nCOPY files /files\n"
TWO_STAGE = ("FROM busybox AS build\nRUN mkdir /out && for i in 1 2 3; do echo $i > /out/f$i; done\n"
             "FROM busybox\nCOPY --from=build /out /out\nCMD [\"ls\", \"/out\"]\n")


class Dockerd:
    """A private dockerd: own socket, data root and exec root; nothing on the host network."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.sock = base / "docker.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    def start(self) -> None:
        log = open(self.base / "dockerd.log", "ab")
        self.proc = subprocess.Popen(
            [DOCKERD, "-H", self.host, "--data-root", str(self.base / "data"),
             "--exec-root", str(self.base / "run"), "--pidfile", str(self.base / "dockerd.pid"),
             "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
             "--storage-driver=overlay2"],
            stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("dockerd exited: " + (self.base / "dockerd.log").read_text()[-2000:])
            if subprocess.run([DOCKER, "-H", self.host, "version"], capture_output=True).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("dockerd did not answer")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        terminate(self.proc, 30)
        # dockerd leaves its own mounts under the exec/data roots on some exits
        with open("/proc/self/mountinfo") as f:
            mine = [line.split()[4] for line in f if str(self.base) in line.split()[4]]
        for path in sorted(mine, key=len, reverse=True):
            subprocess.run(["umount", "-l", path], capture_output=True)


def env_for(host: str, cfg: Path) -> dict[str, str]:
    env = dict(os.environ, DOCKER_HOST=host, DOCKER_BUILDKIT="0", DOCKER_CONFIG=str(cfg))
    env.pop("DOCKER_CONTEXT", None)
    return env


def timed(env: dict[str, str], *args: str, cwd: Path | None = None) -> float:
    t0 = time.perf_counter()
    p = subprocess.run([DOCKER, *args], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} against {env['DOCKER_HOST']}:\n"
                           f"{p.stdout.decode()[-2000:]}\n{p.stderr.decode()[-2000:]}")
    return dt


def context(base: Path, name: str, dockerfile: str, files: int = 0) -> Path:
    ctx = base / name
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    if files:
        d = ctx / "files"
        for i in range(files):
            sub = d / f"d{i // 100}"
            sub.mkdir(parents=True, exist_ok=True)
            (sub / f"f{i}.txt").write_text(f"file {i}\n" * (1 + i % 20))
    return ctx


def ensure_busybox(env: dict[str, str], rootfs: Path) -> None:
    if subprocess.run([DOCKER, "image", "inspect", "busybox:latest"], env=env, capture_output=True).returncode:
        subprocess.run([DOCKER, "import", "--change", 'CMD ["sh"]', str(rootfs), "busybox:latest"], env=env,
                       check=True, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-dockerd", action="store_true")
    ap.add_argument("--root", default="/var/tmp")
    args = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="bbench-", dir=args.root))
    cfg = base / "dockercfg"
    cfg.mkdir()
    # the daemons' roots are short paths of their own (shim sockets live under the exec root)
    d = Daemon(base=Path(tempfile.mkdtemp(prefix="bb", dir=args.root)))
    dd = None if args.no_dockerd or not os.path.exists(DOCKERD) else \
        Dockerd(Path(tempfile.mkdtemp(prefix="bd", dir=args.root)))
    try:
        d.start()
        d.import_busybox()
        hosts = {"berthd": env_for(d.host, cfg)}
        if dd is not None:
            dd.start()
            hosts["dockerd"] = env_for(dd.host, cfg)
            ensure_busybox(hosts["dockerd"], d.base / "rootfs.tar")
        ctxs = {"run5": context(base, "run5", RUN5), "run1": context(base, "run1", RUN1),
                "copy1000": context(base, "copy1000", COPY1000, files=1000),
                "twostage": context(base, "twostage", TWO_STAGE)}
        results: dict[str, dict[str, list[float]]] = {}

        def record(what: str, name: str, dt: float) -> None:
            results.setdefault(what, {}).setdefault(name, []).append(dt)

        net = ["--network", "none"]
        for name, env in hosts.items():  # warm-up: caches, page cache, first-build costs
            timed(env, "build", *net, "-q", "-t", "bench-run5", str(ctxs["run5"]))
            timed(env, "run", "--rm", *net, "busybox", "true")
        for _ in range(args.runs):
            for name, env in hosts.items():
                record("(a) 5 RUN, cold", name,
                       timed(env, "build", *net, "--no-cache", "-t", "bench-run5", str(ctxs["run5"])))
                record("(a) 5 RUN, fully cached", name,
                       timed(env, "build", *net, "-t", "bench-run5", str(ctxs["run5"])))
                record("(b) COPY 1,000 files, cold", name,
                       timed(env, "build", *net, "--no-cache", "-t", "bench-copy", str(ctxs["copy1000"])))
                record("(c) two-stage, cold", name,
                       timed(env, "build", *net, "--no-cache", "-t", "bench-two", str(ctxs["twostage"])))
                record("(d) 1 RUN, cold", name,
                       timed(env, "build", *net, "--no-cache", "-t", "bench-run1", str(ctxs["run1"])))
                record("(d) run --rm sh -c 'echo > /f'", name,
                       timed(env, "run", "--rm", *net, "busybox", "sh", "-c", "echo step0 > /file0"))
        report(results, list(hosts), args.runs, args.root)
    finally:
        if dd is not None:
            dd.stop()
            shutil.rmtree(dd.base, ignore_errors=True)
        d.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def report(results: dict[str, dict[str, list[float]]], names: list[str], runs: int, root: str) -> None:
    print(f"build benchmarks: docker CLI 28, DOCKER_BUILDKIT=0, --network none, data roots under {root} "
          f"(real disk); median of {runs}")
    head = f"{'what':36}" + "".join(f"{n:>12}" for n in names) + ("   berthd/dockerd" if len(names) > 1 else "")
    print(head)
    for what, by in results.items():
        row = f"{what:36}" + "".join(f"{med(by[n]) * 1000:10.1f}ms" for n in names)
        if len(names) > 1:
            row += f"   {med(by['berthd']) / med(by['dockerd']):8.2f}"
        print(row)
    for n in names:
        per_step = (med(results["(a) 5 RUN, cold"][n]) - med(results["(d) 1 RUN, cold"][n])) / 4
        run = med(results["(d) run --rm sh -c 'echo > /f'"][n])
        print(f"per RUN step ({n}): {per_step * 1000:.1f} ms  vs  docker run --rm: {run * 1000:.1f} ms  "
              f"(difference {(per_step - run) * 1000:+.1f} ms)")


if __name__ == "__main__":
    main()
