"""The rest of the container API: cp, diff, stats, events, pause, update, restart policies,
health checks, --init; and docker-py's attach_socket, exec_run and logs(stream=True)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest

from tests.integration.daemon import Daemon

pytestmark = pytest.mark.root
DOCKER = "/usr/local/bin/docker"
BERTH = [sys.executable, "-m", "berth.cli.main"]


@pytest.fixture
def name(berthd, busybox):
    n = "api-" + uuid.uuid4().hex[:8]
    yield n
    berthd.request("DELETE", f"/containers/{n}?force=1")


def test_cp_both_ways_symlinks_stay_inside(docker, name, busybox, tmp_path):
    assert docker("run", "-d", "--name", name, busybox, "sh", "-c",
                  "ln -s / /tmp/up; ln -s /etc/hostname /tmp/hn; sleep 300").returncode == 0
    time.sleep(0.3)
    src = tmp_path / "in.txt"
    src.write_text("payload\n")
    assert docker("cp", str(src), f"{name}:/tmp/").returncode == 0
    assert docker("exec", name, "cat", "/tmp/in.txt").stdout == "payload\n"
    # a symlink to / in the container resolves to the container's root, never the host's
    canary = f"/tmp/berth-cp-canary-{uuid.uuid4().hex[:6]}"
    assert docker("cp", str(src), f"{name}:/tmp/up{canary}").returncode == 0
    assert not os.path.exists(canary)
    assert docker("exec", name, "cat", canary).stdout == "payload\n"
    out = tmp_path / "hostname"
    assert docker("cp", f"{name}:/tmp/up/etc/hostname", str(out)).returncode == 0
    assert out.read_text().strip() == docker("inspect", "-f", "{{.Config.Hostname}}", name).stdout.strip()
    link = tmp_path / "link"
    assert docker("cp", f"{name}:/tmp/hn", str(link)).returncode == 0
    assert os.readlink(link) == "/etc/hostname"  # the link itself, not the host's /etc/hostname
    assert docker("cp", f"{name}:/nonexistent", str(tmp_path / "x")).returncode != 0
    # a stopped container too
    assert docker("stop", "-t", "0", name).returncode == 0
    assert docker("cp", f"{name}:/tmp/in.txt", str(tmp_path / "again")).returncode == 0
    assert (tmp_path / "again").read_text() == "payload\n"


def test_berth_cp_and_diff(berthd, docker, name, busybox, tmp_path):
    assert docker("run", "-d", "--name", name, busybox, "sleep", "300").returncode == 0
    src = tmp_path / "f"
    src.write_text("x")
    r = subprocess.run(BERTH + ["cp", str(src), f"{name}:/root/f"], env=berthd.env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(BERTH + ["diff", name], env=berthd.env, capture_output=True, text=True)
    assert "C /root\nA /root/f\n" in r.stdout
    assert docker("diff", name).stdout == r.stdout


def test_stats_no_stream_and_events(berthd, docker, name, busybox):
    since = time.time()
    assert docker("run", "-d", "--name", name, "--memory", "64m", busybox, "sleep", "300").returncode == 0
    r = docker("stats", "--no-stream", name)
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.splitlines()[:2]
    assert header.split()[:3] == ["CONTAINER", "ID", "NAME"]
    assert name in row and "/ 64MiB" in row
    r = subprocess.run(BERTH + ["stats", "--no-stream", name], env=berthd.env, capture_output=True, text=True)
    assert "/ 64MiB" in r.stdout
    assert docker("pause", name).returncode == 0
    assert docker("unpause", name).returncode == 0
    assert docker("kill", name).returncode == 0
    r = docker("events", "--since", str(int(since)), "--until", str(int(time.time()) + 1),
               "--filter", f"container={name}", "--format", "{{.Action}}")
    actions = r.stdout.split()
    for a in ("create", "start", "pause", "unpause", "kill", "die"):
        assert a in actions, (a, actions)
    r = subprocess.run(BERTH + ["events", "--since", str(int(since)), "--until", "0s", "--filter", "event=pause"],
                       env=berthd.env, capture_output=True, text=True, timeout=20)
    assert "container pause" in r.stdout and f"name={name}" in r.stdout


def test_events_stream_live(berthd, docker, name, busybox):
    proc = subprocess.Popen([DOCKER, "events", "--filter", f"container={name}"], env=berthd.env,
                            stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        assert docker("create", "--name", name, busybox, "true").returncode == 0
        line = proc.stdout.readline()
        assert " container create " in line and f"name={name}" in line
    finally:
        proc.kill()
        proc.wait()


def test_update_memory_and_restart_policy(docker, name, busybox):
    assert docker("run", "-d", "--name", name, busybox, "sleep", "300").returncode == 0
    assert docker("update", "--memory", "32m", "--memory-swap", "64m", "--restart", "on-failure:2", name).returncode == 0
    hc = json.loads(docker("inspect", name).stdout)[0]["HostConfig"]
    assert hc["Memory"] == 32 << 20 and hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    r = docker("stats", "--no-stream", "--format", "{{.MemUsage}}", name)
    assert r.stdout.strip().endswith("/ 32MiB")


def _wait_for(pred, timeout=15.0):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    return pred()


def test_restart_on_failure_after_crash(docker, name, busybox):
    assert docker("run", "-d", "--name", name, "--restart", "on-failure:2", busybox,
                  "sh", "-c", "sleep 0.2; exit 3").returncode == 0
    assert _wait_for(lambda: docker("inspect", "-f", "{{.RestartCount}} {{.State.Status}}", name).stdout.strip()
                     == "2 exited", 20)
    assert docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip() == "3"


def test_restart_always_after_kill_inside_and_stop_is_respected(docker, name, busybox):
    assert docker("run", "-d", "--name", name, "--restart", "always", busybox, "sleep", "300").returncode == 0
    pid = int(docker("inspect", "-f", "{{.State.Pid}}", name).stdout)
    os.kill(pid, 9)  # a crash, not a docker stop
    assert _wait_for(lambda: docker("inspect", "-f", "{{.RestartCount}} {{.State.Running}}", name).stdout.strip()
                     == "1 true")
    assert docker("stop", "-t", "1", name).returncode == 0
    time.sleep(0.5)
    assert docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "false"


def test_restart_policy_applied_when_berthd_starts():
    d = Daemon()
    d.start()
    try:
        d.import_busybox()
        env = d.env
        run = lambda *a: subprocess.run([DOCKER, *a], env=env, capture_output=True, text=True, timeout=60)  # noqa: E731
        assert run("run", "-d", "--name", "pol", "--restart", "always", "busybox", "sleep", "300").returncode == 0
        assert run("run", "-d", "--name", "nopol", "busybox", "sleep", "300").returncode == 0
        pids = [int(run("inspect", "-f", "{{.State.Pid}}", n).stdout) for n in ("pol", "nopol")]
        d.kill9()
        for p in pids:  # the host "rebooted": every container died while berthd was away
            os.kill(p, 9)
        time.sleep(0.5)
        d.start()
        assert _wait_for(lambda: run("inspect", "-f", "{{.State.Running}}", "pol").stdout.strip() == "true")
        assert run("inspect", "-f", "{{.State.Running}}", "nopol").stdout.strip() == "false"
    finally:
        d.cleanup()


def test_healthcheck_status(docker, name, busybox):
    assert docker("run", "-d", "--name", name, "--health-cmd", "test -e /tmp/ok", "--health-interval", "200ms",
                  "--health-retries", "1", busybox, "sleep", "300").returncode == 0
    status = lambda: docker("inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip()  # noqa: E731
    assert _wait_for(lambda: status() == "unhealthy")
    assert docker("exec", name, "touch", "/tmp/ok").returncode == 0
    assert _wait_for(lambda: status() == "healthy")
    assert "(healthy)" in docker("ps", "--filter", f"name={name}").stdout


def test_init_reaps_and_forwards_signals(docker, name, busybox):
    assert docker("run", "-d", "--init", "--name", name, busybox, "sleep", "300").returncode == 0
    r = docker("exec", name, "ps", "-o", "pid,args")
    assert "1 /sbin/docker-init -- sleep 300" in r.stdout
    t = time.time()
    assert docker("stop", "-t", "5", name).returncode == 0
    assert time.time() - t < 4  # tini forwarded SIGTERM to sleep
    r = docker("run", "--rm", "--init", busybox, "sh", "-c", "exit 6")
    assert r.returncode == 6


# -- docker-py -------------------------------------------------------------------------------------


def test_dockerpy_exec_run_stream_demux(client, name):
    c = client.containers.run("busybox", "sleep 300", name=name, detach=True)
    res = c.exec_run(["sh", "-c", "echo out; echo err >&2"], stream=True, demux=True)
    out, err = b"", b""
    for o, e in res.output:
        out += o or b""
        err += e or b""
    assert (out, err) == (b"out\n", b"err\n")
    code, (o, e) = c.exec_run(["sh", "-c", "echo x; exit 3"], demux=True)
    assert code == 3 and o == b"x\n"


def test_dockerpy_attach_socket_and_logs_stream(client, name):
    c = client.containers.create("busybox", ["sh", "-c", "read line; echo got-$line; sleep 0.3; echo two"],
                                 name=name, stdin_open=True)
    sock = c.attach_socket(params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    c.start()
    raw = sock._sock
    raw.sendall(b"abc\n")
    data = b""
    raw.settimeout(10)
    while b"two" not in data:
        chunk = raw.recv(4096)
        if not chunk:
            break
        data += chunk
    sock.close()
    assert b"got-abc\n" in data and data[0] == 1  # stdcopy frames
    lines = list(c.logs(stream=True, follow=True))
    assert b"".join(lines) == b"got-abc\ntwo\n"
    assert c.wait()["StatusCode"] == 0


_ = threading
