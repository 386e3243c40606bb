"""The engine core through the real docker CLI against a real berthd (issue: engine core)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.root


def test_run_rm_echo(docker):
    r = docker("run", "--rm", "busybox", "echo", "hello")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello\n"


def test_run_streams_stdout_and_stderr_apart(docker):
    r = docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "out\n"
    assert r.stderr == "err\n"


def test_exit_code_propagates(docker):
    assert docker("run", "--rm", "busybox", "sh", "-c", "exit 3").returncode == 3


def test_command_not_found_is_127(docker):
    r = docker("run", "--rm", "busybox", "nosuchcmd")
    assert r.returncode == 127
    assert 'exec: "nosuchcmd": executable file not found in $PATH' in r.stderr


def test_not_executable_is_126(docker):
    r = docker("run", "--rm", "busybox", "/etc")
    assert r.returncode == 126
    assert "permission denied" in r.stderr


def test_create_start_prefix_ps(docker):
    name = "cs-prefix"
    cid = docker("create", "--name", name, "busybox", "sleep", "30").stdout.strip()
    assert len(cid) == 64
    ps = docker("ps", "-a", "--filter", f"name={name}", "--format", "{{.Status}}").stdout.strip()
    assert ps == "Created"
    r = docker("start", cid[:4])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == cid[:4]
    ps = docker("ps", "--filter", f"name={name}", "--format", "{{.ID}} {{.Status}}").stdout.strip()
    assert ps.startswith(cid[:12] + " Up ")
    assert docker("rm", "-f", name).returncode == 0
    assert docker("ps", "-a", "-q", "--filter", f"name={name}").stdout == ""


def test_stop_sleep_exits_137_in_about_a_second(docker):
    cid = docker("run", "-d", "busybox", "sleep", "60").stdout.strip()
    t0 = time.monotonic()
    assert docker("stop", "-t", "1", cid).returncode == 0
    took = time.monotonic() - t0
    assert 0.9 < took < 3.0, took
    assert docker("inspect", "-f", "{{.State.ExitCode}}", cid).stdout.strip() == "137"
    docker("rm", cid)


def test_pid1_hostname_and_no_host_processes(docker):
    r = docker("run", "--rm", "busybox", "sh", "-c", "echo $$; hostname; ls /proc | grep -c '^[0-9]'")
    pid, hostname, nprocs = r.stdout.split()
    assert pid == "1"
    assert len(hostname) == 12 and hostname != open("/etc/hostname").read().strip()
    assert int(nprocs) <= 3  # sh, ls, grep: nothing from the host
    r = docker("run", "--rm", "-h", "myhost", "busybox", "hostname")
    assert r.stdout.strip() == "myhost"


def test_env_workdir_user(docker):
    r = docker("run", "--rm", "-e", "FOO=bar", "-w", "/tmp/newdir", "-u", "nobody", "busybox",
               "sh", "-c", "echo $FOO; pwd; id -u; echo $PATH; echo $HOSTNAME")
    foo, pwd, uid, path, hostname = r.stdout.split()
    assert (foo, pwd, uid) == ("bar", "/tmp/newdir", "65534")
    assert path == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert len(hostname) == 12
    assert docker("run", "--rm", "-u", "1000:100", "busybox", "id").stdout.strip().startswith("uid=1000 gid=100")


def test_memory_limit_oom_kills_container_not_daemon(docker, berthd):
    r = docker("run", "--name", "oom", "-m", "16m", "--memory-swap", "16m", "busybox",
               "sh", "-c", "x=a; while true; do x=$x$x; done")
    assert r.returncode == 137, (r.returncode, r.stderr)
    assert docker("inspect", "-f", "{{.State.OOMKilled}}", "oom").stdout.strip() == "true"
    assert berthd.proc.poll() is None
    docker("rm", "oom")


def test_pids_limit_stops_fork_bomb(docker):
    r = docker("run", "--rm", "--pids-limit", "20", "busybox", "sh", "-c",
               "for i in $(seq 40); do sleep 5 & done; wait; echo done", timeout=60)
    assert "can't fork" in r.stderr or "Resource temporarily unavailable" in r.stderr, r.stderr


def test_cpu_and_memory_limits_in_cgroup(docker):
    cid = docker("run", "-d", "-m", "64m", "--cpus", "0.5", "--pids-limit", "100", "busybox", "sleep", "30").stdout.strip()
    try:
        mem = open(f"/sys/fs/cgroup/memory/berth/{cid}/memory.limit_in_bytes").read().strip()
        assert mem == str(64 * 1024 * 1024)
        quota = open(f"/sys/fs/cgroup/cpu/berth/{cid}/cpu.cfs_quota_us").read().strip()
        assert quota == "50000"
        assert open(f"/sys/fs/cgroup/pids/berth/{cid}/pids.max").read().strip() == "100"
    finally:
        docker("rm", "-f", cid)


@pytest.mark.parametrize("parked_for", [0.15, None])
def test_rm_returns_with_the_cgroup_gone(docker, berthd, parked_for):
    """As containerd's task delete: when the removal returns, the container's cgroup is gone in
    every hierarchy (kubelet removes the pod's cgroup right after RemovePodSandbox). A host
    process parked in the cgroup keeps the shim's rmdir busy: for 0.15 s (the shim removes the
    cgroup late), or until berthd kills what is left (past the shim's 0.4 s of retries, it
    gives up and berthd removes the cgroup). A removal that did not wait for either would find
    the cgroup still there."""
    import subprocess
    import threading
    cid = docker("run", "-d", "-m", "64m", "busybox", "sleep", "30").stdout.strip()
    dirs = [p for p in Path("/sys/fs/cgroup").glob(f"*/berth/{cid}")] + \
        [p for p in [Path(f"/sys/fs/cgroup/berth/{cid}")] if p.is_dir()]
    assert dirs
    parked = subprocess.Popen(["sleep", "30"])
    try:
        for d in dirs:  # in every hierarchy, as the container's own processes
            (d / "cgroup.procs").write_text(str(parked.pid))
        unpark = threading.Timer(parked_for or 0, lambda: [(d.parent.parent / "cgroup.procs").write_text(str(parked.pid))
                                                           for d in dirs])
        berthd.request("POST", f"/containers/{cid}/kill")
        assert berthd.request("POST", f"/containers/{cid}/wait")[0] == 200
        if parked_for:
            unpark.start()
        assert berthd.request("DELETE", f"/containers/{cid}")[0] == 204
        assert [p for p in dirs if p.exists()] == []
        if parked_for:
            unpark.join()
        else:
            assert parked.wait(5) == -9  # what was left in the cgroup was killed
    finally:
        parked.kill()
        parked.wait()


def test_logs_tail_timestamps_follow(docker):
    cid = docker("run", "-d", "busybox", "sh", "-c", "for i in 1 2 3; do echo line$i; done; echo err >&2").stdout.strip()
    docker("wait", cid)
    r = docker("logs", cid)
    assert r.stdout == "line1\nline2\nline3\n" and r.stderr == "err\n"
    assert docker("logs", "--tail", "1", cid).stderr == "err\n"
    ts = docker("logs", "-t", cid).stdout.splitlines()[0]
    assert ts.endswith(" line1") and ts[:4].isdigit() and "T" in ts
    cid2 = docker("run", "-d", "busybox", "sh", "-c", "echo a; sleep 1; echo b").stdout.strip()
    r = docker("logs", "-f", cid2)
    assert r.stdout == "a\nb\n"
    docker("rm", cid, cid2)


def test_ps_flags_and_filters(docker):
    a = docker("run", "-d", "--name", "psa", "-l", "k=v", "busybox", "sleep", "30").stdout.strip()
    b = docker("run", "--name", "psb", "busybox", "sh", "-c", "head -c 5000 /dev/zero > /f; exit 2").stdout
    try:
        q = docker("ps", "-q").stdout.split()
        assert a[:12] in q
        assert docker("ps", "-l", "-q").stdout.strip() == docker("inspect", "-f", "{{.Id}}", "psb").stdout.strip()[:12]
        assert docker("ps", "-a", "-n", "1", "--format", "{{.Names}}").stdout.strip() == "psb"
        assert docker("ps", "--filter", "label=k=v", "--format", "{{.Names}}").stdout.strip() == "psa"
        assert docker("ps", "-a", "--filter", "exited=2", "--format", "{{.Names}}").stdout.strip() == "psb"
        assert docker("ps", "-a", "--filter", "status=exited", "--filter", "name=psb", "-q").stdout.strip()
        assert docker("ps", "--no-trunc", "-q", "--filter", "name=psa").stdout.strip() == a
        assert docker("ps", "-a", "--filter", "ancestor=busybox", "-q").stdout.strip()
        table = docker("ps", "-s", "--filter", "name=psa").stdout
        assert "SIZE" in table.splitlines()[0] and "psa" in table
        assert 5000 <= int(docker("inspect", "-s", "-f", "{{.SizeRw}}", "psb").stdout) < 8192  # its writable layer
        del b
    finally:
        docker("rm", "-f", "psa", "psb")


def test_inspect_formats(docker):
    docker("create", "--name", "insp", "-l", "a=b", "--stop-signal", "SIGUSR1", "busybox", "echo", "x")
    try:
        assert docker("inspect", "-f", "{{.Config.StopSignal}} {{.State.Status}}", "insp").stdout.strip() == \
            "SIGUSR1 created"
        assert json.loads(docker("inspect", "-f", "{{json .Config.Labels}}", "insp").stdout) == {"a": "b"}
        data = json.loads(docker("inspect", "insp").stdout)
        assert data[0]["Name"] == "/insp" and data[0]["Path"] == "echo" and data[0]["Args"] == ["x"]
        r = docker("inspect", "nosuchthing")
        assert r.returncode == 1 and "No such object: nosuchthing" in r.stderr
    finally:
        docker("rm", "insp")


def test_kill_signal_wait_restart_rename_top(docker):
    cid = docker("run", "-d", "--name", "k1", "busybox", "sh", "-c",
                 "trap 'exit 42' USR1; while true; do sleep 0.1; done").stdout.strip()
    time.sleep(0.3)
    top = docker("top", "k1")
    assert top.returncode == 0 and "PID" in top.stdout and "sleep" in top.stdout or "sh -c" in top.stdout
    assert docker("kill", "-s", "USR1", "k1").returncode == 0
    assert docker("wait", "k1").stdout.strip() == "42"
    assert docker("rename", "k1", "k2").returncode == 0
    assert docker("inspect", "-f", "{{.Name}}", cid).stdout.strip() == "/k2"
    assert docker("restart", "-t", "1", "k2").returncode == 0
    assert docker("inspect", "-f", "{{.State.Running}}", "k2").stdout.strip() == "true"
    r = docker("kill", "k2")
    assert r.returncode == 0
    assert docker("wait", "k2").stdout.strip() == "137"
    r = docker("kill", "k2")
    assert r.returncode == 1 and "is not running" in r.stderr
    docker("rm", "k2")


def test_error_statuses(docker, berthd):
    docker("run", "-d", "--name", "busy1", "busybox", "sleep", "30")
    try:
        r = docker("run", "--name", "busy1", "busybox", "true")
        assert r.returncode == 125 and 'The container name "/busy1" is already in use' in r.stderr
        r = docker("rm", "busy1")
        assert r.returncode == 1 and "You cannot remove a running container" in r.stderr
        r = docker("rm", "nosuch")
        assert "No such container: nosuch" in r.stderr
        r = docker("create", "--name", "bad/name", "busybox")
        assert r.returncode != 0 and "Invalid container name" in r.stderr
        r = docker("run", "-m", "1m", "busybox", "true")
        assert r.returncode == 125 and "Minimum memory limit allowed is 6MB" in r.stderr
    finally:
        docker("rm", "-f", "busy1")
    status, body = berthd.request("POST", "/containers/create", b"{not json", {"Content-Type": "application/json"})
    assert status == 400 and "message" in json.loads(body)
    status, body = berthd.request("POST", "/containers/create", b'{"Image": 5}', {"Content-Type": "application/json"})
    assert status == 400 and "message" in json.loads(body)
    status, body = berthd.request("POST", "/containers/create", b'{"Image": "nosuchimage"}',
                                  {"Content-Type": "application/json"})
    assert status == 404 and json.loads(body)["message"] == "No such image: nosuchimage:latest"
    cid = json.loads(berthd.request("POST", "/containers/create", b'{"Image":"busybox","Cmd":["true"]}',
                                    {"Content-Type": "application/json"})[1])["Id"]
    assert berthd.request("DELETE", f"/containers/{cid}")[0] == 204
    status, body = berthd.request("POST", f"/containers/{cid}/start")
    assert status == 404 and json.loads(body)["message"] == f"No such container: {cid}"
    assert berthd.request("GET", "/_ping")[0] == 200


def test_ambiguous_prefix_is_an_error(berthd, busybox):
    ids = []
    for _ in range(40):
        ids.append(json.loads(berthd.request("POST", "/containers/create", b'{"Image":"busybox","Cmd":["true"]}',
                                             {"Content-Type": "application/json"})[1])["Id"])
    try:
        firsts = [i[0] for i in ids]
        dup = next(ch for ch in firsts if firsts.count(ch) > 1)
        status, body = berthd.request("GET", f"/containers/{dup}/json")
        assert status == 400 and "multiple IDs found with provided prefix" in json.loads(body)["message"]
    finally:
        for i in ids:
            berthd.request("DELETE", f"/containers/{i}")


def test_container_prune(docker):
    docker("run", "--name", "pr1", "busybox", "true")
    keep = docker("run", "-d", "--name", "pr2", "busybox", "sleep", "30").stdout.strip()
    r = docker("container", "prune", "-f")
    assert r.returncode == 0 and "Deleted Containers:" in r.stdout
    names = docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert "pr1" not in names and "pr2" in names
    docker("rm", "-f", keep)


def test_images_tag_history_rmi(docker):
    assert docker("tag", "busybox", "mytag/bb:v1").returncode == 0
    out = docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert "mytag/bb:v1" in out and "busybox:latest" in out
    hist = docker("history", "mytag/bb:v1").stdout
    assert "Imported from -" in hist
    r = docker("rmi", "mytag/bb:v1")
    assert r.returncode == 0 and "Untagged: mytag/bb:v1" in r.stdout
    r = docker("rmi", "nosuch:tag")
    assert r.returncode == 1 and "No such image: nosuch:tag" in r.stderr


def test_rmi_in_use_conflicts(docker):
    docker("tag", "busybox", "inuse:1")
    docker("create", "--name", "user1", "inuse:1", "true")
    try:
        r = docker("rmi", "inuse:1")
        # busybox:latest still names the image, so the tag alone goes
        assert r.returncode == 0 and "Untagged: inuse:1" in r.stdout
    finally:
        docker("rm", "user1")


def test_info_counts(docker):
    docker("create", "--name", "infoc", "busybox", "true")
    try:
        info = json.loads(docker("info", "--format", "{{json .}}").stdout)
        assert info["Containers"] >= 1 and info["Images"] >= 1
        assert info["Driver"] == "overlay2" and info["NCPU"] >= 1 and info["MemTotal"] > 0
        assert info["CgroupVersion"] in ("1", "2")
    finally:
        docker("rm", "infoc")



def test_cgroup_namespace_modes(docker):
    """Docker's --cgroupns: host by default on a cgroup v1 host, private on request (v2's default)."""
    from berth.runtime.cgroups import detect
    default = "private" if detect().version == 2 else "host"
    cid = docker("run", "-d", "busybox", "sleep", "30").stdout.strip()
    try:
        assert docker("inspect", "-f", "{{.HostConfig.CgroupnsMode}}", cid).stdout.strip() == default
        own = docker("exec", cid, "cat", "/proc/self/cgroup").stdout
        assert (f"/berth/{cid}" in own) == (default == "host"), own
    finally:
        docker("rm", "-f", cid)
    r = docker("run", "--rm", "--cgroupns", "private", "busybox", "cat", "/proc/self/cgroup")
    assert r.returncode == 0, r.stderr
    assert "/berth/" not in r.stdout and r.stdout.strip(), r.stdout  # the container's cgroup is its root
    r = docker("run", "--rm", "--cgroupns", "host", "busybox", "cat", "/proc/self/cgroup")
    assert "/berth/" in r.stdout, r.stdout
