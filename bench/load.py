"""Sustained load on berthd's API (issue 16), not a test.

    python bench/load.py [--clients 200] [--seconds 120] [--idle 1000] [--slowloris 50] [--host unix://...]
                         [--berth-tree TREE | --dockerd]

--clients API clients (asyncio, one process) each loop over a mix of run (create + start of a
container that prints a line and exits), inspect, logs, exec (on one of a few long-running
containers, its output read), ps and rm of their own containers; half keep their connection
alive, half open a new one per request. Meanwhile --idle connections are held open and never
used (by 4 helper processes, as 4 clients), --slowloris clients trickle a request head a byte a
second (each is cut by berthd's header time, then reconnects), and a pinger sends GET /_ping
every 50 ms on a connection of its own, from a process of its own (blocking socket: its
figures are berthd's answer time, not the wait of 200 clients' event loop in this process).
A second pinger, the control, pings a server process that does nothing else: its figures are
what the machine's load alone costs a ping.

Reported: p50/p99/max latency per route, errors (a status or a failure no client should see:
must be 0), /_ping's p99 per 10 s window (must stay under 10 ms), slowloris cuts, and berthd's
RSS and open fds before the load and after it (all clients gone, 2 s later). Without --host it
starts a berthd on temporary roots (raising its RLIMIT_NOFILE for the idle connections) and
stops it at the end. "before" is taken after --warmup seconds of the same mix (and 2 s of
rest), so that caches and the allocator's arenas are already warm. --berth-tree runs berthd from
another source tree (a baseline: alternate two invocations for before/after); --dockerd runs
Debian's dockerd instead (bench/daemons.py: its own socket and roots, no bridge, stopped by its
PID), under the same load, for comparison. Started daemons log at info, as users run them.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.daemons import Berthd, Dockerd  # noqa: E402
from tests.integration.daemon import _UnixHTTP  # noqa: E402

IMAGE = "busybox:latest"
MIX = [("run", 15), ("inspect", 25), ("logs", 15), ("exec", 10), ("ps", 20), ("rm", 15)]
EXEC_TARGETS = 8
API = "1.41"  # dockerd 20.10's (Debian's): the same requests to both daemons
REQUEST_TIMEOUT = 30.0  # an answer later than this is an error (a hang)
OWN_MAX = 4  # containers a client keeps before it removes one

HOLDER = r"""
import socket, sys
socks = []
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); socks.append(s)
print("ready", flush=True)
sys.stdin.read()
"""


PINGER = r"""
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(30)
end = time.monotonic() + float(sys.argv[2])
req = b"GET /v1.41/_ping HTTP/1.1\r\nHost: api\r\n\r\n"
while time.monotonic() < end:
    t0 = time.monotonic()
    s.sendall(req)
    buf = b""
    while not (buf.endswith(b"OK") and b"\r\n\r\n" in buf):
        b = s.recv(4096)
        if not b:
            sys.exit("/_ping: connection closed")
        buf += b
    ms = (time.monotonic() - t0) * 1000
    print(f"{t0:.6f} {ms:.3f} {buf.split(b' ', 2)[1].decode()}", flush=True)
    time.sleep(0.05)
"""


CONTROL = r"""
import socket, sys
ls = socket.socket(socket.AF_UNIX); ls.bind(sys.argv[1]); ls.listen(8)
print("ready", flush=True)
c, _ = ls.accept()
buf = b""
while b := c.recv(4096):
    buf += b
    while b"\r\n\r\n" in buf:
        buf = buf.split(b"\r\n\r\n", 1)[1]
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
"""


class Failure(Exception):
    pass


class Conn:
    """A minimal HTTP/1.1 client on the Unix socket (Content-Length, chunked, hijacked)."""

    def __init__(self, path: str):
        self.path = path
        self.r: asyncio.StreamReader | None = None
        self.w: asyncio.StreamWriter | None = None

    async def request(self, method: str, url: str, body: object | None = None,
                      keep: bool = True) -> tuple[int, bytes]:
        if self.w is None:
            self.r, self.w = await asyncio.open_unix_connection(sock=await connect(self.path), limit=1 << 20)
        assert self.r is not None and self.w is not None
        data = json.dumps(body).encode() if body is not None else b""
        head = f"{method} /v{API}{url} HTTP/1.1\r\nHost: api\r\nContent-Length: {len(data)}\r\n"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        if not keep:
            head += "Connection: close\r\n"
        self.w.write((head + "\r\n").encode() + data)
        status, headers = await self._head()
        payload, reusable = (b"", True) if status in (204, 304) else await self._body(headers)
        if not (keep and reusable):
            self.close()
        return status, payload

    async def _head(self) -> tuple[int, dict[str, str]]:
        assert self.r is not None
        raw = await self.r.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if k:
                headers[k.strip().lower()] = v.strip()
        return int(lines[0].split(" ")[1]), headers

    async def _body(self, headers: dict[str, str]) -> tuple[bytes, bool]:
        assert self.r is not None
        if "content-length" in headers:
            return await self.r.readexactly(int(headers["content-length"])), headers.get("connection") != "close"
        if headers.get("transfer-encoding") == "chunked":
            parts = []
            while True:
                size = int((await self.r.readuntil(b"\r\n")).strip(), 16)
                parts.append(await self.r.readexactly(size + 2))
                if size == 0:
                    return b"".join(parts), True
        return await self.r.read(), False  # hijacked (exec start) or no length: to EOF

    def close(self) -> None:
        if self.w is not None:
            self.w.close()
        self.r = self.w = None


async def connect(path: str, tries: int = 500) -> socket.socket:
    """A connected Unix socket. A full listen backlog makes a non-blocking connect() fail with
    EAGAIN, which asyncio's own connect takes for "in progress" and reports as connected (the
    first write then fails with ENOTCONN): retry instead, as a blocking connect would wait."""
    for _ in range(tries):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(path)
            return s
        except BlockingIOError:
            s.close()
            await asyncio.sleep(0.01)
    raise OSError(f"{path}: listen backlog full for {tries * 0.01:.0f} s")


class Load:
    def __init__(self, sock: str, seconds: float, pid: int):
        self.sock = sock
        self.pid = pid
        self.peak_fds = 0
        self.end = time.monotonic() + seconds
        self.lat: dict[str, list[float]] = collections.defaultdict(list)
        self.errors: list[str] = []
        self.targets: list[str] = []
        self.pings: list[tuple[float, float]] = []  # (time, ms)
        self.cuts = 0

    async def timed(self, conn: Conn, route: str, method: str, url: str, body: object | None = None,
                    keep: bool = True, ok: tuple[int, ...] = (200, 201, 204)) -> bytes:
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                status, payload = await conn.request(method, url, body, keep)
        except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as e:
            conn.close()
            self.errors.append(f"{route}: {type(e).__name__}: {e}")
            raise Failure from e
        self.lat[route].append((time.monotonic() - t0) * 1000)
        if status not in ok:
            self.errors.append(f"{route}: {status} {payload[:200]!r}")
            raise Failure
        return payload

    async def client(self, n: int) -> None:
        rnd = random.Random(n)
        keep = n % 2 == 0
        conn = Conn(self.sock)
        own: list[str] = []
        ops, weights = zip(*MIX)
        while time.monotonic() < self.end:
            op = rnd.choices(ops, weights)[0]
            if op in ("inspect", "logs") and not own or op == "rm" and len(own) < OWN_MAX // 2:
                op = "run"
            try:
                await getattr(self, op)(conn, keep, rnd, own)
            except Failure:
                await asyncio.sleep(0.1)
        conn.close()
        for cid in own:
            await self.timed(Conn(self.sock), "DELETE /containers/{id}", "DELETE", f"/containers/{cid}?force=1",
                             keep=False)

    async def run(self, conn: Conn, keep: bool, rnd: random.Random, own: list[str]) -> None:
        if len(own) >= OWN_MAX:
            await self.rm(conn, keep, rnd, own)
        body = await self.timed(conn, "POST /containers/create", "POST", "/containers/create",
                                {"Image": IMAGE, "Cmd": ["echo", "hello"], "HostConfig": {"NetworkMode": "none"}},
                                keep)
        cid = json.loads(body)["Id"]
        own.append(cid)
        await self.timed(conn, "POST /containers/{id}/start", "POST", f"/containers/{cid}/start", None, keep)

    async def inspect(self, conn: Conn, keep: bool, rnd: random.Random, own: list[str]) -> None:
        await self.timed(conn, "GET /containers/{id}/json", "GET", f"/containers/{rnd.choice(own)}/json", None, keep)

    async def logs(self, conn: Conn, keep: bool, rnd: random.Random, own: list[str]) -> None:
        await self.timed(conn, "GET /containers/{id}/logs", "GET",
                         f"/containers/{rnd.choice(own)}/logs?stdout=1&stderr=1", None, keep)

    async def exec(self, conn: Conn, keep: bool, rnd: random.Random, own: list[str]) -> None:
        target = rnd.choice(self.targets)
        body = await self.timed(conn, "POST /containers/{id}/exec", "POST", f"/containers/{target}/exec",
                                {"Cmd": ["echo", "hi"], "AttachStdout": True, "AttachStderr": True}, keep)
        eid = json.loads(body)["Id"]
        out = await self.timed(Conn(self.sock), "POST /exec/{id}/start", "POST", f"/exec/{eid}/start",
                               {"Detach": False, "Tty": False}, keep=False)
        if b"hi" not in out:
            self.errors.append(f"exec output {out[:100]!r}")

    async def ps(self, conn: Conn, keep: bool, rnd: random.Random, own: list[str]) -> None:
        await self.timed(conn, "GET /containers/json", "GET", "/containers/json?all=1", None, keep)

    async def rm(self, conn: Conn, keep: bool, rnd: random.Random, own: list[str]) -> None:
        cid = own.pop(rnd.randrange(len(own)))
        await self.timed(conn, "DELETE /containers/{id}", "DELETE", f"/containers/{cid}?force=1", None, keep)

    async def pinger(self, sock: str = "", route: str = "GET /_ping") -> None:
        """GET /_ping every 50 ms from a process of its own; with ``sock``, to that socket."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", PINGER, sock or self.sock, str(self.end - time.monotonic()),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode:
            self.errors.append(f"{route}: {err.decode()[-300:]}")
        for line in out.decode().splitlines():
            t0, ms, status = line.split()
            if status != "200":
                self.errors.append(f"{route}: {status}")
            if not sock:
                self.pings.append((float(t0), float(ms)))
            self.lat[route].append(float(ms))

    async def control(self) -> None:
        """The same pinger against a server process that does nothing else: what the machine's
        load alone does to a ping's time (the scheduler's delays of two processes)."""
        path = tempfile.mktemp(prefix="bload-", suffix=".sock", dir="/tmp")
        server = await asyncio.create_subprocess_exec(sys.executable, "-c", CONTROL, path,
                                                      stdout=asyncio.subprocess.PIPE)
        try:
            assert server.stdout is not None
            await server.stdout.readline()
            await self.pinger(path, "control: ping of an idle process")
        finally:
            if server.returncode is None:  # it ends by itself once the pinger hangs up
                try:
                    server.kill()
                except ProcessLookupError:
                    pass
            await server.wait()
            os.unlink(path)

    async def sampler(self) -> None:
        while time.monotonic() < self.end:
            self.peak_fds = max(self.peak_fds, daemon_stats(self.pid)[1])
            await asyncio.sleep(1)

    async def slowloris(self) -> None:
        """Trickles a head a byte a second; counts how often berthd cuts it."""
        while time.monotonic() < self.end:
            r, w = await asyncio.open_unix_connection(sock=await connect(self.sock))
            w.write(b"GET /_ping HTTP/1.1\r\n")
            try:
                while time.monotonic() < self.end:
                    await asyncio.sleep(1)
                    if r.at_eof() or w.is_closing():
                        break
                    w.write(b"X")
                    await w.drain()
                    if r._buffer:  # type: ignore[attr-defined]  # an answer (the 408) arrived
                        break
            except OSError:
                pass
            if time.monotonic() < self.end:
                self.cuts += 1
            w.close()


def daemon_stats(pid: int) -> tuple[float, int]:
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else 0.0


async def setup(load: Load) -> None:
    conn = Conn(load.sock)
    for i in range(EXEC_TARGETS):
        body = await load.timed(conn, "setup", "POST", "/containers/create",
                                {"Image": IMAGE, "Cmd": ["sleep", "3600"], "HostConfig": {"NetworkMode": "none"}})
        cid = json.loads(body)["Id"]
        await load.timed(conn, "setup", "POST", f"/containers/{cid}/start")
        load.targets.append(cid)
    conn.close()


async def teardown(load: Load) -> None:
    conn = Conn(load.sock)
    for cid in load.targets:
        await load.timed(conn, "setup", "DELETE", f"/containers/{cid}?force=1")
    conn.close()


async def drive(sock: str, pid: int, seconds: float, clients: int, slowloris: int) -> Load:
    load = Load(sock, seconds, pid)
    await setup(load)
    load.end = time.monotonic() + seconds
    tasks = [asyncio.create_task(load.client(i)) for i in range(clients)]
    tasks += [asyncio.create_task(load.slowloris()) for _ in range(slowloris)]
    tasks += [asyncio.create_task(load.pinger()), asyncio.create_task(load.control()),
              asyncio.create_task(load.sampler())]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            load.errors.append(f"client ended: {type(r).__name__}: {r}")
    await teardown(load)
    return load


def report(load: Load, args: argparse.Namespace, before: tuple[float, int], after: tuple[float, int]) -> None:
    print(f"{args.clients} clients, {args.idle} idle connections, {args.slowloris} slowloris, {args.seconds:.0f} s; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'route':32} {'n':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for route, xs in sorted(load.lat.items()):
        if route != "setup":
            print(f"{route:32} {len(xs):7d} {statistics.median(xs):8.1f} {pct(xs, 0.99):8.1f} {max(xs):8.1f}")
    t0 = load.pings[0][0] if load.pings else 0.0
    windows: dict[int, list[float]] = collections.defaultdict(list)
    for t, ms in load.pings:
        windows[int((t - t0) // 10)].append(ms)
    print("/_ping p99 per 10 s: " + " ".join(f"{pct(w, 0.99):.1f}" for _, w in sorted(windows.items())) + " ms")
    print(f"slowloris heads cut: {load.cuts}")
    print(f"errors: {len(load.errors)}")
    for e in load.errors[:10]:
        print(f"  {e}")
    print(f"{args.name} RSS {before[0]:.1f} -> {after[0]:.1f} MiB, fds {before[1]} -> {after[1]} (peak {load.peak_fds}); before = after a {args.warmup:.0f} s warm-up")


def start_daemon(args: argparse.Namespace) -> tuple[Berthd | Dockerd, str, int]:
    """The daemon under load, started, with busybox imported: (daemon, socket, pid)."""
    d: Berthd | Dockerd = Dockerd() if args.dockerd else Berthd(Path(args.berth_tree) if args.berth_tree else None)
    d.timed_start()
    assert d.proc is not None
    rootfs = Path(tempfile.mkdtemp(prefix="bload-", dir="/var/tmp")) / "rootfs.tar"
    try:
        subprocess.run([str(Path(__file__).resolve().parents[1] / "scripts" / "mkrootfs.sh"), str(rootfs)], check=True)
        c = _UnixHTTP(str(d.sock), 120)
        repo, _, tag = IMAGE.partition(":")
        c.request("POST", f"/images/create?fromSrc=-&repo={repo}&tag={tag}&changes=CMD%20%5B%22sh%22%5D",
                  body=rootfs.read_bytes())
        r = c.getresponse()
        if r.status != 200:
            raise RuntimeError(f"import of {IMAGE}: {r.status} {r.read()[:300]!r}")
        r.read()
        c.close()
    finally:
        shutil.rmtree(rootfs.parent, ignore_errors=True)
    return d, str(d.sock), d.proc.pid


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--seconds", type=float, default=120)
    p.add_argument("--idle", type=int, default=1000)
    p.add_argument("--slowloris", type=int, default=50)
    p.add_argument("--warmup", type=float, default=10, help="seconds of the same mix before 'before'")
    p.add_argument("--rounds", type=int, default=1, help="run the load this many times on the same berthd, "
                   "with RSS and fds after each (does memory keep growing, or was it warm-up?)")
    p.add_argument("--log", default="", help="keep the started berthd's log here")
    p.add_argument("--host", default="", help="a running berthd (unix://PATH); default: start one")
    p.add_argument("--berth-tree", default="", help="start berthd from this source tree (default: this one)")
    p.add_argument("--dockerd", action="store_true", help="start Debian's dockerd instead of berthd")
    args = p.parse_args()
    args.name = "dockerd" if args.dockerd else "berthd"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.idle + args.clients * 2 + args.slowloris + 1024
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, need)), hard))  # berthd inherits it
    d: Berthd | Dockerd | None = None
    if args.host:
        sock, pid = args.host.removeprefix("unix://"), int(input("daemon pid: "))
    else:
        d, sock, pid = start_daemon(args)
        print(f"{args.name} pid {pid}", flush=True)
    holders: list[subprocess.Popen[str]] = []
    try:
        if args.warmup:
            asyncio.run(drive(sock, pid, args.warmup, args.clients, 0))
        time.sleep(2)
        before = daemon_stats(pid)
        per = max(1, -(-args.idle // 4))
        for left in range(args.idle, 0, -per):
            holders.append(subprocess.Popen([sys.executable, "-c", HOLDER, sock, str(min(per, left))],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for h in holders:
            assert h.stdout is not None and h.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while daemon_stats(pid)[1] < before[1] + args.idle and time.monotonic() < deadline:
            time.sleep(0.1)  # berthd has accepted them all
        load = asyncio.run(drive(sock, pid, args.seconds, args.clients, args.slowloris))
        for n in range(2, args.rounds + 1):
            time.sleep(2)
            rss, fds = daemon_stats(pid)
            print(f"after round {n - 1}: berthd RSS {rss:.1f} MiB, fds {fds}", flush=True)
            more = asyncio.run(drive(sock, pid, args.seconds, args.clients, args.slowloris))
            load.errors += more.errors
        for h in holders:
            h.communicate("")
        holders = []
        time.sleep(2)
        after = daemon_stats(pid)
        report(load, args, before, after)
        return 1 if load.errors else 0
    finally:
        for h in holders:
            h.kill()
            h.wait()
        if d is not None:
            if args.log and isinstance(d, Berthd):
                shutil.copy(d.log, args.log)
            d.cleanup()


if __name__ == "__main__":
    sys.exit(main())
