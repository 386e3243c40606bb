"""Container log benchmarks, berthd side by side with a real dockerd (not a test).

    python bench/logs.py [--runs 5] [--lines 200000] [--ingest 1000000] [--dockerd | --other HOST]

A container prints --lines lines (every tenth to stderr) and exits; then, alternating the
daemons, each figure is timed --runs times and the medians are compared:

    cli        `docker logs C` into a pipe (read and discarded)
    api        GET /containers/C/logs?stdout=1&stderr=1 with curl (no CLI), body discarded
    tail       `docker logs --tail 100 C`
    since      `docker logs --since T C`, T the time of the middle line
    ingest     `docker run -d` of a container printing --ingest lines as fast as it can, until
               `docker wait` returns; also the same awk into /dev/null inside the container and
               into the pipe with --log-driver none (the floors without a log)

--dockerd starts Debian's dockerd on its own roots (data root on disk under /var/tmp) and
stops it by its PID at the end; --other uses a daemon already running at HOST. --baseline TREE
also runs a berthd from another source tree (e.g. ``git archive HEAD`` unpacked), for before and
after in one run.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tests.integration.daemon as daemon_mod  # noqa: E402
from bench.daemons import DOCKER, DOCKERD, ensure_busybox, med, terminate  # noqa: E402
from tests.integration.daemon import Daemon  # noqa: E402

TEXT = "the quick brown fox jumps over the lazy dog"


def awk(n: int, to_null: bool = False) -> list[str]:
    """A busybox awk printing n numbered lines, every tenth to stderr."""
    sink = ' > "/dev/null"' if to_null else ""
    err = ' > "/dev/null"' if to_null else ' > "/dev/stderr"'
    prog = (f'BEGIN {{ for (i = 0; i < {n}; i++) if (i % 10 == 0) print "line", i, "{TEXT}"{err}; '
            f'else print "line", i, "{TEXT}"{sink} }}')
    return ["awk", prog]


def env(host: str) -> dict[str, str]:
    e = dict(os.environ, DOCKER_HOST=host)
    e.pop("DOCKER_CONTEXT", None)
    return e


def docker(host: str, *args: str) -> str:
    p = subprocess.run([DOCKER, *args], env=env(host), capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} against {host}: {p.stderr}")
    return p.stdout


def timed(cmd: list[str], host: str) -> tuple[float, int]:
    """Seconds to run cmd with its stdout and stderr read from pipes; bytes read."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env(host), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {p.stderr[-500:]!r}")
    return dt, len(p.stdout) + len(p.stderr)


def curl(host: str, path: str) -> list[str]:
    sock = host.removeprefix("unix://")
    return ["curl", "-sS", "--fail", "--unix-socket", sock, f"http://localhost/v1.41{path}"]


class Dockerd:
    """Debian's dockerd on private roots; stopped by its PID."""

    def __init__(self, flags: tuple[str, ...] = ("--bridge=none", "--iptables=false")) -> None:
        self.flags = flags
        self.run = Path(tempfile.mkdtemp(prefix="dkl-", dir="/tmp"))
        self.data = Path(tempfile.mkdtemp(prefix="dkl-", dir="/var/tmp"))
        self.host = f"unix://{self.run}/docker.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.run / "dockerd.log", "ab")
        self.proc = subprocess.Popen(
            [DOCKERD, "-H", self.host, "--data-root", str(self.data / "data"), "--exec-root", str(self.run / "exec"),
             "--pidfile", str(self.run / "pid"), *self.flags],
            stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if subprocess.run([DOCKER, "version"], env=env(self.host), capture_output=True).returncode == 0:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"dockerd did not start: {(self.run / 'dockerd.log').read_text()[-2000:]}")

    def stop(self) -> None:
        terminate(self.proc, 30)
        subprocess.run(["umount", "-R", str(self.data / "data")], capture_output=True)
        shutil.rmtree(self.data, ignore_errors=True)
        shutil.rmtree(self.run, ignore_errors=True)


def middle_time(host: str, name: str, lines: int) -> str:
    """The timestamp of the line in the middle of the log (for --since)."""
    out = subprocess.run([DOCKER, "logs", "-t", name], env=env(host), capture_output=True).stdout
    rows = out.split(b"\n")
    return rows[min(lines // 2, len(rows) - 1)].split(b" ", 1)[0].decode()


def ingest(host: str, n: int, to_null: bool, driver: str = "json-file") -> float:
    t0 = time.perf_counter()
    cid = docker(host, "run", "-d", "--log-driver", driver, "busybox", *awk(n, to_null)).strip()
    docker(host, "wait", cid)
    dt = time.perf_counter() - t0
    docker(host, "rm", cid)
    return dt


def report(title: str, res: dict[str, list[float]], unit_lines: int = 0) -> None:
    line = f"  {title:34s}"
    for name, xs in res.items():
        m = med(xs)
        extra = f" ({unit_lines / m / 1000:4.0f}k/s)" if unit_lines else ""
        line += f"  {name} {m * 1000:7.1f} ms{extra}"
    for other in ("before", "dockerd"):
        if other in res:
            line += f"  berthd/{other} {med(res['berthd']) / med(res[other]):.2f}x"
    print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--ingest", type=int, default=1_000_000)
    ap.add_argument("--ingest-runs", type=int, default=0, help="default: --runs")
    ap.add_argument("--dockerd", action="store_true", help="start Debian's dockerd for the comparison")
    ap.add_argument("--other", default=os.environ.get("BENCH_OTHER_HOST"))
    ap.add_argument("--baseline", help="a second berth source tree to run side by side")
    ap.add_argument("--only", default="", help="comma list of figures: cli,api,tail,since,ingest")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else {"cli", "api", "tail", "since", "ingest"}

    d = Daemon()
    dk = Dockerd() if args.dockerd else None
    base = Daemon() if args.baseline else None
    try:
        d.start()
        d.import_busybox()
        hosts = {"berthd": d.host}
        if base:
            here, daemon_mod.ROOT = daemon_mod.ROOT, Path(args.baseline)  # berthd runs from its cwd
            try:
                base.start()
            finally:
                daemon_mod.ROOT = here
            hosts["before"] = base.host
        if dk:
            dk.start()
            hosts["dockerd"] = dk.host
        elif args.other:
            hosts["dockerd"] = args.other
        for h in hosts.values():
            ensure_busybox(h, d.base / "rootfs.tar")
        name = f"logbench-{os.getpid()}"
        since: dict[str, str] = {}
        for k, h in hosts.items():
            docker(h, "run", "-d", "--name", name, "busybox", *awk(args.lines))
            docker(h, "wait", name)
            since[k] = middle_time(h, name, args.lines)
        print(f"{args.lines} lines logged; medians of {args.runs}", flush=True)

        figures = {
            "cli": ("docker logs C > pipe", lambda k, h: [DOCKER, "logs", name], args.lines),
            "api": ("GET /logs (curl, no CLI)", lambda k, h: curl(h, f"/containers/{name}/logs?stdout=1&stderr=1"),
                    args.lines),
            "tail": ("docker logs --tail 100 C", lambda k, h: [DOCKER, "logs", "--tail", "100", name], 0),
            "since": ("docker logs --since <middle> C", lambda k, h: [DOCKER, "logs", "--since", since[k], name], 0),
        }
        for fig, (title, cmd, n) in figures.items():
            if fig not in only:
                continue
            res: dict[str, list[float]] = {k: [] for k in hosts}
            sizes: dict[str, int] = {}
            for k, h in hosts.items():
                timed(cmd(k, h), h)  # warm the page cache
            for _ in range(args.runs):
                for k, h in hosts.items():
                    dt, size = timed(cmd(k, h), h)
                    res[k].append(dt)
                    sizes[k] = size
            report(title, res, n)
            if len(set(sizes.values())) > 1:
                print(f"    (bytes differ: {sizes})")

        if "ingest" in only:
            runs = args.ingest_runs or args.runs
            for to_null, driver, title in ((True, "json-file", f"awk {args.ingest} lines > /dev/null"),
                                           (False, "none", "  into the pipe, --log-driver none"),
                                           (False, "json-file", "  into the pipe, json-file log")):
                res = {k: [] for k in hosts}
                for _ in range(runs):
                    for k, h in hosts.items():
                        res[k].append(ingest(h, args.ingest, to_null, driver))
                report(title, res, args.ingest)
        for h in hosts.values():
            docker(h, "rm", "-f", name)
    finally:
        if dk:
            dk.stop()
        if base:
            base.cleanup()
        d.cleanup()


if __name__ == "__main__":
    main()
