"""Cold pull of a ~100 MB multi-layer image from a local registry (issue 3's benchmark).

The image: 7 layers - one of 10,000 small files, three of a few large incompressible files,
and three small ones - pushed with skopeo to Debian's docker-registry on 127.0.0.1. Measured
(median of --runs):

- berth: ``POST /images/create`` on a real berthd, the image removed before each run (cold:
  nothing local), timed until the stream ends;
- skopeo copy of the same image to a fresh OCI layout (the raw transfer + write floor);
- ``gzip -dc | tar -x`` of every layer one after the other (the unpack floor);
- dockerd, when BENCH_DOCKER_HOST points at one (``docker pull`` with the image removed).

With ``--ram`` the data roots (berthd's, skopeo's and the untar floor's) are on a tmpfs, as
the issue's reference floor was measured: on this VM's ext4 (mounted with ``discard``)
creating the 10,000 small files costs 1-4 s of kernel time whoever creates them, which
hides everything else.

Run as root:  python3 bench/images/pull.py [--runs 5] [--ram]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.integration.daemon import Daemon  # noqa: E402
from tests.integration.images.oci_layout import Layout, layer_tar  # noqa: E402
from tests.integration.images.registry_proc import RegistryProc  # noqa: E402


def build_image(tmp: Path) -> tuple[Layout, int, int]:
    rnd = os.urandom
    # A salt in every layer: no layer may already be in a daemon from an earlier run (dockerd
    # would answer "Already exists" and skip the 10,000-file layer: not a cold pull).
    salt = rnd(8).hex()
    small = [("d", "small"), ("f", "small/salt", salt)] + [("d", f"small/{i}") for i in range(100)]
    small += [("f", f"small/{i // 100}/f{i}.txt", (f"file {i}\n" * (1 + i % 40)).encode()) for i in range(10_000)]
    layers = [
        layer_tar([("d", "etc"), ("f", "etc/os-release", f"ID=bench\nSALT={salt}\n")]),
        layer_tar(small),
        layer_tar([("d", "big1"), ("f", "big1/a.bin", rnd(20 << 20)), ("f", "big1/b.bin", rnd(12 << 20))]),
        layer_tar([("d", "big2"), ("f", "big2/c.bin", rnd(25 << 20))]),
        layer_tar([("d", "big3"), ("f", "big3/d.bin", rnd(15 << 20)), ("f", "big3/e.bin", rnd(5 << 20))]),
        layer_tar([("f", "etc/config", "x" * 10000 + salt)]),
        layer_tar([("f", "etc/.wh.os-release", b""), ("f", "etc/last", salt)]),
    ]
    lay = Layout(tmp / "layout")
    desc = lay.image(layers, compress="gzip")
    lay.tag(desc, "bench")
    comp = sum(p.stat().st_size for p in (tmp / "layout" / "blobs" / "sha256").iterdir())
    return lay, comp, sum(len(x) for x in layers)


def median_time(fn, runs: int) -> tuple[float, list[float]]:
    ts = []
    for _ in range(runs):
        ts.append(fn())
    return statistics.median(ts), ts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ram", action="store_true", help="data roots on a tmpfs")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="berth-bench-", dir="/tmp"))
    work = tmp
    if args.ram:
        work = tmp / "ram"
        work.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4g", "tmpfs", str(work)], check=True)
    reg = RegistryProc().start()
    (work / "berthd").mkdir()
    d = Daemon(work / "berthd")
    try:
        t0 = time.monotonic()
        lay, comp, raw = build_image(tmp)
        ref = f"{reg.host}/bench:latest"
        subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--format", "v2s2",
                        f"oci:{lay.root}:bench", f"docker://{ref}"], check=True)
        print(f"image: 7 layers, {comp / 1e6:.1f} MB compressed, {raw / 1e6:.1f} MB of tar "
              f"(built and pushed in {time.monotonic() - t0:.1f}s)")
        d.start()

        def berth_pull() -> float:
            d.request("DELETE", f"/images/{ref}?force=1")
            subprocess.run(["sync"])
            t = time.monotonic()
            status, body = d.request("POST", f"/images/create?fromImage={reg.host}/bench&tag=latest",
                                     headers={"X-Registry-Auth": "e30="}, timeout=300)
            el = time.monotonic() - t
            assert status == 200 and b"Downloaded newer image" in body, body[-500:]
            return el

        def skopeo_copy() -> float:
            dest = work / "skopeo-out"
            shutil.rmtree(dest, ignore_errors=True)
            t = time.monotonic()
            subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}",
                            f"oci:{dest}:x"], check=True)
            return time.monotonic() - t

        manifest = json.loads((lay.root / "blobs" / "sha256" /
                               json.loads((lay.root / "index.json").read_text())["manifests"][0]["digest"][7:]).read_text())

        def untar_floor() -> float:
            dest = work / "untar"
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir()
            t = time.monotonic()
            for layer in manifest["layers"]:
                blob = lay.root / "blobs" / "sha256" / layer["digest"][7:]
                subprocess.run(f"gzip -dc {blob} | tar -x -C {dest}", shell=True, check=True)
            return time.monotonic() - t

        results = {}
        results["berth cold pull"] = median_time(berth_pull, args.runs)
        results["skopeo copy -> OCI layout"] = median_time(skopeo_copy, args.runs)
        results["gzip -dc | tar -x (sequential)"] = median_time(untar_floor, args.runs)
        other = os.environ.get("BENCH_DOCKER_HOST")
        if other:
            env = dict(os.environ, DOCKER_HOST=other)

            def docker_pull() -> float:
                subprocess.run(["docker", "rmi", "-f", ref], env=env, capture_output=True)
                subprocess.run(["sync"])
                t = time.monotonic()
                out = subprocess.run(["docker", "pull", ref], env=env, check=True, capture_output=True).stdout
                el = time.monotonic() - t
                assert b"Already exists" not in out, out.decode()  # cold: every layer pulled
                return el
            try:
                results["dockerd cold pull"] = median_time(docker_pull, args.runs)
            finally:
                subprocess.run(["docker", "rmi", "-f", ref], env=env, capture_output=True)
        print(f"data roots on {'tmpfs' if args.ram else 'ext4 (' + str(work) + ')'}")
        print(f"{'what':34} {'median':>8}   runs")
        for k, (m, ts) in results.items():
            print(f"{k:34} {m:7.3f}s   " + " ".join(f"{x:.3f}" for x in ts))
    finally:
        d.cleanup()
        reg.stop()
        if args.ram:
            subprocess.run(["umount", str(work)])
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
