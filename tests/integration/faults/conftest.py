"""Fault injection (issue 16, item 4): a berthd of each test's own, a churn of runs to inject
faults into, and the checks every fault must pass afterwards (``assert_consistent``)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator

import pytest

from tests.integration.daemon import Daemon, running, suite_args

DOCKER = "/usr/local/bin/docker"
_ROOTFS: list[Path] = []  # one busybox tarball for every daemon of the session


@pytest.fixture
def own_daemon() -> Iterator[Daemon]:
    if os.geteuid() != 0:
        pytest.skip("needs uid 0")
    d = Daemon(args=suite_args())
    yield from run_daemon(d)


def run_daemon(d: Daemon) -> Iterator[Daemon]:
    if not _ROOTFS:
        tar = Path(d.base.parent / f"berth-faults-rootfs-{os.getpid()}.tar")
        subprocess.run([str(Path(__file__).resolve().parents[3] / "scripts" / "mkrootfs.sh"), str(tar)], check=True)
        _ROOTFS.append(tar)
    d.base.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_ROOTFS[0], d.base / "rootfs.tar")
    with running(d):
        yield d


def pytest_sessionfinish() -> None:
    for tar in _ROOTFS:
        tar.unlink(missing_ok=True)


def start_ready(d: Daemon) -> None:
    """Start berthd and wait until it is wired and has recovered (``/_ping`` answers before
    that; any other request waits for it)."""
    d.start()
    status, _ = d.request("GET", "/containers/json?all=1", timeout=60)
    assert status == 200, status


def api(d: Daemon, method: str, path: str, body: object = None, timeout: float = 30) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    status, raw = d.request(method, path, data, {"Content-Type": "application/json"} if data else None, timeout)
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw


def docker(d: Daemon, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER, *args], env=d.env, capture_output=True, text=True, timeout=timeout)


def docker_or_log(d: Daemon, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """docker(); a hang fails with the end of berthd's log."""
    try:
        return docker(d, *args, timeout=timeout)
    except subprocess.TimeoutExpired:
        tail = [line for line in d.log.read_text(errors="replace").splitlines() if "pyroute2" not in line]
        raise AssertionError(f"docker {' '.join(args)} hung; berthd's log ends:\n" + "\n".join(tail[-40:])) from None


def run_detached(d: Daemon, *cmd: str, name: str | None = None) -> str:
    """Create and start a container through the API; its id."""
    q = f"?name={name}" if name else ""
    status, body = api(d, "POST", f"/containers/create{q}", {"Image": "busybox", "Cmd": list(cmd)})
    assert status == 201, body
    assert isinstance(body, dict)
    cid = str(body["Id"])
    status, body = api(d, "POST", f"/containers/{cid}/start")
    assert status == 204, body
    return cid


class Churn:
    """A background loop of run/exec/stop/rm (API and docker CLI) to inject faults into.

    Errors while a fault is on are expected (the fault is the point); ``ok`` counts the
    loops that went through, so a test can require that work went on around the fault."""

    def __init__(self, d: Daemon, seed: int = 0, workers: int = 2, cli: bool = True):
        self.d = d
        self.rng = random.Random(seed)
        self.stop_ev = threading.Event()
        self.run_ev = threading.Event()
        self.run_ev.set()
        self.lock = threading.Lock()
        self.busy = 0  # loops in the middle of a round
        self.errors: list[str] = []  # the 5xx messages the API loops got
        self.steps = 0  # API requests answered (progress, to time a fault into the middle of)
        self.ok = 0
        self.failed = 0
        self.created: set[str] = set()  # every container id the API loops made
        self.threads = [threading.Thread(target=self._loop, args=(i, cli and i == 0), daemon=True)
                        for i in range(workers)]

    def __enter__(self) -> Churn:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stop_ev.set()
        for t in self.threads:
            t.join(60)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hold the loops (each finishes the round it is in) for a check that must not race them."""
        self.run_ev.clear()
        deadline = time.monotonic() + 60
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            yield
        finally:
            self.run_ev.set()

    def _loop(self, i: int, cli: bool) -> None:
        while not self.stop_ev.is_set():
            if not self.run_ev.is_set():
                self.run_ev.wait(0.1)
                continue
            with self.lock:
                self.busy += 1
            try:
                self._round(cli)
            finally:
                with self.lock:
                    self.busy -= 1

    def _round(self, cli: bool) -> None:
        try:
            good = self._cli_once() if cli else self._api_once()
        except (OSError, AssertionError, subprocess.TimeoutExpired, ValueError):
            good = False
        if good:
            self.ok += 1
        else:
            self.failed += 1
            time.sleep(0.05)

    def _cli_once(self) -> bool:
        r = docker(self.d, "run", "--rm", "busybox", "echo", "churn", timeout=30)
        return r.returncode == 0 and r.stdout == "churn\n"

    def _api(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        r = api(self.d, method, path, body, 20)
        self.steps += 1
        if r[0] >= 500 and isinstance(r[1], dict):
            self.errors.append(f"{method} {path.split('?')[0]}: {r[1].get('message')}")
        return r

    def _api_once(self) -> bool:
        api = self._api
        status, body = api("POST", "/containers/create", {"Image": "busybox", "Cmd": ["sleep", "30"]})
        if status != 201 or not isinstance(body, dict):
            return False
        cid = body["Id"]
        self.created.add(cid)
        try:
            if api("POST", f"/containers/{cid}/start")[0] != 204:
                return False
            status, ex = api("POST", f"/containers/{cid}/exec", {"Cmd": ["true"]})
            if status == 201 and isinstance(ex, dict):
                api("POST", f"/exec/{ex['Id']}/start", {"Detach": True})
            return api("POST", f"/containers/{cid}/stop?t=0")[0] in (204, 304)
        finally:
            api("DELETE", f"/containers/{cid}?force=1")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _cgroup_dirs(cid: str) -> list[Path]:
    return [p for p in Path("/sys/fs/cgroup").glob(f"*/berth/{cid}") if p.is_dir()]


def _cgroup_procs(cid: str) -> set[int]:
    out: set[int] = set()
    for cg in _cgroup_dirs(cid):
        try:
            out |= {int(p) for p in (cg / "cgroup.procs").read_text().split()}
        except OSError:
            pass
    return out


def assert_consistent(d: Daemon, running: Iterable[str] = (), gone: Iterable[str] = (),
                      settle: float = 10) -> None:
    """The promises after a fault: berthd answers; inspect and list agree with each other, with
    the container dirs and with the processes; every container of ``running`` still runs;
    nothing stopped or removed (``gone``: ids seen before) keeps a process, a shim or a cgroup;
    nothing is mounted under the roots."""
    deadline = time.monotonic() + settle
    while True:
        try:
            _check(d, list(running), set(gone))
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _bridge_ports(d: Daemon) -> int:
    """The interfaces enslaved to this daemon's bridges (one veth per running container)."""
    out = subprocess.run(["ip", "-d", "-o", "link", "show"], capture_output=True, text=True).stdout
    bridges = [line.split(": ")[1].split("@")[0] for line in out.splitlines()
               if f"alias berth:{d.data_root}" in line.replace("\\", " ")]
    n = 0
    for br in bridges:
        ports = subprocess.run(["ip", "-o", "link", "show", "master", br], capture_output=True, text=True).stdout
        n += len(ports.splitlines())
    return n


def _netns_holders(d: Daemon, inits: list[int]) -> list[str]:
    """What keeps a network namespace other than the host's and the running containers' alive
    among berthd's and the shims' descriptors and threads (a leaked veth's namespace)."""
    def ns(path: str) -> str:
        try:
            return os.readlink(path)
        except OSError:
            return ""
    known = {ns(f"/proc/{p}/ns/net") for p in inits} | {ns("/proc/self/ns/net"), ""}
    out = []
    for pid in ([d.proc.pid] if d.proc else []) + d.shim_pids():
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if (link := ns(f"/proc/{pid}/fd/{fd}")).startswith("net:") and link not in known:
                    out.append(f"pid {pid} fd {fd}: {link}")
            for t in os.listdir(f"/proc/{pid}/task"):
                if (link := ns(f"/proc/{pid}/task/{t}/ns/net")) not in known:
                    out.append(f"pid {pid} thread {t}: {link}")
        except OSError:
            continue
    return out


def _describe(pids: Iterable[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
            st = open(f"/proc/{pid}/status").read()
            ppid = st.split("PPid:")[1].split()[0]
            pcmd = open(f"/proc/{ppid}/cmdline", "rb").read()[:80].replace(b"\0", b" ").decode(errors="replace")
            out.append(f"{pid} {cmd!r} ppid {ppid} {pcmd!r}")
        except (OSError, IndexError):
            out.append(f"{pid} (gone)")
    return out


def _check(d: Daemon, running: list[str], gone: set[str]) -> None:
    status, listed = api(d, "GET", "/containers/json?all=1")
    assert status == 200 and isinstance(listed, list), listed
    ids = {c["Id"] for c in listed}
    on_disk = {p.name for p in (d.data_root / "containers").iterdir()}
    assert ids == on_disk, f"records {sorted(ids - on_disk)} / dirs {sorted(on_disk - ids)} disagree"
    shims = set(d.shim_pids())
    inits: list[int] = []
    for c in listed:
        status, info = api(d, "GET", f"/containers/{c['Id']}/json")
        assert status == 200 and isinstance(info, dict), info
        st = info["State"]
        assert c["State"] == st["Status"], f"list says {c['State']}, inspect {st['Status']}"
        if st["Running"]:
            assert st["Pid"] > 0 and _alive(st["Pid"]), f"{c['Id'][:12]} reported running, pid {st['Pid']} gone"
            inits.append(st["Pid"])
        elif st["Status"] in ("exited", "created", "dead"):
            procs = _cgroup_procs(c["Id"])
            assert not procs, f"{c['Id'][:12]} is {st['Status']} but has processes {_describe(procs)}"
            assert not _cgroup_dirs(c["Id"]), f"{c['Id'][:12]} is {st['Status']} but keeps its cgroup"
    for cid in running:
        status, info = api(d, "GET", f"/containers/{cid}/json")
        assert status == 200 and isinstance(info, dict) and info["State"]["Running"], f"{cid[:12]} stopped"
    for cid in gone - ids:
        assert not _cgroup_dirs(cid), f"removed {cid[:12]} left its cgroup"
    n_running = sum(1 for c in listed if c["State"] in ("running", "paused"))
    assert len(shims) <= n_running, f"{len(shims)} shims for {n_running} running containers"
    veths = _bridge_ports(d)
    assert veths <= n_running, \
        f"{veths} veths on the bridges for {n_running} running containers; holders: {_netns_holders(d, inits)}"
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if str(d.base) in line], "mounts left under the roots"


def assert_up(d: Daemon) -> None:
    """berthd still runs and still runs containers."""
    assert d.proc is not None and d.proc.poll() is None, "berthd died"
    r = docker_or_log(d, "run", "--rm", "busybox", "echo", "still fine")
    assert r.returncode == 0 and r.stdout == "still fine\n", r.stderr
