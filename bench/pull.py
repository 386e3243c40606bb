"""`docker pull` to disk, berthd against a real dockerd, side by side in one run (not a test).

    python3 bench/pull.py [--runs 5] [--no-dockerd] [--no-drop-caches] [--root /var/tmp]

The image (~93 MB compressed, 217 MB of tar, 7 gzip -6 layers) is made from this host's files, so it
looks like a real one: many small files (Python's stdlib, perl, i18n, zoneinfo, man pages)
and a few big ones (shared libraries, an incompressible blob), a config-only layer and a
layer with a whiteout. Every layer carries a salt, so nothing is ever "Already exists".
It is pushed with skopeo to Debian's docker-registry on 127.0.0.1.

Each run pulls a new salted copy of the image (see ``make_image``), for every contender in
turn (the order rotates): ``sync`` and (by default)
``echo 3 > /proc/sys/vm/drop_caches``, then the timed step:

- berth:  ``docker pull`` through the real docker CLI against a berthd on ``--root``;
- dockerd: the same against Debian's dockerd (overlay2) on ``--root``, started here and
  stopped by its PID at the end;
- ``gzip -dc | tar -x`` and ``pigz -dc | tar -x`` of the same blobs, one layer after the
  other, into a directory on ``--root`` (the unpack floor; no network, no hashing).

Reported: the median of ``--runs`` for each, and the ratios the issue asks for.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import signal
import statistics
import tarfile
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.daemon import Daemon  # noqa: E402
from tests.integration.images.registry_proc import RegistryProc  # noqa: E402

DOCKER = "/usr/local/bin/docker"
DOCKERD = "/usr/sbin/dockerd"

# Host paths per layer (those missing on a host are skipped); None = a generated layer.
LAYERS: list[list[str] | None] = [
    ["/usr/lib/python3.11"],
    ["/usr/share/perl", "/usr/share/i18n", "/usr/share/zoneinfo", "/usr/share/locale/de"],
    ["/usr/share/man/man1", "/usr/share/man/man3", "/usr/share/man/man5"],
    ["/usr/lib/x86_64-linux-gnu/libicudata.so.72.1", "/usr/lib/x86_64-linux-gnu/libz3.so.4",
     "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0", "/usr/lib/x86_64-linux-gnu/libcrypto.so.3"],
    None,   # 8 MB of random bytes (already-compressed data, as in many images)
    None,   # a config file
    None,   # a whiteout of that config file
]


def _gzip_tar(src_dir: Path, names: list[str], dest: Path) -> Path:
    tar = subprocess.Popen(["tar", "-c", "--numeric-owner", "-f", "-", "-C", str(src_dir), *names],
                           stdout=subprocess.PIPE)
    with open(dest, "wb") as out:
        subprocess.run(["gzip", "-6", "-n"], stdin=tar.stdout, stdout=out, check=True)
    assert tar.stdout is not None
    tar.stdout.close()
    if tar.wait() not in (0, 1):  # 1: "file changed as we read it" is fine
        raise RuntimeError("tar failed")
    return dest


def build_base(tmp: Path) -> list[Path]:
    """The seven gzip -6 layer blobs, made once (about 20 s)."""
    work = tmp / "base"
    work.mkdir()
    gen = work / "gen"
    (gen / "opt" / "blob").mkdir(parents=True)
    (gen / "opt" / "blob" / "data.bin").write_bytes(os.urandom(8 << 20))
    (gen / "etc").mkdir()
    (gen / "etc" / "bench.conf").write_text("key=value\n" * 100)
    (gen / "etc" / ".wh.bench.conf").write_bytes(b"")
    blobs = []
    for i, paths in enumerate(LAYERS):
        dest = work / f"{i}.tar.gz"
        if paths is not None:
            blobs.append(_gzip_tar(Path("/"), [p.lstrip("/") for p in paths if os.path.exists(p)], dest))
        else:
            names = {4: ["opt/blob/data.bin"], 5: ["etc/bench.conf"], 6: ["etc/.wh.bench.conf"]}[i]
            blobs.append(_gzip_tar(gen, names, dest))
    shutil.rmtree(gen)
    return blobs


def _salt_member(salt: str) -> tuple[bytes, bytes]:
    """A tar entry ``bench-salt`` (no end marker) and the same as one gzip member."""
    data = salt.encode()
    ti = tarfile.TarInfo("bench-salt")
    ti.size, ti.mtime, ti.mode = len(data), 1_700_000_000, 0o644
    raw = ti.tobuf(format=tarfile.USTAR_FORMAT) + data + bytes(-len(data) % 512)
    return raw, gzip.compress(raw, compresslevel=6, mtime=0)


def make_image(base: list[Path], salt: str, lay: Path) -> tuple[list[Path], int]:
    """An OCI layout tagged 'bench' whose layers are the base ones behind a salt member.

    A layer blob is gzip(salt entry) + the base blob: two gzip members, which every gunzip
    reads as one stream, i.e. the tar ``salt entry + base tar``. Every run pulls a new image
    (new digests, new diff IDs), so nothing is ever "Already exists" and no run needs the
    previous one deleted first (see ``main``). Returns (layer blobs, uncompressed bytes).
    """
    sha = lay / "blobs" / "sha256"
    sha.mkdir(parents=True)
    (lay / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    layers, diff_ids, paths, raw = [], [], [], 0
    for i, b in enumerate(base):
        traw, tgz = _salt_member(f"{salt}-{i}\n")
        dh, uh = hashlib.sha256(tgz), hashlib.sha256(traw)
        tmp = lay / f"layer{i}"
        with open(tmp, "wb") as out, open(b, "rb") as src:
            out.write(tgz)
            while chunk := src.read(1 << 20):
                dh.update(chunk)
                out.write(chunk)
        raw += len(traw)
        with gzip.open(b, "rb") as f:
            while chunk := f.read(1 << 20):
                uh.update(chunk)
                raw += len(chunk)
        d = "sha256:" + dh.hexdigest()
        os.rename(tmp, sha / d[7:])
        paths.append(sha / d[7:])
        diff_ids.append("sha256:" + uh.hexdigest())
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d,
                       "size": (sha / d[7:]).stat().st_size})
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cdig = "sha256:" + hashlib.sha256(config).hexdigest()
    (sha / cdig[7:]).write_bytes(config)
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig,
                                 "size": len(config)}, "layers": layers}).encode()
    mdig = hashlib.sha256(man).hexdigest()
    (sha / mdig).write_bytes(man)
    (lay / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": f"sha256:{mdig}", "size": len(man),
         "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}))
    return paths, raw


class Dockerd:
    """Debian's dockerd on its own roots; stopped by its PID."""

    def __init__(self, base: Path):
        self.base = base
        self.run = Path(tempfile.mkdtemp(prefix="dkp-", dir="/tmp"))
        self.sock = self.run / "docker.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    def start(self) -> None:
        log = open(self.base / "dockerd.log", "wb")
        self.proc = subprocess.Popen(
            [DOCKERD, "-H", self.host, "--data-root", str(self.base / "data"), "--exec-root", str(self.run / "exec"),
             "--pidfile", str(self.run / "pid"), "--bridge=none", "--iptables=false", "--ip6tables=false"],
            stdout=log, stderr=log)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            if self.proc.poll() is not None:
                raise RuntimeError((self.base / "dockerd.log").read_text()[-2000:])
            if subprocess.run([DOCKER, "-H", self.host, "version"], capture_output=True).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("dockerd did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        subprocess.run(["umount", "-R", str(self.base / "data" / "overlay2")], capture_output=True)
        shutil.rmtree(self.run, ignore_errors=True)


def settle(drop: bool) -> None:
    subprocess.run(["sync"])
    if drop:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")


def cpu_of(pid: int) -> float:
    """CPU seconds of a process and its reaped children (utime, stime, cutime, cstime)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def docker_pull(host: str, ref: str, drop: bool, pid: int) -> tuple[float, float]:
    """(wall seconds, daemon CPU seconds) of one cold ``docker pull``."""
    env = dict(os.environ, DOCKER_HOST=host)
    settle(drop)
    c = cpu_of(pid)
    t = time.perf_counter()
    p = subprocess.run([DOCKER, "pull", ref], env=env, capture_output=True)
    el = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"docker pull against {host}: {p.stderr.decode()}")
    if b"Already exists" in p.stdout:
        raise RuntimeError(f"not a cold pull: {p.stdout.decode()}")
    return el, cpu_of(pid) - c


def untar(blobs: list[Path], dest: Path, gunzip: str, drop: bool) -> tuple[float, float]:
    dest.mkdir()
    settle(drop)
    c = os.times()
    t = time.perf_counter()
    for b in blobs:
        subprocess.run(f"{gunzip} -dc {b} | tar -x --numeric-owner -C {dest}", shell=True, check=True)
    el = time.perf_counter() - t
    c2 = os.times()
    return el, c2.children_user + c2.children_system - c.children_user - c.children_system


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--root", default="/var/tmp", help="a directory on the disk under test")
    ap.add_argument("--no-dockerd", action="store_true")
    ap.add_argument("--no-drop-caches", action="store_true")
    ap.add_argument("--only", choices=["berth", "dockerd", "floor"], action="append")
    args = ap.parse_args()
    drop = not args.no_drop_caches
    only = set(args.only or ["berth", "dockerd", "floor"])
    if args.no_dockerd:
        only.discard("dockerd")
    base = Path(tempfile.mkdtemp(prefix="berth-pull-", dir=args.root))
    fs = subprocess.run(["stat", "-f", "-c", "%T", str(base)], capture_output=True, text=True).stdout.strip()
    reg = RegistryProc().start()
    berth = Daemon(base / "b")
    dockerd = Dockerd(base) if "dockerd" in only else None
    try:
        t0 = time.monotonic()
        layers = build_base(base)
        # One image per run, all pushed before anything is timed: nothing is deleted between
        # runs. On ext4 a burst of deletes makes the next ~60 s of inode allocations scan
        # past the freed inodes (recently_deleted() in ialloc.c): an ``rmi`` before each
        # pull would charge one contender's deletes to the next one's kernel time.
        images: list[tuple[str, list[Path]]] = []
        raw = 0
        for i in range(args.runs):
            blobs, raw = make_image(layers, f"{os.urandom(8).hex()}", base / f"img{i}")
            ref = f"{reg.host}/bench:run{i}"
            subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--format", "v2s2",
                            f"oci:{base / f'img{i}'}:bench", f"docker://{ref}"], check=True)
            images.append((ref, blobs))
        comp = sum(b.stat().st_size for b in images[0][1])
        print(f"image: {len(layers)} layers, {comp / 1e6:.1f} MB gzip, {raw / 1e6:.1f} MB tar; "
              f"{args.runs} salted copies built and pushed in {time.monotonic() - t0:.1f}s; "
              f"data roots on {fs} ({base}); drop caches: {drop}", flush=True)
        contenders: dict[str, Callable[[int], tuple[float, float]]] = {}
        if "berth" in only:
            (base / "b").mkdir()
            berth.start()
            bpid = berth.proc.pid  # type: ignore[union-attr]
            contenders["berth docker pull"] = lambda i: docker_pull(berth.host, images[i][0], drop, bpid)
        if dockerd is not None:
            dockerd.start()
            dpid = dockerd.proc.pid  # type: ignore[union-attr]
            contenders["dockerd docker pull"] = lambda i: docker_pull(dockerd.host, images[i][0], drop, dpid)
        if "floor" in only:
            contenders["gzip -dc | tar -x"] = lambda i: untar(images[i][1], base / f"gz{i}", "gzip", drop)
            if shutil.which("pigz"):
                contenders["pigz -dc | tar -x"] = lambda i: untar(images[i][1], base / f"pigz{i}", "pigz", drop)
        times: dict[str, list[float]] = {k: [] for k in contenders}
        cpu: dict[str, list[float]] = {k: [] for k in contenders}
        names = list(contenders)
        for i in range(args.runs):
            for k in names[i % len(names):] + names[:i % len(names)]:  # rotate who goes first
                wall, used = contenders[k](i)
                times[k].append(wall)
                cpu[k].append(used)
            print(f"run {i + 1}: " + "  ".join(f"{k.split()[0]} {v[-1]:.2f}s" for k, v in times.items()), flush=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"\n{'what':24} {'median':>8} {'cpu':>7}   runs")
        for k, v in times.items():
            print(f"{k:24} {med[k]:7.3f}s {statistics.median(cpu[k]):6.2f}s   " + " ".join(f"{x:.2f}" for x in v))
        b = med.get("berth docker pull")
        if b is not None:
            for k in ("dockerd docker pull", "gzip -dc | tar -x", "pigz -dc | tar -x"):
                if k in med:
                    print(f"berth / {k}: {b / med[k]:.2f}x")
    finally:
        berth.cleanup()
        if dockerd is not None:
            dockerd.stop()
        reg.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
