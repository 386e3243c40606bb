"""berthd's CRI against containerd's, side by side in one run, through the same gRPC client.

    sudo python bench/cri.py [--n 10] [--pods 30] [--execs 20] [--no-containerd] [--baseline TREE]

Both runtimes run on this machine at once, each started (and stopped by its PID) by this
script: a berthd from this tree on temporary roots, and Debian's containerd (1.6, CRI plugin
built in) with a config file written here (root, state and socket under /var/tmp/<tmp>). Each
gets a CNI conflist of its own (bridge + host-local + loopback, a unique bridge name, a private
/24, host-local's data dir under the tmp dir, no masquerade so no iptables chains), plugins from
/usr/lib/cni. Nothing is pulled: busybox is made from busybox-static (scripts/mkrootfs.sh),
imported into berthd, and exported from berthd (`GET /images/get`) into containerd with
`ctr -n k8s.io images import`, as is berth's built-in pause image, which containerd then uses
as its `sandbox_image` (the same 129-byte pause on both sides).

Measured, each runtime's sample taken alternately with the other's:
  (a) RunPodSandbox + CreateContainer + StartContainer (busybox `sleep 3600`), median of n;
      StopPodSandbox + RemovePodSandbox, median of n;
  (b) --pods pods started in parallel (a thread per pod), wall time;
  (c) ExecSync `true` in a running container, median of --execs;
  (d) memory per pod with those pods running: the daemon's RSS growth since before them, plus
      its shims' PSS, plus the pause processes' PSS, divided by the pods.

--baseline TREE adds a second berthd, run from another checkout of berth (e.g. `git archive`
of an older commit), as a third column measured alternately with the two others: a change's
before and after, side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cri_api.v1.api_pb2 as pb  # noqa: E402
import cri_api.v1.api_pb2_grpc as pbg  # noqa: E402
import grpc  # noqa: E402

from bench.daemons import med, pss, rss, terminate  # noqa: E402
from tests.integration.daemon import ROOT, Daemon  # noqa: E402

CONTAINERD = "/usr/bin/containerd"
CTR = "/usr/bin/ctr"
PAUSE = "berth.local/pause:builtin"
BUSYBOX = "busybox:latest"


class Client:
    def __init__(self, name: str, sock: Path, base: Path):
        self.name, self.base = name, base
        self.channel = grpc.insecure_channel(f"unix://{sock}")
        self.rt = pbg.RuntimeServiceStub(self.channel)
        self.img = pbg.ImageServiceStub(self.channel)

    def wait(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.rt.Version(pb.VersionRequest(), timeout=2)
                return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def pod_config(self, name: str) -> Any:
        ns = pb.NamespaceOption(network=pb.NamespaceMode.POD, pid=pb.NamespaceMode.CONTAINER,
                                ipc=pb.NamespaceMode.POD)
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, namespace="bench", uid=str(uuid.uuid4()), attempt=0),
            hostname=name, log_directory=str(self.base / "pods" / name),
            linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(namespace_options=ns)))

    def start_pod(self, name: str, phases: list[list[float]] | None = None) -> tuple[str, str]:
        """RunPodSandbox + CreateContainer + StartContainer: (sandbox id, container id); each
        call's seconds appended to ``phases`` if given."""
        cfg = self.pod_config(name)
        t0 = time.monotonic()
        sid = self.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=120).pod_sandbox_id
        t1 = time.monotonic()
        c = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="sleep", attempt=0),
                               image=pb.ImageSpec(image=BUSYBOX), command=["sleep", "3600"], log_path="sleep/0.log")
        cid = self.rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sid, config=c, sandbox_config=cfg),
                                      timeout=120).container_id
        t2 = time.monotonic()
        self.rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=120)
        if phases is not None:
            phases.append([t1 - t0, t2 - t1, time.monotonic() - t2])
        return sid, cid

    def remove_pod(self, sid: str) -> None:
        self.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=120)
        self.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=120)

    def pause_pid(self, sid: str) -> int:
        info = self.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=True)).info
        return int(json.loads(info["info"])["pid"])

    def remove_all(self) -> None:
        for p in self.rt.ListPodSandbox(pb.ListPodSandboxRequest()).items:
            try:
                self.remove_pod(p.id)
            except grpc.RpcError as e:
                print(f"{self.name}: removing {p.id[:12]}: {e.details()}", file=sys.stderr)


def timed(f: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.monotonic()
    r = f()
    return time.monotonic() - t0, r


def conflist(path: Path, name: str, bridge: str, subnet: str, data_dir: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "10-bench.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": name,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False,
             "ipam": {"type": "host-local", "dataDir": str(data_dir), "ranges": [[{"subnet": subnet}]]}},
            {"type": "loopback"},
        ]}, indent=1))


class Containerd:
    """Debian's containerd with the CRI plugin, on roots of its own; stopped by its PID."""

    def __init__(self, base: Path, cni_dir: Path):
        self.base = base
        self.sock = base / "containerd.sock"
        self.config = base / "config.toml"
        self.log = base / "containerd.log"
        self.config.write_text(f"""version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{base}/containerd.sock.ttrpc"
[debug]
  address = "{base}/debug.sock"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  # oom_score_adj no lower than containerd's own: a container without CAP_SYS_RESOURCE (this
  # machine) cannot give the pause the -998 it asks for otherwise
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni_dir}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{base}/runc"
""")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([CONTAINERD, "--config", str(self.config)],
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)

    def ctr(self, *args: str, stdin: bytes | None = None) -> None:
        subprocess.run([CTR, "--address", str(self.sock), "-n", "k8s.io", *args], input=stdin, check=True,
                       capture_output=True)

    def shim_pids(self) -> list[int]:
        needle = str(self.sock).encode()
        return [p for p in procs(b"containerd-shim") if needle in cmdline(p)]

    def stop(self) -> None:
        terminate(self.proc, 20)
        for p in self.shim_pids():  # shims of pods a failed run left behind
            os.kill(p, signal.SIGKILL)


def cmdline(pid: int) -> bytes:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return b""


def procs(comm_prefix: bytes) -> list[int]:
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if open(f"/proc/{p}/comm", "rb").read().startswith(comm_prefix):
                    out.append(int(p))
            except OSError:
                pass
    return out


def unmount_under(base: Path) -> None:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f if line.split()[4].startswith(str(base) + "/")]
    for m in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)


class Side:
    """One runtime under test: its client, daemon pid and shims."""

    def __init__(self, client: Client, pid: Callable[[], int], shims: Callable[[], list[int]]):
        self.c, self.pid, self.shims = client, pid, shims
        self.lat: list[float] = []
        self.phases: list[list[float]] = []  # per sequential start: RunPodSandbox, CreateContainer, StartContainer
        self.rm: list[float] = []
        self.execs: list[float] = []
        self.parallel = float("nan")
        self.mem_kib = float("nan")
        self.mem_parts = ""


def sequential(sides: list[Side], n: int) -> None:
    for i in range(n):
        for s in sides:
            dt, (sid, _) = timed(lambda: s.c.start_pod(f"seq{i}", s.phases))
            s.lat.append(dt)
            s.rm.append(timed(lambda: s.c.remove_pod(sid))[0])


def parallel(s: Side, pods: int) -> list[tuple[str, str]]:
    with ThreadPoolExecutor(pods) as pool:
        t0 = time.monotonic()
        started = list(pool.map(lambda i: s.c.start_pod(f"par{i}"), range(pods)))
        s.parallel = time.monotonic() - t0
    return started


def memory(s: Side, pods: list[tuple[str, str]], base_rss: int) -> None:
    time.sleep(2)
    grow = rss(s.pid()) - base_rss
    shims = pss(s.shims())
    pauses = pss([s.c.pause_pid(sid) for sid, _ in pods])
    s.mem_kib = (grow + shims + pauses) / len(pods)
    s.mem_parts = (f"daemon RSS +{grow / 1024:.1f} MiB, {len(s.shims())} shims {shims / 1024:.1f} MiB PSS, "
                   f"pauses {pauses / 1024:.1f} MiB PSS")


def execs(sides: list[Side], pods: dict[str, list[tuple[str, str]]], n: int) -> None:
    for _ in range(n):
        for s in sides:
            cid = pods[s.c.name][0][1]
            dt, r = timed(lambda: s.c.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["true"], timeout=30),
                                                  timeout=60))
            assert r.exit_code == 0, (s.c.name, r)
            s.execs.append(dt)


def report(sides: list[Side], args: argparse.Namespace) -> None:
    def row(label: str, f: Callable[[Side], float], unit: str, scale: float = 1.0) -> None:
        vals = [f(s) * scale for s in sides]
        cells = "  ".join(f"{s.c.name} {v:8.3f} {unit}" for s, v in zip(sides, vals))
        ref = sides[-1].c.name
        ratio = "   ratio " + "  ".join(f"{s.c.name}/{ref} {v / vals[-1]:.2f}" for s, v in zip(sides[:-1], vals)) \
            if len(vals) > 1 and ref == "containerd" else ""
        print(f"{label:<44}{cells}{ratio}")
    print(f"\nload average at the end: {open('/proc/loadavg').read().split()[:3]} on {os.cpu_count()} cores")
    row(f"(a) run+create+start, median of {args.n}", lambda s: med(s.lat), "s")
    for k, name in enumerate(("RunPodSandbox", "CreateContainer", "StartContainer")):
        row(f"    of which {name}", lambda s: med([p[k] for p in s.phases]), "s")
    row(f"(a) stop+remove pod, median of {args.n}", lambda s: med(s.rm), "s")
    row(f"(b) {args.pods} pods started in parallel, wall", lambda s: s.parallel, "s")
    row(f"(c) ExecSync true, median of {args.execs}", lambda s: med(s.execs), "ms", 1000)
    row(f"(d) memory per pod with {args.pods} running", lambda s: s.mem_kib, "MiB", 1 / 1024)
    for s in sides:
        print(f"    {s.c.name}: {s.mem_parts}")


def setup_berthd(tmp: Path, tag: str, name: str = "berth", code: Path | None = None
                 ) -> tuple[Daemon, Client, bytes, bytes]:
    cni = tmp / f"{name}-net.d"
    conflist(cni, f"bench-{name}-{tag}", f"{'bb' if name == 'berth' else 'bl'}{tag}",
             f"10.{random.randint(64, 127)}.{random.randint(0, 255)}.0/24", tmp / f"{name}-ipam")
    d = Daemon(args=["--cni-conf-dir", str(cni)], code=code)
    d.start(timeout=60)
    d.import_busybox(BUSYBOX)
    c = Client(name, d.exec_root / "cri.sock", tmp / name)
    c.wait()
    sid, _ = c.start_pod("warmup")  # imports the built-in pause; warms the code paths
    c.remove_pod(sid)
    st, pause_tar = d.request("GET", f"/images/{PAUSE}/get", timeout=60)
    assert st == 200, pause_tar[:200]
    st, busybox_tar = d.request("GET", f"/images/{BUSYBOX}/get", timeout=60)
    assert st == 200, busybox_tar[:200]
    return d, c, pause_tar, busybox_tar


def new_containerd(tmp: Path, tag: str) -> Containerd:
    cni = tmp / "containerd-net.d"
    conflist(cni, f"bench-ctrd-{tag}", f"bc{tag}", f"10.{random.randint(128, 191)}.{random.randint(0, 255)}.0/24",
             tmp / "containerd-ipam")
    return Containerd(tmp, cni)


def setup_containerd(ctrd: Containerd, tmp: Path, pause_tar: bytes, busybox_tar: bytes) -> Client:
    ctrd.start()
    c = Client("containerd", ctrd.sock, tmp / "containerd")
    c.wait()
    ctrd.ctr("images", "import", "-", stdin=pause_tar)
    ctrd.ctr("images", "import", "-", stdin=busybox_tar)
    sid, _ = c.start_pod("warmup")
    c.remove_pod(sid)
    return c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10, help="sequential pod starts per runtime")
    ap.add_argument("--pods", type=int, default=30, help="pods started in parallel")
    ap.add_argument("--execs", type=int, default=20, help="ExecSync calls per runtime")
    ap.add_argument("--no-containerd", action="store_true", help="berth's figures only")
    ap.add_argument("--baseline", type=Path, help="another berth tree, run as a second berthd (before/after)")
    ap.add_argument("--keep", action="store_true", help="keep the tmp dir (the daemons' logs)")
    args = ap.parse_args()
    print(f"load average at the start: {open('/proc/loadavg').read().split()[:3]} on {os.cpu_count()} cores")
    tmp = Path(tempfile.mkdtemp(prefix="cri-bench-", dir="/var/tmp"))
    tag = f"{random.randint(0, 0xffff):04x}"
    d: Daemon | None = None
    based: Daemon | None = None
    ctrd: Containerd | None = None
    clients: list[Client] = []
    try:
        d, bc, pause_tar, busybox_tar = setup_berthd(tmp, tag)
        clients.append(bc)
        berth = d
        sides = [Side(bc, lambda: berth.proc.pid if berth.proc else 0, berth.shim_pids)]
        if args.baseline:
            based, bb, _, _ = setup_berthd(tmp, tag, "baseline", args.baseline.resolve())
            clients.append(bb)
            base_d = based
            sides.append(Side(bb, lambda: base_d.proc.pid if base_d.proc else 0, base_d.shim_pids))
        if not args.no_containerd:
            ctrd = new_containerd(tmp, tag)
            cc = setup_containerd(ctrd, tmp, pause_tar, busybox_tar)
            clients.append(cc)
            ctr_d = ctrd
            sides.append(Side(cc, lambda: ctr_d.proc.pid if ctr_d.proc else 0, ctr_d.shim_pids))
        sequential(sides, args.n)
        running: dict[str, list[tuple[str, str]]] = {}
        for s in sides:
            base = rss(s.pid())
            running[s.c.name] = parallel(s, args.pods)
            memory(s, running[s.c.name], base)
        execs(sides, running, args.execs)
        report(sides, args)
    finally:
        for c in clients:
            try:
                c.remove_all()
            except grpc.RpcError as e:
                print(f"{c.name}: {e.details()}", file=sys.stderr)
            c.channel.close()
        if ctrd:
            ctrd.stop()
        for daemon in (d, based):
            if daemon:
                daemon.cleanup()
        for br in (f"bb{tag}", f"bl{tag}", f"bc{tag}"):
            subprocess.run(["ip", "link", "del", br], capture_output=True)
        unmount_under(tmp)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
