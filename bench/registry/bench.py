"""Registry throughput: berth's ``registry serve`` beside Debian's ``docker-registry`` (Go).

    python3 bench/registry/bench.py [--reps 3] [--total-mb 1024] [--manifests 1000] [--json F]

Each server runs on 127.0.0.1 with its own fresh root. For 1 and 8 concurrent clients
(separate processes, one keep-alive connection each) it measures, median of --reps runs:
  * blob push (POST, streamed PATCH, PUT ?digest= — what docker and skopeo do) and pull (GET)
    of --total-mb in 1 MiB blobs, then in 100 MiB blobs;
  * --manifests small OCI manifests pushed (PUT by tag) and pulled (GET by tag).
It samples each server's RSS every 50 ms and reports the peak per workload. Not a test: it
installs docker-registry with apt when missing, takes minutes, and needs a few GB of disk.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[2]
MiB = 1 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


# -- servers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v2/")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not come up")


class Srv:
    def __init__(self, name: str, args: list[str], port: int, log: Path) -> None:
        self.name = name
        self.port = port
        self.logf = open(log, "wb")
        self.proc = subprocess.Popen(args, stdout=self.logf, stderr=subprocess.STDOUT,
                                     cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        wait_up(port, self.proc)

    def rss_kb(self) -> int:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


def start_berth(work: Path) -> Srv:
    port = free_port()
    root = work / "berth-root"
    cfg = work / "berth.toml"
    cfg.write_text(f'[log]\naccess = "{work / "berth-access.log"}"\n')
    return Srv("berth", [sys.executable, "-m", "berth.cli.main", "registry", "serve",
                         "--addr", f"127.0.0.1:{port}", "--root", str(root),
                         "--config", str(cfg)], port, work / "berth.log")


def ensure_docker_registry() -> str:
    path = shutil.which("docker-registry")
    if path:
        return path
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "docker-registry"], check=True, env=env)
    # the package enables a service on :5000; the benchmark starts its own instance
    subprocess.run(["systemctl", "stop", "docker-registry"], capture_output=True)
    path = shutil.which("docker-registry")
    if not path:
        raise RuntimeError("docker-registry is not installed")
    return path


def start_go(work: Path) -> Srv:
    binary = ensure_docker_registry()
    port = free_port()
    cfg = work / "go.yml"
    # Debian's default config (/etc/docker/registry/config.yml) less auth, on our own root
    cfg.write_text(f"""version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: {work / "go-root"}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: false
""")
    return Srv("docker-registry", [binary, "serve", str(cfg)], port, work / "go.log")


# -- clients (one process each) ---------------------------------------------------------------


def _blob(seed: str, size: int, base: bytes) -> bytes:
    head = hashlib.sha256(seed.encode()).digest()
    reps = -(-size // len(base))
    return (head + (base * reps))[:size]


def _location(resp: http.client.HTTPResponse) -> str:
    loc = resp.getheader("Location") or ""
    parts = urlsplit(loc)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _push_blob(conn: http.client.HTTPConnection, repo: str, data: bytes, digest: str) -> None:
    conn.request("POST", f"/v2/{repo}/blobs/uploads/", body=b"")
    r = conn.getresponse()
    r.read()
    assert r.status == 202, r.status
    loc = _location(r)
    conn.request("PATCH", loc, body=data,
                 headers={"Content-Type": "application/octet-stream"})
    r = conn.getresponse()
    r.read()
    assert r.status == 202, r.status
    loc = _location(r)
    sep = "&" if "?" in loc else "?"
    conn.request("PUT", f"{loc}{sep}digest={digest}", body=b"")
    r = conn.getresponse()
    r.read()
    assert r.status == 201, (r.status, loc)


def _pull_blob(conn: http.client.HTTPConnection, repo: str, digest: str, buf: bytearray) -> int:
    conn.request("GET", f"/v2/{repo}/blobs/{digest}")
    r = conn.getresponse()
    assert r.status == 200, r.status
    view = memoryview(buf)
    total = 0
    while n := r.readinto(view):
        total += n
    return total


def blob_client(port: int, repo: str, seeds: list[str], size: int, barrier, out) -> None:  # type: ignore[no-untyped-def]
    base = os.urandom(MiB)
    blobs = [_blob(s, size, base) for s in seeds]
    digests = ["sha256:" + hashlib.sha256(b).hexdigest() for b in blobs]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    barrier.wait()
    for data, digest in zip(blobs, digests):
        _push_blob(conn, repo, data, digest)
    barrier.wait()
    del blobs
    buf = bytearray(MiB)
    barrier.wait()
    got = sum(_pull_blob(conn, repo, d, buf) for d in digests)
    barrier.wait()
    out.put(got)


def manifest_client(port: int, repo: str, names: list[str], base: dict, barrier, out) -> None:  # type: ignore[no-untyped-def]
    bodies = [json.dumps({**base, "annotations": {"bench.name": n}}).encode() for n in names]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    barrier.wait()
    for name, body in zip(names, bodies):
        conn.request("PUT", f"/v2/{repo}/manifests/{name}", body=body,
                     headers={"Content-Type": OCI_MANIFEST})
        r = conn.getresponse()
        r.read()
        assert r.status == 201, (r.status, r.read())
    barrier.wait()
    barrier.wait()
    for name in names:
        conn.request("GET", f"/v2/{repo}/manifests/{name}", headers={"Accept": OCI_MANIFEST})
        r = conn.getresponse()
        r.read()
        assert r.status == 200, r.status
    barrier.wait()
    out.put(len(names))


def _run(srv: Srv, target, per_client: list[tuple]) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    """Run one client process per args tuple; return (push s, pull s, peak RSS KiB)."""
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(len(per_client) + 1)
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, out)) for args in per_client]
    for p in procs:
        p.start()
    peak = [srv.rss_kb()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], srv.rss_kb())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        barrier.wait()          # clients ready
        t0 = time.perf_counter()
        barrier.wait()          # pushes done
        push = time.perf_counter() - t0
        barrier.wait()
        t0 = time.perf_counter()
        barrier.wait()          # pulls done
        pull = time.perf_counter() - t0
        for _ in procs:
            out.get(timeout=60)
        for p in procs:
            p.join()
            if p.exitcode != 0:
                raise RuntimeError(f"a client failed against {srv.name}")
    finally:
        stop.set()
        sampler.join()
    return push, pull, peak[0]


def _split(items: list, n: int) -> list[list]:  # type: ignore[type-arg]
    return [items[i::n] for i in range(n) if items[i::n]]


def bench_blobs(srv: Srv, size: int, total: int, clients: int, rep: int) -> tuple[float, float, int]:
    count = max(1, total // size)
    seeds = [f"{srv.name}-{size}-{clients}-{rep}-{i}" for i in range(count)]
    groups = _split(seeds, clients)
    push, pull, rss = _run(srv, blob_client,
                           [(srv.port, f"bench/blobs{size // MiB}", g, size) for g in groups])
    mb = count * size / MiB
    return mb / push, mb / pull, rss


def bench_manifests(srv: Srv, n: int, clients: int, rep: int) -> tuple[float, float, int]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    config, layer = b"{}", b"layer bytes for the manifest benchmark"
    descs = []
    for data, media in ((config, "application/vnd.oci.image.config.v1+json"),
                        (layer, "application/vnd.oci.image.layer.v1.tar")):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        _push_blob(conn, "bench/manifests", data, digest)
        descs.append({"mediaType": media, "digest": digest, "size": len(data)})
    base = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descs[0],
            "layers": [descs[1]]}
    names = [f"r{rep}c{clients}-{i}" for i in range(n)]
    push, pull, rss = _run(srv, manifest_client,
                           [(srv.port, "bench/manifests", g, base) for g in _split(names, clients)])
    return n / push, n / pull, rss


# -- report -----------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--total-mb", type=int, default=1024)
    ap.add_argument("--manifests", type=int, default=1000)
    ap.add_argument("--clients", default="1,8")
    ap.add_argument("--only", default="", help="berth or docker-registry (default both)")
    ap.add_argument("--json", default="", help="also write the results here")
    args = ap.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    total = args.total_mb * MiB
    work = Path(tempfile.mkdtemp(prefix="berth-registry-bench-"))
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        for start in (start_berth, start_go):
            srv = start(work)
            if args.only and srv.name != args.only:
                srv.stop()
                continue
            res: dict[str, dict[str, float]] = {}
            res["idle"] = {"rss_mb": srv.rss_kb() / 1024}
            try:
                for c in clients:
                    for size, label in ((MiB, "1MiB"), (100 * MiB, "100MiB")):
                        runs = [bench_blobs(srv, size, total, c, r) for r in range(args.reps)]
                        res[f"blobs {label} x{c}"] = _summary(runs, "MiB/s")
                        print(f"{srv.name:16} blobs {label:6} c={c}: {_fmt(res[f'blobs {label} x{c}'])}",
                              flush=True)
                    runs = [bench_manifests(srv, args.manifests, c, r) for r in range(args.reps)]
                    res[f"manifests x{c}"] = _summary(runs, "/s")
                    print(f"{srv.name:16} manifests    c={c}: {_fmt(res[f'manifests x{c}'])}",
                          flush=True)
                res["end"] = {"rss_mb": srv.rss_kb() / 1024}
            finally:
                srv.stop()
                shutil.rmtree(work / ("berth-root" if srv.name == "berth" else "go-root"),
                              ignore_errors=True)
            results[srv.name] = res
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def _summary(runs: list[tuple[float, float, int]], unit: str) -> dict[str, float]:
    return {"push": statistics.median(r[0] for r in runs),
            "pull": statistics.median(r[1] for r in runs),
            "rss_mb": max(r[2] for r in runs) / 1024, "unit": unit}  # type: ignore[dict-item]


def _fmt(s: dict[str, float]) -> str:
    return (f"push {s['push']:8.1f} {s['unit']}  pull {s['pull']:8.1f} {s['unit']}  "
            f"peak RSS {s['rss_mb']:.0f} MiB")


def _table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    b, g = results.get("berth", {}), results.get("docker-registry", {})
    lines = ["| workload | op | berth | docker-registry | berth/go | berth RSS MiB | go RSS MiB |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for key in b:
        if key in ("idle", "end"):
            continue
        for op in ("push", "pull"):
            bv, gv = b[key][op], g.get(key, {}).get(op)
            ratio = f"{bv / gv:.2f}" if gv else "-"
            lines.append(f"| {key} | {op} | {bv:.1f} {b[key]['unit']} | "
                         f"{'-' if gv is None else f'{gv:.1f}'} | {ratio} | "
                         f"{b[key]['rss_mb']:.0f} | "
                         f"{g.get(key, {}).get('rss_mb', 0):.0f} |")
    lines.append(f"| idle / end RSS | | {b.get('idle', {}).get('rss_mb', 0):.0f} / "
                 f"{b.get('end', {}).get('rss_mb', 0):.0f} MiB | "
                 f"{g.get('idle', {}).get('rss_mb', 0):.0f} / "
                 f"{g.get('end', {}).get('rss_mb', 0):.0f} MiB | | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
