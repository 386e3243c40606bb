"""The scale scenario (issue 12): berthd holding 1,000 containers (100 running), 500 images,
200 volumes and 50 networks (not a test).

    python bench/scale.py [--runs 7] [--baseline TREE] [--containers 1000] [--running 100]

Builds the scenario through the API on one data root on the disk (/var/tmp), then, with the
daemons alternating on that same root (``--baseline`` runs a berthd from another source tree,
e.g. ``git archive HEAD`` unpacked, for before and after):

    lists      GET /containers/json?all=1, /images/json, /volumes, /networks (API, no CLI): the
               median wall time and berthd's own CPU per request (/proc/PID/stat: on a shared
               machine the wall time is mostly waiting for a CPU), and ``docker system df``
               through the CLI: medians of --runs after each restart
    restart    berthd stopped (SIGTERM: the containers keep running) and started again, until
               /_ping answers and until GET /containers/json (recovered state) answers
    memory     berthd's RSS once started on the root with only the running containers, and
               again once the stopped ones are added: (difference) / (number of stopped)

Every object is removed at the end (containers, then berthd stops and takes its bridges down,
then the data root). Daemons started here are stopped by their PID.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.daemons import Berthd, cpu_s, med, request  # noqa: E402
from tests.integration.daemon import ROOT, Daemon  # noqa: E402

DOCKER = "/usr/local/bin/docker"
LISTS = ("/containers/json?all=1", "/images/json", "/volumes", "/networks")


def post(d: Daemon, path: str, body: object = None, raw: bytes | None = None) -> dict[str, object]:
    data = raw if raw is not None else json.dumps(body or {}).encode()
    status, out = d.request("POST", path, data, {"Content-Type": "application/x-tar" if raw else "application/json"})
    if status not in (200, 201, 204):
        raise RuntimeError(f"POST {path}: {status} {out[:300]!r}")
    return json.loads(out) if out.strip().startswith(b"{") else {}


def tiny_image(i: int) -> bytes:
    """A one-file rootfs tar: each import is a distinct layer and image."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = f"image {i}\n".encode()
        info = tarfile.TarInfo(f"etc/scale-{i}")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build(d: Berthd, images: int, volumes: int, networks: int, running: int) -> None:
    t0 = time.monotonic()
    d.import_busybox()
    for i in range(images - 1):
        post(d, f"/images/create?fromSrc=-&repo=scale/img{i}&tag=latest", raw=tiny_image(i))
    for i in range(volumes):
        post(d, "/volumes/create", {"Name": f"scale-vol{i}"})
    for i in range(networks):
        post(d, "/networks/create", {"Name": f"scale-net{i}", "IPAM": {"Config": [{"Subnet": f"10.213.{i}.0/24"}]}})
    for i in range(running):
        cid = post(d, "/containers/create", {"Image": "busybox", "Cmd": ["sleep", "3600"]})["Id"]
        post(d, f"/containers/{cid}/start")
    print(f"built {images} images, {volumes} volumes, {networks} networks, {running} running "
          f"in {time.monotonic() - t0:.0f} s", flush=True)


def add_stopped(d: Berthd, n: int, images: int, volumes: int, networks: int) -> None:
    """Stopped (created) containers, spread over the networks and volumes, with labels."""
    t0 = time.monotonic()
    for i in range(n):
        hc: dict[str, object] = {"NetworkMode": f"scale-net{i % networks}"}
        if i % 4 == 0:
            hc["Binds"] = [f"scale-vol{i % volumes}:/data"]
        post(d, f"/containers/create?name=scale-c{i}", {
            "Image": f"scale/img{i % min(50, images - 1)}", "Cmd": ["sh", "-c", "echo hello"], "Env": [f"N={i}", "A=b"],
            "Labels": {"bench": "scale", "i": str(i)}, "HostConfig": hc})
    print(f"created {n} stopped containers in {time.monotonic() - t0:.0f} s", flush=True)


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Rotation:
    """The same data root served in turn by berthd from each tree (SIGTERM between them)."""

    def __init__(self, d: Berthd, trees: dict[str, Path]):
        self.d = d
        self.trees = trees
        self.restart: dict[str, tuple[list[float], ...]] = {k: ([], [], [], []) for k in trees}

    def start(self, name: str) -> None:
        self.d.stop()
        self.d.code = self.trees[name]
        ping, ready = self.d.timed_start()
        for i, v in enumerate((ping, ready, *self.d.cpu)):
            self.restart[name][i].append(v)

    def rss(self, name: str) -> int:
        """RSS of a fresh berthd of ``name`` on this root, once its background setup is done."""
        self.start(name)
        request(str(self.d.sock), "GET", "/containers/json?all=1")
        assert self.d.proc is not None
        # The network setup (pyroute2's import) runs in the background: wait until RSS settles.
        last, same, deadline = rss_kib(self.d.proc.pid), 0, time.monotonic() + 15
        while same < 6 and time.monotonic() < deadline:
            time.sleep(0.25)
            now = rss_kib(self.d.proc.pid)
            same = same + 1 if abs(now - last) < 64 else 0
            last = now
        return last


def lists(d: Berthd, runs: int) -> dict[str, float]:
    """Median wall ms of each list, and berthd's own CPU ms per request (``cpu <path>``)."""
    out = {}
    assert d.proc is not None
    for path in LISTS:
        request(str(d.sock), "GET", path)
        xs = []
        c0 = cpu_s(d.proc.pid)
        n = max(runs, 30)  # CPU time comes in 10 ms ticks
        for _ in range(n):
            t0 = time.perf_counter()
            status, _ = request(str(d.sock), "GET", path)
            xs.append(time.perf_counter() - t0)
            assert status == 200, path
        out[path] = med(xs) * 1000
        out[f"cpu {path}"] = (cpu_s(d.proc.pid) - c0) / n * 1000
    env = dict(os.environ, DOCKER_HOST=d.host)
    xs = []
    for _ in range(max(3, runs // 4)):
        t0 = time.perf_counter()
        subprocess.run([DOCKER, "system", "df"], env=env, check=True, capture_output=True)
        xs.append(time.perf_counter() - t0)
    out["docker system df"] = med(xs) * 1000
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--baseline", help="a second berth source tree, run on the same data root")
    ap.add_argument("--containers", type=int, default=1000)
    ap.add_argument("--running", type=int, default=100)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--volumes", type=int, default=200)
    ap.add_argument("--networks", type=int, default=50)
    args = ap.parse_args()
    trees = {"berthd": ROOT}
    if args.baseline:
        trees["before"] = Path(args.baseline)
    for tree in trees.values():  # an installed berth has its bytecode
        subprocess.run([sys.executable, "-m", "compileall", "-q", f"{tree}/berth"], check=True, capture_output=True)
    d = Berthd()
    rot = Rotation(d, trees)
    try:
        d.timed_start()
        build(d, args.images, args.volumes, args.networks, args.running)
        rss_small = {k: med([rot.rss(k) for _ in range(3)]) for k in trees}
        add_stopped(d, args.containers - args.running, args.images, args.volumes, args.networks)
        rss_big = {k: med([rot.rss(k) for _ in range(3)]) for k in trees}
        for k in trees:
            rot.restart[k] = ([], [], [], [])
        res: dict[str, dict[str, list[float]]] = {k: {} for k in trees}
        for _ in range(args.runs):
            for k in trees:
                rot.start(k)
                time.sleep(1.5)  # the network setup (pyroute2's import, nft) runs in the background
                for path, ms in lists(d, args.runs).items():
                    res[k].setdefault(path, []).append(ms)
        stopped = args.containers - args.running
        print(f"\n{args.containers} containers ({args.running} running), {args.images} images, "
              f"{args.volumes} volumes, {args.networks} networks; medians of {args.runs}")
        rows = [r for p in LISTS for r in (p, f"cpu {p}")] + ["docker system df"]
        for row in rows:
            print(f"  {row:28s}" + "".join(f"  {k} {med(res[k][row]):7.2f} ms" for k in trees) + _ratio(
                {k: med(res[k][row]) for k in trees}))
        for i, what in enumerate(("restart -> /_ping", "restart -> GET /containers/json",
                                  "  berthd's CPU at /_ping", "  berthd's CPU when ready")):
            v = {k: med(rot.restart[k][i]) * 1000 for k in trees}
            print(f"  {what:28s}" + "".join(f"  {k} {v[k]:7.1f} ms" for k in trees) + _ratio(v))
        per = {k: (rss_big[k] - rss_small[k]) / stopped for k in trees}
        print(f"  {'RSS per stopped container':28s}" + "".join(
            f"  {k} {per[k]:6.1f} KiB ({rss_small[k] / 1024:.1f} -> {rss_big[k] / 1024:.1f} MiB)" for k in trees)
            + _ratio(per))
    finally:
        d.cleanup()


def _ratio(v: dict[str, float]) -> str:
    return f"  berthd/before {v['berthd'] / v['before']:.2f}x" if "before" in v and v["before"] else ""


if __name__ == "__main__":
    main()
