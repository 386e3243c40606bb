"""The ``berth`` CLI against a real berthd: output, exit codes, docker-compatible wording."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def berth(berthd, busybox):
    """berth("ps", "-a") -> CompletedProcess with text output."""
    def run(*args: str, input: str | None = None, timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "berth.cli.main", *args],
                              env=env or berthd.env, input=input, capture_output=True,
                              text=True, timeout=timeout, cwd=ROOT)
    return run


@pytest.fixture
def name(berth):
    """A unique container name, removed after the test."""
    n = f"cli-{uuid.uuid4().hex[:8]}"
    yield n
    berth("rm", "-f", n)


def make_running(berth, name: str) -> str:
    r = berth("run", "-d", "--name", name, "busybox", "sleep", "300")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


# -- system -------------------------------------------------------------------------------------

def test_version(berth):
    r = berth("version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Client:\n Version:")
    assert "\nServer:" in r.stdout and " Engine:\n  Version:" in r.stdout
    assert re.search(r"API version:\s+1\.\d+", r.stdout)


def test_version_format_and_unreachable(berth, berthd):
    r = berth("version", "--format", "{{.Client.Version}}")
    assert r.returncode == 0 and r.stdout.strip()
    env = dict(berthd.env, BERTH_HOST="unix:///nonexistent.sock")
    r = berth("version", env=env)
    assert r.returncode == 1
    assert r.stdout.startswith("Client:")
    assert "Cannot connect to the berth daemon at unix:///nonexistent.sock" in r.stderr


def test_host_flag_wins(berth, berthd):
    env = dict(berthd.env, BERTH_HOST="unix:///nonexistent.sock", DOCKER_HOST="unix:///x.sock")
    r = berth("-H", berthd.host, "ps", env=env)
    assert r.returncode == 0, r.stderr
    env = dict(berthd.env)
    env.pop("BERTH_HOST")
    assert berth("ps", env=env).returncode == 0  # DOCKER_HOST is used


def test_info(berth):
    r = berth("info")
    assert r.returncode == 0, r.stderr
    assert "\nServer:\n Containers: " in r.stdout
    assert " Images: " in r.stdout
    r = berth("info", "--format", "{{.Images}}")
    assert r.stdout.strip().isdigit()


# -- images ---------------------------------------------------------------------------------------

def test_images(berth):
    r = berth("images")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert re.search(r"^busybox\s+latest\s+[0-9a-f]{12}\s+.+ago\s+[\d.]+[kMG]?B$", r.stdout, re.M)
    q = berth("images", "-q").stdout.split()
    assert q and all(re.fullmatch(r"[0-9a-f]{12}", x) for x in q)
    full = berth("images", "-q", "--no-trunc").stdout.split()
    assert all(x.startswith("sha256:") for x in full)
    r = berth("image", "ls", "--format", "{{.Repository}}:{{.Tag}}")
    assert "busybox:latest" in r.stdout.split()
    r = berth("images", "--digests")
    assert "DIGEST" in r.stdout.splitlines()[0]
    assert berth("images", "busybox").stdout.count("busybox") == 1


def test_tag_history_rmi(berth):
    tag = f"cli-tag-{uuid.uuid4().hex[:6]}:v1"
    r = berth("tag", "busybox", tag)
    assert r.returncode == 0, r.stderr
    assert tag.split(":")[0] in berth("images").stdout
    r = berth("history", tag)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split()[:2] == ["IMAGE", "CREATED"]
    assert berth("history", "-q", tag).returncode == 0
    r = berth("rmi", tag)
    assert r.returncode == 0, r.stderr
    assert f"Untagged: {tag}" in r.stdout
    r = berth("rmi", "nosuchimage:nope")
    assert r.returncode == 1
    assert r.stderr.startswith("Error response from daemon: ")


def test_import(berth, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "hello.txt").write_text("hi\n")
    tar = tmp_path / "rootfs.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(root / "hello.txt", arcname="hello.txt")
    ref = f"cli-import-{uuid.uuid4().hex[:6]}:t1"
    r = berth("import", "-c", "CMD [\"sh\"]", "-m", "imported", str(tar), ref)
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", r.stdout)
    assert re.search(rf"^{ref.split(':')[0]}\s+t1\s", berth("images").stdout, re.M)
    assert berth("rmi", ref).returncode == 0


def test_import_from_stdin(berth, berthd, tmp_path):
    tar = tmp_path / "rootfs.tar"
    with tarfile.open(tar, "w") as tf:
        info = tarfile.TarInfo("x.txt")
        info.size = 0
        tf.addfile(info)
    ref = f"cli-stdin-{uuid.uuid4().hex[:6]}"
    with open(tar, "rb") as fh:
        r = subprocess.run([sys.executable, "-m", "berth.cli.main", "import", "-", ref],
                           stdin=fh, capture_output=True, text=True, env=berthd.env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("sha256:")
    berth("rmi", ref)


# -- run ------------------------------------------------------------------------------------------

def test_run_echo(berth):
    r = berth("run", "--rm", "busybox", "echo", "hello")
    assert (r.returncode, r.stdout) == (0, "hello\n"), r.stderr


def test_run_streams_and_exit_code(berth):
    r = berth("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert r.returncode == 3
    assert r.stdout == "out\n"
    assert r.stderr == "err\n"


def test_run_rm_removes(berth, name):
    assert berth("run", "--rm", "--name", name, "busybox", "true").returncode == 0
    assert name not in berth("ps", "-a", "--format", "{{.Names}}").stdout.split()


def test_run_options_reach_container(berth):
    r = berth("run", "--rm", "-e", "FOO=bar", "-w", "/tmp", "-h", "myhost", "-u", "1:2",
              "busybox", "sh", "-c", "echo $FOO $(pwd) $(hostname) $(id -u):$(id -g)")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "bar /tmp myhost 1:2\n"


def test_run_entrypoint_and_env_file(berth, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("A=from-file\n")
    r = berth("run", "--rm", "--env-file", str(env_file), "--entrypoint", "sh",
              "busybox", "-c", "echo $A")
    assert (r.returncode, r.stdout) == (0, "from-file\n"), r.stderr


def test_run_stdin(berth):
    r = berth("run", "--rm", "-i", "busybox", "cat", input="piped\n")
    assert (r.returncode, r.stdout) == (0, "piped\n"), r.stderr


def test_run_detach_prints_full_id(berth, name):
    cid = make_running(berth, name)
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    r = berth("ps")
    assert cid[:12] in r.stdout and name in r.stdout


def test_run_limits_and_labels(berth, name):
    r = berth("run", "-d", "--name", name, "-m", "64m", "--cpus", "0.5", "--pids-limit", "50",
              "-l", "team=cli", "--stop-signal", "SIGINT", "--stop-timeout", "2",
              "busybox", "sleep", "300")
    assert r.returncode == 0, r.stderr
    fmt = ("{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} "
           "{{index .Config.Labels \"team\"}} {{.Config.StopSignal}}")
    r = berth("inspect", "-f", fmt, name)
    assert r.stdout == f"{64 << 20} 500000000 50 cli SIGINT\n", r.stderr


def test_run_errors(berth):
    r = berth("run", "busybox", "nosuchcmd")
    assert r.returncode == 127
    assert r.stderr.startswith("berth: Error response from daemon: ")
    assert "Run 'berth run --help' for more information" in r.stderr
    assert berth("run", "busybox", "/etc").returncode == 126
    r = berth("run", "--nosuchflag", "busybox")
    assert r.returncode == 125
    assert r.stderr.startswith("unknown flag: --nosuchflag\n")
    r = berth("run", "nosuch-image-xyz:1")
    assert r.returncode == 125
    assert "Unable to find image 'nosuch-image-xyz:1' locally" in r.stderr
    r = berth("run")
    assert r.returncode == 1
    assert "'berth run' requires at least 1 argument" in r.stderr


def test_run_name_conflict(berth, name):
    make_running(berth, name)
    r = berth("run", "--name", name, "busybox", "true")
    assert r.returncode == 125
    assert "is already in use" in r.stderr
    r = berth("create", "--name", name, "busybox", "true")
    assert r.returncode == 1
    assert r.stderr.startswith("Error response from daemon: Conflict.")


# -- create / start -------------------------------------------------------------------------------

def test_create_start_attach(berth, name):
    r = berth("create", "--name", name, "busybox", "sh", "-c", "echo a; echo b >&2; exit 5")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    assert "Created" in berth("ps", "-a", "--filter", f"name={name}").stdout
    r = berth("start", "-a", name)
    assert (r.returncode, r.stdout, r.stderr) == (5, "a\n", "b\n")


def test_start_prints_args_and_errors(berth, name):
    berth("create", "--name", name, "busybox", "sleep", "300")
    r = berth("start", name)
    assert (r.returncode, r.stdout) == (0, f"{name}\n"), r.stderr
    r = berth("start", "nosuchcontainer")
    assert r.returncode == 1
    assert r.stderr == ("Error response from daemon: No such container: nosuchcontainer\n"
                        "Error: failed to start containers: nosuchcontainer\n")


# -- ps -------------------------------------------------------------------------------------------

def test_ps_layout(berth, name):
    cid = make_running(berth, name)
    r = berth("ps")
    lines = r.stdout.splitlines()
    assert re.match(r"CONTAINER ID   IMAGE +COMMAND +CREATED +STATUS +PORTS +NAMES$", lines[0])
    row = next(line for line in lines if name in line)
    assert row.startswith(cid[:12] + "   ")
    assert '"sleep 300"' in row and "Up " in row
    # every column starts where its header starts
    for header in ("IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"):
        col = lines[0].index(header)
        assert row[col - 1] == " " and row[col] != " "


def test_ps_flags(berth, name):
    cid = make_running(berth, name)
    assert cid[:12] in berth("ps", "-q").stdout.split()
    assert cid in berth("ps", "-q", "--no-trunc").stdout.split()
    assert berth("ps", "-l", "-q").stdout.split() == [cid[:12]]
    assert berth("ps", "-n", "1", "-q").stdout.split() == [cid[:12]]
    r = berth("ps", "--filter", f"name={name}", "--format", "{{.Names}}|{{.State}}")
    assert r.stdout == f"{name}|running\n"
    r = berth("ps", "--format", "table {{.ID}}\t{{.Names}}", "-f", f"id={cid}")
    assert r.stdout.splitlines() == ["CONTAINER ID   NAMES", f"{cid[:12]}   {name}"]
    r = berth("ps", "-s", "-f", f"name={name}")
    assert "SIZE" in r.stdout.splitlines()[0]
    r = berth("ps", "--format", "json", "-f", f"name={name}")
    assert json.loads(r.stdout)["Names"] == name
    r = berth("container", "ls", "-a", "-q")
    assert cid[:12] in r.stdout


def test_ps_exited_and_long_command(berth, name):
    berth("run", "--name", name, "busybox", "sh", "-c", "echo 0123456789abcdefghij; exit 2")
    r = berth("ps", "-a", "--filter", f"name={name}")
    row = r.stdout.splitlines()[1]
    # COMMAND is quoted and cut to 20 characters, the last one an ellipsis
    assert re.search(r' "sh -c [^"]{13}…" ', row), row
    assert "Exited (2)" in row
    r = berth("ps", "-a", "--no-trunc", "--filter", f"name={name}")
    assert "echo 0123456789abcdefghij; exit 2" in r.stdout


# -- lifecycle ------------------------------------------------------------------------------------

def test_stop_kill_restart_wait(berth, name):
    make_running(berth, name)
    r = berth("stop", "-t", "1", name)
    assert (r.returncode, r.stdout) == (0, f"{name}\n"), r.stderr
    assert berth("inspect", "-f", "{{.State.Status}}", name).stdout == "exited\n"
    r = berth("restart", "-t", "1", name)
    assert (r.returncode, r.stdout) == (0, f"{name}\n"), r.stderr
    assert berth("inspect", "-f", "{{.State.Running}}", name).stdout == "true\n"
    r = berth("kill", "-s", "KILL", name)
    assert (r.returncode, r.stdout) == (0, f"{name}\n"), r.stderr
    r = berth("wait", name)
    assert (r.returncode, r.stdout) == (0, "137\n")


def test_wait_exit_code(berth, name):
    berth("run", "-d", "--name", name, "busybox", "sh", "-c", "sleep 1; exit 3")
    r = berth("wait", name)
    assert (r.returncode, r.stdout) == (0, "3\n")


def test_multi_arg_errors(berth, name):
    make_running(berth, name)
    r = berth("kill", "nosuch1", name)
    assert r.returncode == 1
    assert r.stdout == f"{name}\n"
    assert r.stderr == "Error response from daemon: cannot kill container: nosuch1: No such container: nosuch1\n"
    for cmd in ("stop", "rm", "restart", "wait"):
        r = berth(cmd, "nosuchcontainer")
        assert r.returncode == 1, cmd
        assert r.stderr == "Error response from daemon: No such container: nosuchcontainer\n"


def test_rm(berth, name):
    make_running(berth, name)
    r = berth("rm", name)
    assert r.returncode == 1 and r.stderr.startswith("Error response from daemon:")
    r = berth("rm", "-f", name)
    assert (r.returncode, r.stdout) == (0, f"{name}\n"), r.stderr
    assert name not in berth("ps", "-a").stdout


def test_rename(berth, name):
    make_running(berth, name)
    new = name + "-new"
    try:
        assert berth("rename", name, new).returncode == 0
        assert new in berth("ps", "--format", "{{.Names}}").stdout.split()
    finally:
        berth("rm", "-f", new)
    r = berth("rename", "only-one")
    assert r.returncode == 1 and "requires 2 arguments" in r.stderr


def test_top(berth, name):
    make_running(berth, name)
    r = berth("top", name)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split()[:2] == ["UID", "PID"]
    assert "sleep 300" in r.stdout


def test_container_prune(berth, name):
    berth("run", "--name", name, "busybox", "true")
    cid = berth("inspect", "-f", "{{.Id}}", name).stdout.strip()
    r = berth("container", "prune", "-f")
    assert r.returncode == 0, r.stderr
    assert cid in r.stdout
    assert "Total reclaimed space:" in r.stdout
    assert name not in berth("ps", "-a").stdout


# -- logs -----------------------------------------------------------------------------------------

def test_logs(berth, name):
    berth("run", "--name", name, "busybox", "sh", "-c", "echo out1; echo err1 >&2; echo out2")
    r = berth("logs", name)
    assert (r.returncode, r.stdout, r.stderr) == (0, "out1\nout2\n", "err1\n")
    r = berth("logs", "--tail", "1", name)
    assert r.stdout + r.stderr in ("out2\n", "err1\n")
    r = berth("logs", "-t", name)
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z out1\n", r.stdout)
    r = berth("logs", "-f", name)
    assert r.stdout == "out1\nout2\n"
    assert berth("logs", "--since", "1h", name).stdout == "out1\nout2\n"
    r = berth("logs", "nosuch")
    assert r.returncode == 1
    assert r.stderr == "Error response from daemon: No such container: nosuch\n"


def test_logs_follow_running(berth, name):
    berth("run", "-d", "--name", name, "busybox", "sh", "-c",
          "for i in 1 2 3; do echo line$i; sleep 0.3; done")
    r = berth("logs", "-f", name, timeout=30)
    assert r.stdout == "line1\nline2\nline3\n"


def test_logs_tty_raw(berth, name):
    berth("run", "-t", "--name", name, "busybox", "echo", "tty-out")
    r = berth("logs", name)
    assert r.stdout.replace("\r\n", "\n") == "tty-out\n"


# -- inspect --------------------------------------------------------------------------------------

def test_inspect(berth, name):
    cid = make_running(berth, name)
    r = berth("inspect", name)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("[\n    {\n")
    assert json.loads(r.stdout)[0]["Id"] == cid
    assert berth("inspect", "-f", "{{.Id}}", name).stdout == cid + "\n"
    assert berth("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}",
                 name).stdout == "running 0\n"
    labels = berth("inspect", "-f", "{{json .Config.Labels}}", name).stdout
    assert json.loads(labels) == {} or isinstance(json.loads(labels), dict)
    r = berth("inspect", "busybox")
    assert json.loads(r.stdout)[0]["Id"].startswith("sha256:")
    r = berth("image", "inspect", "-f", "{{.Id}}", "busybox")
    assert r.stdout.startswith("sha256:")
    r = berth("container", "inspect", "-f", "{{.Name}}", name)
    assert r.stdout == f"/{name}\n"


def test_inspect_missing(berth):
    r = berth("inspect", "nosuchthing")
    assert (r.returncode, r.stdout, r.stderr) == (1, "[]\n", "Error: No such object: nosuchthing\n")
    r = berth("inspect", "--type", "container", "busybox")
    assert r.returncode == 1
    assert "No such container: busybox" in r.stderr


# -- usage ----------------------------------------------------------------------------------------

def test_usage_errors(berth):
    r = berth("ps", "--nosuch")
    assert r.returncode == 125
    assert r.stderr == ("unknown flag: --nosuch\n\nUsage:  berth ps [OPTIONS]\n\n"
                        "Run 'berth ps --help' for more information\n")
    r = berth("stop")
    assert r.returncode == 1
    r = berth("nosuchcmd")
    assert r.returncode == 1 and "unknown command" in r.stderr
    r = berth("ps", "--help")
    assert r.returncode == 0 and r.stdout.startswith("Usage:  berth ps [OPTIONS]")


# -- rm, prune and filters of networks and volumes (shared helpers in cli/_common.py) -------------

def test_volume_and_network_rm_prune(berth):
    vol, net = f"v-{uuid.uuid4().hex[:8]}", f"n-{uuid.uuid4().hex[:8]}"
    assert berth("volume", "create", vol).returncode == 0
    assert berth("network", "create", net).returncode == 0
    try:
        r = berth("volume", "rm", vol, "nosuchvol")
        assert (r.returncode, r.stdout) == (1, f"{vol}\n")
        assert r.stderr == "Error response from daemon: get nosuchvol: no such volume\n"
        r = berth("network", "rm", "nosuchnet")
        assert r.returncode == 1 and r.stderr.startswith("Error response from daemon: ")
        r = berth("network", "rm", "-f", "nosuchnet", net)
        assert (r.returncode, r.stdout, r.stderr) == (0, f"{net}\n", "")
        r = berth("volume", "ls", "--filter", "nosep")
        assert r.returncode == 125 and "bad format of filter (expected name=value)" in r.stderr
        r = berth("volume", "prune", input="n\n")
        assert r.returncode == 0
        assert r.stdout == ("WARNING! This will remove anonymous local volumes not used by at least one "
                            "container.\nAre you sure you want to continue? [y/N] ")
        r = berth("network", "prune", "--filter", "label=nosuch", input="yes\n")
        assert r.returncode == 0 and "Are you sure you want to continue? [y/N] " in r.stdout
        r = berth("container", "prune", input="\n")
        assert (r.returncode, r.stderr) == (1, "Error: container prune has been cancelled\n")
    finally:
        berth("volume", "rm", "-f", vol)
        berth("network", "rm", "-f", net)
