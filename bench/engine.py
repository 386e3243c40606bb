"""Engine-core benchmarks through the real docker CLI and the raw API (not a test).

    python bench/engine.py [--runs 20] [--containers 100] [--dockerd | --other HOST]
                           [--baseline TREE]
                           [--only run,phases,exec,rate,cold,cpu,start,restart,tls,runtimes,metrics]

    run     `docker run --rm busybox true` latency through the CLI
    phases  the same through the raw API, hop by hop as the CLI does it: create, attach,
            wait (header), start, then exit + auto-remove until the wait returns; on the
            default network and with --network none (no veth to plug in)
    exec    `docker exec C true` through the CLI, and through the API alone (exec create +
            start with the stream + inspect: the CLI's work minus its own start-up), hop by
            hop; then the CPU per API exec of berthd, the shim host and its reaped children
    rate    N x `docker run -d busybox sleep 3600` (containers/s), then `docker ps` with N
            running, PSS per shim and berthd's RSS
    cold    berthd cold start until /_ping answers
    ports   (not in the default list) throughput of a 100 MB download from busybox httpd through a
            published port (-p), from the host's 127.0.0.1
    cpu     berthd's CPU time per API `run --rm` (default network, all its threads), from
            /proc/PID/stat: it moves much less with the machine's load than the walls do
    start   (not in the default list) each daemon stopped and started again, alternating: on
            an empty data root and on its existing one, until /_ping answers and until
            GET /containers/json (which needs the recovered state) answers, with the CPU
            seconds the daemon process itself used by then (``bench/daemons.py``)
    restart (not in the default list) N x `docker run -d`, GET /containers/json through the
            API with N running, then restarts with the N running (live restore) to /_ping
            and to the list, and the list again after them
    tls     (not in the default list) `docker run --rm` over TLS with client certificates
            against the Unix socket, and a TLS handshake + /_ping (``bench/tls.py``)
    runtimes (not in the default list) `docker run --rm` with --runtime runc and crun against
            berth's own (``bench/runtimes.py``)
    metrics (not in the default list) GET /metrics with 0 and --containers running
            (``bench/metrics.py``)

Every daemon runs side by side, alternating run by run; medians and ratios are printed.
berthd runs at its default log level (info), as users run it. --dockerd starts Debian's
dockerd on its own roots with a bridge of its own (``--bridge``, made here; no iptables) and
stops it by its PID; --other uses a daemon already running at HOST. --baseline TREE also runs a
berthd from another source tree (``git archive HEAD`` unpacked), for before/after in one run.
--rootless also runs a rootless berthd (issue 15) as a throwaway user (made with ``useradd`` and
removed afterwards, as the tests do: ``tests/integration/rootless/user.py``), and, where Debian's
podman is installed, rootless podman as another (``bench/podman.py``) in the run and ports rows.
start, restart, tls, runtimes and metrics run their own daemons (tls, runtimes and metrics by
calling those modules' ``bench``, before the others, so no shared daemon is up meanwhile; start
and restart's are ``bench/daemons.py``'s: berthd from this tree and the
baseline on /var/tmp, and with --dockerd Debian's dockerd with ``--bridge=none --iptables=false
--live-restore``), each byte-compiled first (a packaged install has its bytecode).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Union

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.daemons import DOCKER, Berthd, cpu_s, ensure_busybox, kib, med, request  # noqa: E402
from bench.daemons import Dockerd as StartedDockerd  # noqa: E402
from logs import Dockerd  # noqa: E402
from tests.integration.daemon import ROOT, Daemon  # noqa: E402

INFO = ["--log-level", "info"]
# a pause before each sample: the daemon measured before (dockerd's containerd and shims, Go's
# GC) goes on working for tens of ms after its answer, on the same 2 cores
SETTLE = float(os.environ.get("BENCH_SETTLE", "0.15"))


def docker(host: str, *args: str, check: bool = True) -> float:
    env = dict(os.environ, DOCKER_HOST=host)
    t0 = time.perf_counter()
    p = subprocess.run([DOCKER, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if check and p.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} against {host}: {p.stderr.decode()}")
    return dt


def docker_out(host: str, *args: str) -> str:
    return subprocess.run([DOCKER, *args], env=dict(os.environ, DOCKER_HOST=host), check=True,
                          capture_output=True, text=True).stdout


# -- the raw API ----------------------------------------------------------------------------


def _conn(host: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(host.removeprefix("unix://"))
    return s


def _send(s: socket.socket, method: str, url: str, body: object = None, upgrade: bool = False) -> None:
    b = json.dumps(body).encode() if body is not None else b""
    up = "Connection: Upgrade\r\nUpgrade: tcp\r\n" if upgrade else ""
    s.sendall(f"{method} /v1.41{url} HTTP/1.1\r\nHost: x\r\n{up}Content-Type: application/json\r\n"
              f"Content-Length: {len(b)}\r\n\r\n".encode() + b)


def _head(s: socket.socket) -> tuple[int, bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head, rest


def _response(s: socket.socket) -> tuple[int, bytes]:
    status, head, body = _head(s)
    if b"chunked" in head.lower():
        while not body.endswith(b"0\r\n\r\n"):
            body += s.recv(65536)
        return status, body
    n = next((int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")), 0)
    while len(body) < n:
        body += s.recv(65536)
    return status, body


def _json(body: bytes) -> dict[str, object]:
    if not body.startswith(b"{"):  # one chunk of a chunked body
        body = body.split(b"\r\n", 1)[1]
    return json.loads(body[:body.rindex(b"}") + 1])


def run_phases(host: str, network: str = "default") -> list[float]:
    """create, attach, wait header, start, exit + remove (wait returns), total — seconds."""
    t = [time.perf_counter()]
    s = _conn(host)
    _send(s, "POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"], "AttachStdout": True,
                                            "AttachStderr": True,
                                            "HostConfig": {"AutoRemove": True, "NetworkMode": network}})
    status, body = _response(s)
    assert status == 201, body
    cid = str(_json(body)["Id"])
    t.append(time.perf_counter())
    a = _conn(host)
    _send(a, "POST", f"/containers/{cid}/attach?stream=1&stdout=1&stderr=1", upgrade=True)
    _head(a)
    t.append(time.perf_counter())
    w = _conn(host)
    _send(w, "POST", f"/containers/{cid}/wait?condition=removed")
    _, _, rest = _head(w)
    t.append(time.perf_counter())
    _send(s, "POST", f"/containers/{cid}/start")
    status, body = _response(s)
    assert status == 204, body
    t.append(time.perf_counter())
    while b"}" not in rest:
        chunk = w.recv(65536)
        if not chunk:
            break
        rest += chunk
    t.append(time.perf_counter())
    for x in (s, a, w):
        x.close()
    return [b - a_ for a_, b in zip(t, t[1:])] + [t[-1] - t[0]]


def exec_api(host: str, cid: str) -> float:
    return exec_phases(host, cid)[-1]


def exec_phases(host: str, cid: str) -> list[float]:
    """exec create, start until the 101, the stream until its end, inspect, total — seconds."""
    t = [time.perf_counter()]
    s = _conn(host)
    _send(s, "POST", f"/containers/{cid}/exec", {"Cmd": ["true"], "AttachStdout": True, "AttachStderr": True})
    status, body = _response(s)
    assert status == 201, body
    eid = str(_json(body)["Id"])
    t.append(time.perf_counter())
    st = _conn(host)
    _send(st, "POST", f"/exec/{eid}/start", {"Detach": False, "Tty": False}, upgrade=True)
    _head(st)
    t.append(time.perf_counter())
    st.shutdown(socket.SHUT_WR)
    while st.recv(65536):
        pass
    st.close()
    t.append(time.perf_counter())
    _send(s, "GET", f"/exec/{eid}/json")
    status, body = _response(s)
    assert _json(body)["ExitCode"] == 0, body
    s.close()
    t.append(time.perf_counter())
    return [b - a for a, b in zip(t, t[1:])] + [t[-1] - t[0]]


# -- reporting ------------------------------------------------------------------------------


def report(title: str, res: dict[str, list[float]], unit: str = "ms") -> None:
    scale = 1000 if unit == "ms" else 1
    line = f"  {title:34s}" + "".join(f"  {k} {med(v) * scale:7.1f} {unit}" for k, v in res.items())
    for other in ("before", "dockerd"):
        if other in res and "berthd" in res:
            line += f"  berthd/{other} {med(res['berthd']) / med(res[other]):.2f}x"
    if "rootless" in res and "berthd" in res:
        line += f"  rootless/berthd {med(res['rootless']) / med(res['berthd']):.2f}x"
    if "rootless" in res and "podman" in res:
        line += f"  rootless/podman {med(res['rootless']) / med(res['podman']):.2f}x"
    print(line, flush=True)


def alternate(hosts: dict[str, str], runs: int, fn: Callable[[str, str], float]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in hosts}
    for k, h in hosts.items():
        fn(k, h)  # warm up
    for _ in range(runs):
        for k, h in hosts.items():
            time.sleep(SETTLE)
            out[k].append(fn(k, h))
    return out


# -- CPU ------------------------------------------------------------------------------------


def _cpu_fields(pid: int) -> tuple[float, float]:
    """(utime + stime, cutime + cstime) of ``pid``: its own CPU and its reaped children's."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(f[11]) + int(f[12])) / tick, (int(f[13]) + int(f[14])) / tick


def cpu_per_exec(daemons: dict[str, Daemon], cids: dict[str, str], runs: int) -> None:
    """CPU per API exec (create, start with the stream, inspect), alternating exec by exec:
    berthd's, the shim host's (the init's parent) and the children the shim host reaped (each
    exec's process: from fork to ``true``'s exit). Totals over all runs / runs."""
    parts = ("berthd", "shim", "shim's children")
    tot = {k: [0.0, 0.0, 0.0] for k in daemons}
    shims = {}
    for k, dm in daemons.items():
        init = docker_out(dm.host, "inspect", "-f", "{{.State.Pid}}", cids[k]).strip()
        shims[k] = int(open(f"/proc/{init}/stat").read().rsplit(")", 1)[1].split()[1])
    for _ in range(runs):
        for k, dm in daemons.items():
            assert dm.proc is not None
            b0, (s0, c0) = cpu_s(dm.proc.pid), _cpu_fields(shims[k])
            exec_phases(dm.host, cids[k])
            b1, (s1, c1) = cpu_s(dm.proc.pid), _cpu_fields(shims[k])
            for i, v in enumerate((b1 - b0, s1 - s0, c1 - c0)):
                tot[k][i] += v
    for i, name in enumerate(parts):
        report(f"CPU per API exec: {name} (mean)", {k: [v[i] / runs] for k, v in tot.items()})


def cpu_per_run(daemons: dict[str, Daemon], runs: int) -> None:
    """berthd's CPU per API `run --rm`, alternating run by run: totals over all runs / runs (a
    clock tick is 10 ms, so single runs are not resolved, their sum is). The runtime side
    (shim, helper, init) is not counted: the shim double-forks away from the fork server."""
    own = {k: 0.0 for k in daemons}
    for _ in range(runs):
        for k, dm in daemons.items():
            assert dm.proc is not None
            a = cpu_s(dm.proc.pid)
            run_phases(dm.host)
            own[k] += cpu_s(dm.proc.pid) - a
    report("CPU per run --rm: berthd (mean)", {k: [v / runs] for k, v in own.items()})


# -- memory ---------------------------------------------------------------------------------


def berth_memory(d: Daemon) -> str:
    pss = [kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in d.shim_pids()]
    assert d.proc is not None
    rss = kib(f"/proc/{d.proc.pid}/status", "VmRSS:")
    return (f"shims: {len(pss)}, PSS per shim median {med([float(p) for p in pss]) / 1024:.2f} MiB; "
            f"berthd RSS {rss / 1024:.1f} MiB")


# -- start and restart (bench/daemons.py) ---------------------------------------------------

Starter = Union[Berthd, StartedDockerd]


def api_ms(sock: str, path: str, n: int = 50) -> float:
    """Median ms of GET path through the API (no CLI), after one warm-up."""
    request(sock, "GET", path)
    xs = []
    for _ in range(n):
        t0 = time.perf_counter()
        status, _ = request(sock, "GET", path)
        xs.append(time.perf_counter() - t0)
        assert status == 200
    return med(xs) * 1000


def starts(daemons: dict[str, Starter], runs: int, fresh: bool, title: str) -> None:
    """Stop and start each daemon ``runs`` times, alternating; ``fresh``: a new data root each time."""
    ping: dict[str, list[float]] = {k: [] for k in daemons}
    ready: dict[str, list[float]] = {k: [] for k in daemons}
    cpu_ping: dict[str, list[float]] = {k: [] for k in daemons}
    cpu_ready: dict[str, list[float]] = {k: [] for k in daemons}
    for _ in range(runs):
        for k in list(daemons):
            dm = daemons[k]
            dm.stop()
            if fresh:
                dm.cleanup()
                dm = daemons[k] = Berthd(dm.code) if isinstance(dm, Berthd) else StartedDockerd()
            p, r = dm.timed_start()
            ping[k].append(p)
            ready[k].append(r)
            cpu_ping[k].append(dm.cpu[0])
            cpu_ready[k].append(dm.cpu[1])
    report(f"{title} -> /_ping", ping)
    report("  daemon's own CPU by then", cpu_ping)
    report(f"{title} -> GET /containers/json", ready)
    report("  daemon's own CPU by then", cpu_ready)


def start_and_restart(args: argparse.Namespace, only: set[str], rootfs: Path) -> None:
    """The start and restart figures, on daemons of their own (stopped and started here)."""
    daemons: dict[str, Starter] = {"berthd": Berthd()}
    if args.baseline:
        daemons["before"] = Berthd(Path(args.baseline))
    if args.dockerd:
        daemons["dockerd"] = StartedDockerd()
    for tree in {str(ROOT), *([args.baseline] if args.baseline else [])}:
        # an installed berth has its bytecode; PYTHONDONTWRITEBYTECODE would leave every start compiling
        subprocess.run([sys.executable, "-m", "compileall", "-q", f"{tree}/berth"], check=True, capture_output=True)
    try:
        for dm in daemons.values():
            dm.timed_start()
            ensure_busybox(dm.host, rootfs)
        if "start" in only:
            print(f"daemon start, median of {args.cold}:", flush=True)
            starts(daemons, args.cold, True, "empty data root")
            for dm in daemons.values():
                ensure_busybox(dm.host, rootfs)
            starts(daemons, args.cold, False, "restart, existing data root")
        if "restart" in only:
            print(f"{args.containers} running:", flush=True)
            for k, dm in daemons.items():
                for _ in range(args.containers):
                    docker(dm.host, "run", "-d", "busybox", "sleep", "3600")
                print(f"  {k}: GET /containers/json {api_ms(str(dm.sock), '/containers/json'):.2f} ms", flush=True)
            starts(daemons, args.cold, False, f"restart with {args.containers} running")
            for k, dm in daemons.items():
                print(f"  {k}: GET /containers/json after the restart "
                      f"{api_ms(str(dm.sock), '/containers/json'):.2f} ms", flush=True)
            for dm in daemons.values():
                ids = docker_out(dm.host, "ps", "-aq", "--no-trunc").split()
                if ids:
                    docker(dm.host, "rm", "-f", *ids, check=False)
    finally:
        for dm in daemons.values():
            dm.cleanup()


OWN_DAEMON = ("tls", "runtimes", "metrics")   # each module's bench() on a berthd of its own


def own_daemon_benches(args: argparse.Namespace, only: set[str]) -> None:
    """bench/tls.py, bench/runtimes.py and bench/metrics.py, imported and run here."""
    if "tls" in only:
        import tls
        print("-- tls", flush=True)
        tls.bench(args.runs)
    if "runtimes" in only:
        import runtimes
        print("-- runtimes", flush=True)
        runtimes.bench(args.runs)
    if "metrics" in only:
        import metrics
        print("-- metrics", flush=True)
        metrics.bench(args.containers, args.runs)


# -- main -----------------------------------------------------------------------------------


def start_rootless() -> Any:
    """A rootless berthd as a throwaway user (removed by the caller: ``rl.stop(); rl.user.remove()``)."""
    from tests.integration.rootless.user import RootlessDaemon, RootlessUser
    user = RootlessUser.make()
    rl = RootlessDaemon(user, INFO)
    try:
        rl.start()
    except BaseException:
        user.remove()
        raise
    return rl


def start_podman(d: Daemon) -> Any:
    """Rootless podman as a throwaway user of its own, with berthd's busybox (``docker save``,
    ``podman load``); None, saying why, where podman is not installed (``bench/podman.py``)."""
    import podman
    if podman.absent():
        print(f"  {podman.absent()}", flush=True)
        return None
    if podman.cni_conflict():
        print(f"  WARNING: {podman.cni_conflict()}", flush=True)
    pm = podman.RootlessPodman.make()
    try:
        archive = d.base / "busybox-save.tar"
        docker_out(d.host, "save", "-o", str(archive), "busybox:latest")
        pm.load(archive)
        archive.unlink()
        print(f"  rootless podman {pm.out('version', '--format', '{{.Client.Version}}').strip()} as "
              f"{pm.user.name}; its launcher alone (setpriv etc.) {pm.launcher_ms():.1f} ms", flush=True)
    except BaseException:
        pm.remove()
        raise
    return pm


def clis(hosts: dict[str, str], pm: Any) -> dict[str, Callable[..., str]]:
    """kind -> a function running that kind's CLI (docker against its host, or rootless podman)."""
    out: dict[str, Callable[..., str]] = {k: (lambda *a, h=h: docker_out(h, *a)) for k, h in hosts.items()}
    if pm is not None:
        out["podman"] = pm.out
    return out


_port_servers: dict[str, tuple[str, int]] = {}
HTTPD = "mkdir /w && dd if=/dev/zero of=/w/f bs=1M count=100 2>/dev/null && httpd -f -p 80 -h /w"


def port_throughput(kind: str, cli: Callable[..., str]) -> float:
    """MB/s of a 100 MB GET through a published port of a busybox httpd (started once per daemon)."""
    if kind not in _port_servers:
        from tests.integration.images.registry_proc import free_port
        port = free_port()
        cid = cli("run", "-d", "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c", HTTPD).strip()
        _port_servers[kind] = (cid, port)
        deadline = time.monotonic() + 20
        while subprocess.run(["curl", "-sf", "-o", "/dev/null", f"http://127.0.0.1:{port}/f"]).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind}: the published port {port} does not answer")
            time.sleep(0.2)
    _, port = _port_servers[kind]
    t0 = time.perf_counter()
    subprocess.run(["curl", "-sf", "-o", "/dev/null", f"http://127.0.0.1:{port}/f"], check=True)
    return 100 / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--containers", type=int, default=100)
    ap.add_argument("--cold", type=int, default=10)
    ap.add_argument("--dockerd", action="store_true", help="start Debian's dockerd for the comparison")
    ap.add_argument("--other", default=os.environ.get("BENCH_OTHER_HOST"))
    ap.add_argument("--baseline", help="a second berth source tree to run side by side")
    ap.add_argument("--only", default="run,phases,exec,rate,cold")
    ap.add_argument("--rootless", action="store_true", help="also a rootless berthd, as a throwaway user")
    args = ap.parse_args()
    only = set(args.only.split(","))
    unknown = only - {"run", "phases", "exec", "rate", "cold", "cpu", "start", "restart", "ports", *OWN_DAEMON}
    if unknown:
        ap.error(f"--only: unknown {', '.join(sorted(unknown))}")
    own_daemon_benches(args, only)
    if not only - set(OWN_DAEMON):
        return

    d = Daemon(args=INFO)
    # code= : Daemon fixes its tree when made (ROOT swapped at start() alone ran this tree twice)
    base = Daemon(args=INFO, code=Path(args.baseline)) if args.baseline else None
    dk: Dockerd | None = None
    rl: Any = None
    pm: Any = None
    bridge = f"bbk{os.getpid() % 100000}"
    try:
        d.start()
        d.import_busybox()
        daemons = {"berthd": d}
        hosts = {"berthd": d.host}
        if args.rootless:
            rl = start_rootless()
            hosts["rootless"] = rl.host
            pm = start_podman(d)
        if base is not None:
            base.start()  # from its own tree (its cwd)
            daemons["before"] = base
            hosts["before"] = base.host
        if args.dockerd:
            net = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"
            for cmd in (["link", "add", bridge, "type", "bridge"], ["addr", "add", f"{net}.1/24", "dev", bridge],
                        ["link", "set", bridge, "up"]):
                subprocess.run(["ip", *cmd], check=True)
            dk = Dockerd((f"--bridge={bridge}", "--iptables=false", "--ip-masq=false"))
            dk.start()
            hosts["dockerd"] = dk.host
        elif args.other:
            hosts["dockerd"] = args.other
        for h in hosts.values():
            ensure_busybox(h, d.base / "rootfs.tar")
        print(f"medians of {args.runs}, daemons alternating; load average {open('/proc/loadavg').read().split()[:3]}",
              flush=True)

        cli = clis(hosts, pm)
        kinds = {k: k for k in cli}   # the daemons, and rootless podman where it runs
        if "run" in only:
            report("docker run --rm busybox true", alternate(
                kinds, args.runs, lambda k, _: pm.timed("run", "--rm", "busybox", "true") if k == "podman"
                else docker(hosts[k], "run", "--rm", "busybox", "true")))
        if "phases" in only:
            for net in ("default", "none"):
                rows: dict[str, list[list[float]]] = {k: [] for k in hosts}
                alternate(hosts, args.runs, lambda k, h: rows[k].append(run_phases(h, net)) or 0.0)
                for i, name in enumerate(("create", "attach", "wait (header)", "start", "exit + remove", "total")):
                    report(f"API run --rm --net {net}: {name}", {k: [r[i] for r in rows[k][1:]] for k in hosts})
        if "cpu" in only:
            cpu_per_run(daemons, args.runs)
        if "exec" in only:
            cids = {k: docker_out(h, "run", "-d", "busybox", "sleep", "3600").strip() for k, h in hosts.items()}
            try:
                report("docker exec C true", alternate(hosts, args.runs,
                                                       lambda k, h: docker(h, "exec", cids[k], "true")))
                steps: dict[str, list[list[float]]] = {k: [] for k in hosts}

                def one_exec(k: str, h: str) -> float:
                    steps[k].append(exec_phases(h, cids[k]))
                    return steps[k][-1][-1]

                alternate(hosts, args.runs, one_exec)
                for i, name in enumerate(("create", "start (101)", "stream to its end", "inspect", "total")):
                    report(f"exec through the API: {name}", {k: [r[i] for r in steps[k]] for k in hosts})
                cpu_per_exec(daemons, cids, max(args.runs, 60))
            finally:
                for k, h in hosts.items():
                    docker(h, "rm", "-f", cids[k], check=False)
        if "rate" in only:
            rates: dict[str, list[float]] = {}
            for k, h in hosts.items():
                t0 = time.perf_counter()
                for _ in range(args.containers):
                    docker(h, "run", "-d", "busybox", "sleep", "3600")
                rates[k] = [args.containers / (time.perf_counter() - t0)]
                ps = [docker(h, "ps") for _ in range(20)]
                print(f"  {k}: docker ps with {args.containers} running: {med(ps) * 1000:.1f} ms"
                      + (f"; {berth_memory(daemons[k])}" if k in daemons else ""), flush=True)
                ids = docker_out(h, "ps", "-q", "--no-trunc").split()
                if ids:
                    docker(h, "rm", "-f", *ids, check=False)
            line = f"  {'sequential docker run -d':34s}" + "".join(f"  {k} {v[0]:7.1f}/s" for k, v in rates.items())
            for other in ("before", "dockerd"):
                if other in rates:
                    line += f"  berthd/{other} {rates['berthd'][0] / rates[other][0]:.2f}x"
            print(line, flush=True)
        if "ports" in only:
            try:
                report("-p download (100 MB, 127.0.0.1)", alternate(
                    kinds, max(3, args.runs // 4), lambda k, _: port_throughput(k, cli[k])), unit="MB/s")
            finally:
                for k, (cid, _) in _port_servers.items():
                    try:
                        cli[k]("rm", "-f", cid)
                    except (RuntimeError, subprocess.CalledProcessError):
                        pass
        if "cold" in only:
            cold = []
            for _ in range(args.cold):
                d.stop()
                cold.append(d.start())
            report("berthd cold start to /_ping", {"berthd": cold})
        if only & {"start", "restart"}:
            rootfs = Path(tempfile.mkdtemp(prefix="bench-", dir="/var/tmp")) / "rootfs.tar"
            try:
                shutil.copy(d.base / "rootfs.tar", rootfs)
                start_and_restart(args, only, rootfs)
            finally:
                shutil.rmtree(rootfs.parent, ignore_errors=True)
    finally:
        if pm is not None:
            pm.remove()
            if pm.leftovers():
                print(f"  rootless podman left: {', '.join(pm.leftovers())}", flush=True)
        if rl is not None:
            rl.stop()
            rl.user.remove()
        for x in (d, base):
            if x is not None:
                x.cleanup()
        if dk is not None:
            dk.stop()
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)


if __name__ == "__main__":
    main()
