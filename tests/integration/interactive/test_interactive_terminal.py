"""Terminals, attach and exec through the real docker CLI and the berth CLI, under a real pty."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest

from tests.integration.interactive.ptyrun import PtyProcess

pytestmark = pytest.mark.root
DOCKER = "/usr/local/bin/docker"
BERTH = [sys.executable, "-m", "berth.cli.main"]


@pytest.fixture
def name(berthd, busybox):
    n = "it-" + uuid.uuid4().hex[:8]
    yield n
    berthd.request("DELETE", f"/containers/{n}?force=1")


def _pty(berthd, argv, **kw):
    return PtyProcess(argv, berthd.env, **kw)


@pytest.mark.parametrize("cli", ["docker", "berth"])
def test_run_it_shell_prompt_resize_exit_code(berthd, busybox, cli):
    argv = ([DOCKER] if cli == "docker" else BERTH) + ["run", "--rm", "-it", busybox, "sh"]
    p = _pty(berthd, argv)
    try:
        p.expect("# ")
        p.write("tty; stty size; echo $TERM; echo END$((1+1))\r")
        out = p.expect("END2").replace(b"\r", b"")
        assert b"/dev/pts/0\n24 80\nxterm\n" in out
        p.resize(30, 100)
        time.sleep(0.5)
        p.write("stty size; echo END$((2+1))\r")
        assert b"30 100" in p.expect("END3")
        p.write("exit 7\r")
        assert p.wait() == 7
    finally:
        p.close()


def test_run_itd_two_attachers_detach(berthd, busybox, docker, name):
    assert docker("run", "-itd", "--name", name, busybox, "sh").returncode == 0
    a = _pty(berthd, [DOCKER, "attach", name])
    b = _pty(berthd, BERTH + ["attach", name])
    try:
        time.sleep(0.7)
        a.write("echo hi-$((6*7))\r")
        a.expect("hi-42")
        b.expect("hi-42")  # both attachers see the same output
        b.write("echo from-b-$((2+3))\r")
        a.expect("from-b-5")
        a.write(b"\x10\x11")  # Ctrl-P Ctrl-Q
        assert a.wait() == 1
        assert b"read escape sequence" in a.buf
        assert docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"
        b.write(b"\x10\x11")
        assert b.wait() == 1
        assert docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"
        c = _pty(berthd, [DOCKER, "attach", name])
        time.sleep(0.5)
        c.write("exit 3\r")
        assert c.wait() == 3
    finally:
        a.close()
        b.close()


def test_run_it_detach_exits_zero(berthd, busybox, docker, name):
    p = _pty(berthd, [DOCKER, "run", "-it", "--name", name, busybox, "sh"])
    try:
        p.expect("# ")
        p.write(b"\x10\x11")
        assert p.wait() == 0
        assert docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"
    finally:
        p.close()


@pytest.mark.parametrize("cli", ["docker", "berth"])
def test_exec_it_shell(berthd, busybox, docker, name, cli):
    assert docker("run", "-d", "--name", name, "--hostname", "box1", busybox, "sleep", "300").returncode == 0
    p = _pty(berthd, ([DOCKER] if cli == "docker" else BERTH) + ["exec", "-it", name, "sh"])
    try:
        p.expect("# ")
        p.write("hostname; tty; ps -o pid,args; echo END$((1+1))\r")
        out = p.expect("END2").replace(b"\r", b"")
        assert b"box1\n" in out and b"/dev/pts/" in out
        assert b"sleep 300" in out
        p.write("exit 5\r")
        assert p.wait() == 5
    finally:
        p.close()


def test_exec_user_privileged_env_workdir(docker, name, busybox):
    assert docker("run", "-d", "--name", name, busybox, "sleep", "300").returncode == 0
    assert docker("exec", "-u", "65534", name, "id", "-u").stdout == "65534\n"
    normal = docker("exec", name, "grep", "CapEff", "/proc/self/status").stdout.split()[1]
    priv = docker("exec", "--privileged", name, "grep", "CapEff", "/proc/self/status").stdout.split()[1]
    assert int(priv, 16) > int(normal, 16)
    assert int(normal, 16) == 0xa80425fb  # Docker's default set
    r = docker("exec", "-e", "FOO=bar", "-w", "/tmp", name, "sh", "-c", "echo $FOO; pwd; exit 4")
    assert (r.stdout, r.returncode) == ("bar\n/tmp\n", 4)
    r = docker("exec", name, "nosuchcmd")
    assert r.returncode == 126 and "executable file not found" in r.stdout + r.stderr


def test_exec_joins_namespaces_and_cgroup(docker, name, busybox, berthd):
    assert docker("run", "-d", "--name", name, busybox, "sleep", "300").returncode == 0
    pid = int(docker("inspect", "-f", "{{.State.Pid}}", name).stdout)
    init_cg = open(f"/proc/{pid}/cgroup").read()
    r = docker("exec", name, "sh", "-c", "cat /proc/self/cgroup; readlink /proc/self/ns/net; readlink /proc/self/ns/mnt")
    assert r.returncode == 0
    host_net = subprocess.run(["readlink", f"/proc/{pid}/ns/net", f"/proc/{pid}/ns/mnt"],
                              capture_output=True, text=True).stdout
    assert host_net.split() == r.stdout.split()[-2:]
    assert "/berth/" in init_cg
    assert docker("exec", "-d", name, "sleep", "777").returncode == 0
    time.sleep(0.3)
    ps = subprocess.run(["pgrep", "-f", "^sleep 777$"], capture_output=True, text=True).stdout.split()
    assert len(ps) == 1
    assert open(f"/proc/{ps[0]}/cgroup").read() == init_cg  # the exec joined the container's cgroup


@pytest.mark.parametrize("cli", ["docker", "berth"])
def test_stdin_piped_into_run_i_and_exec_i(berthd, busybox, docker, name, cli):
    base = [DOCKER] if cli == "docker" else BERTH
    r = subprocess.run(base + ["run", "-i", "--rm", busybox, "sh", "-c", "cat; echo done"], input="piped\n",
                       env=berthd.env, capture_output=True, text=True, timeout=30)
    assert (r.stdout, r.returncode) == ("piped\ndone\n", 0)
    assert docker("run", "-d", "--name", name, busybox, "sleep", "300").returncode == 0
    r = subprocess.run(base + ["exec", "-i", name, "wc", "-c"], input="12345",
                       env=berthd.env, capture_output=True, text=True, timeout=30)
    assert (r.stdout.strip(), r.returncode) == ("5", 0)


def test_exec_on_paused_and_stopped(docker, name, busybox):
    assert docker("run", "-d", "--name", name, busybox, "sleep", "300").returncode == 0
    assert docker("pause", name).returncode == 0
    assert "Paused" in docker("ps", "--filter", f"name={name}").stdout
    r = docker("exec", name, "true")
    assert r.returncode != 0 and "is paused" in r.stderr
    assert docker("unpause", name).returncode == 0
    assert docker("exec", name, "true").returncode == 0
    assert docker("stop", "-t", "0", name).returncode == 0
    r = docker("exec", name, "true")
    assert r.returncode != 0 and "is not running" in r.stderr


def test_exec_processes_cleaned_up_on_stop(docker, name, busybox):
    assert docker("run", "-d", "--name", name, busybox, "sleep", "300").returncode == 0
    assert docker("exec", "-d", name, "sleep", "1234").returncode == 0
    time.sleep(0.3)
    assert "sleep 1234" in docker("top", name).stdout
    assert docker("stop", "-t", "1", name).returncode == 0
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "sleep 1234" not in ps
