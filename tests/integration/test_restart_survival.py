"""kill -9 of berthd: containers keep running, and a new berthd finds them again (live restore)."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.integration.daemon import Daemon, running

pytestmark = pytest.mark.root
DOCKER = "/usr/local/bin/docker"


@pytest.fixture
def own_daemon():
    with running(Daemon()) as d:
        yield d


def _inspect(d: Daemon, ref: str) -> dict:
    status, body = d.request("GET", f"/containers/{ref}/json")
    assert status == 200, body
    return json.loads(body)


def _ppid(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_containers_survive_kill_9_of_berthd(own_daemon: Daemon):
    d = own_daemon
    long = d.docker("run", "-d", "--name", "long", "busybox", "sleep", "300").stdout.strip()
    short = d.docker("run", "-d", "--name", "short", "busybox", "sh", "-c", "sleep 1; exit 7").stdout.strip()
    auto = d.docker("run", "-d", "--rm", "--name", "auto", "busybox", "sh", "-c", "sleep 1").stdout.strip()
    assert long and short and auto
    pid = _inspect(d, "long")["State"]["Pid"]
    assert pid > 0 and _pid_alive(pid)
    forkserver = [p for p in os.listdir("/proc") if p.isdigit() and _ppid(int(p)) == d.proc.pid]
    assert forkserver

    d.kill9()
    time.sleep(2)  # "short" and "auto" exit while berthd is away
    assert _pid_alive(pid), "the container died with berthd"
    for p in forkserver:
        assert not os.path.exists(f"/proc/{p}") or b"zombie" in open(f"/proc/{p}/status", "rb").read().lower() \
            or not _pid_alive(int(p)), "fork server outlived berthd"

    d.start()
    st = _inspect(d, "long")["State"]
    assert st["Running"] and st["Pid"] == pid
    ps = d.docker("ps", "--format", "{{.Names}} {{.Status}}").stdout
    assert "long Up" in ps
    st = _inspect(d, "short")["State"]
    assert st["Status"] == "exited" and st["ExitCode"] == 7
    assert d.request("GET", "/containers/auto/json")[0] == 404, "--rm container not removed after restart"

    t0 = time.monotonic()
    assert d.docker("stop", "-t", "1", "long").returncode == 0
    assert time.monotonic() - t0 < 5
    st = _inspect(d, "long")["State"]
    assert st["Status"] == "exited" and st["ExitCode"] == 137
    assert not _pid_alive(pid)


def test_wait_and_logs_across_restart(own_daemon: Daemon):
    d = own_daemon
    d.docker("run", "-d", "--name", "w1", "busybox", "sh", "-c", "echo before; sleep 2; echo after; exit 3")
    time.sleep(0.5)
    d.kill9()
    d.start()
    r = d.docker("wait", "w1")
    assert r.stdout.strip() == "3"
    assert d.docker("logs", "w1").stdout == "before\nafter\n"


def test_second_daemon_on_same_data_root_is_refused(own_daemon: Daemon):
    other = Daemon()
    try:
        p = subprocess.run(
            ["python3", "-m", "berth.daemon.main", "-H", f"unix://{other.sock}", "--data-root",
             str(own_daemon.data_root), "--exec-root", str(other.exec_root)],
            capture_output=True, text=True, timeout=20, cwd=str(Daemon.__module__ and os.getcwd()))
        assert p.returncode != 0 and "in use by another berthd" in p.stderr
    finally:
        other.cleanup()


def test_kill_9_during_churn_leaves_a_consistent_store(own_daemon: Daemon):
    """kill -9 berthd while containers are being created, started and removed; the restarted
    daemon lists only whole containers, each of which can be inspected, started and removed."""
    import random
    import threading

    d = own_daemon
    stop = threading.Event()

    def churn() -> None:
        env = d.env
        while not stop.is_set():
            subprocess.run([DOCKER, "run", "--rm", "busybox", "true"], env=env, capture_output=True, timeout=30)
            r = subprocess.run([DOCKER, "create", "busybox", "true"], env=env, capture_output=True, text=True,
                               timeout=30)
            if r.returncode == 0:
                subprocess.run([DOCKER, "rm", r.stdout.strip()], env=env, capture_output=True, timeout=30)

    workers = [threading.Thread(target=churn) for _ in range(3)]
    for w in workers:
        w.start()
    time.sleep(random.uniform(0.8, 2.0))
    d.kill9()
    stop.set()
    for w in workers:
        w.join()
    d.start()
    status, body = d.request("GET", "/containers/json?all=1")
    assert status == 200
    on_disk = {p.name for p in (d.data_root / "containers").iterdir()}
    listed = {c["Id"] for c in json.loads(body)}
    assert on_disk == listed, "container dirs and records disagree after restart"
    for cid in listed:
        assert d.request("GET", f"/containers/{cid}/json")[0] == 200
        assert d.request("DELETE", f"/containers/{cid}?force=1")[0] == 204
    r = d.docker("run", "--rm", "busybox", "echo", "still fine")
    assert r.stdout == "still fine\n"
    deadline = time.monotonic() + 5
    while d.shim_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    left = d.shim_pids()
    info = []
    for p in left:
        try:
            info.append((p, open(f"/proc/{p}/status").read().split("PPid:")[1].split()[0],
                         open(f"/proc/{p}/task/{p}/children").read(),
                         sorted(x.name for x in (d.exec_root / "shims").iterdir()),
                         (d.data_root / "containers").exists() and sorted(x.name[:12] for x in (d.data_root / "containers").iterdir()),
                         open(d.log).read()[-1500:]))
        except OSError:
            pass
    assert left == [], f"shims outlived their containers: {info}"


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_shims_stay_idle_when_berthd_dies_with_clients_attached(own_daemon: Daemon):
    """berthd's connections to a shim vanish with it: the shim must notice, not spin on them."""
    import socket
    d = own_daemon
    cid = d.docker("run", "-di", "busybox", "sh").stdout.strip()
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(d.sock))
    s.sendall(f"GET /containers/{cid}/attach/ws?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\n"
              "Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode())
    assert b"101" in s.recv(4096)
    time.sleep(0.2)
    d.kill9()
    s.close()
    time.sleep(0.5)
    pids = d.shim_pids()
    assert pids
    before = sum(_cpu_ticks(p) for p in pids)
    time.sleep(1.0)
    used = sum(_cpu_ticks(p) for p in pids) - before
    assert used < 20, f"shims used {used} ticks in 1 s with nothing to do"
    d.start()
    assert _inspect(d, cid)["State"]["Running"]
