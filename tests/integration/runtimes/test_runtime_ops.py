"""External runtimes as an operator sees them: /info, --runtime by name, refusals, live restore
across kill -9 of berthd, and the cleanup after kill -9 of a shim (rootfs unmounted, the
runtime's state gone)."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.integration.daemon import Daemon

pytestmark = pytest.mark.root


def _runtime(berthd: Daemon) -> str:
    return json.loads(berthd.request("GET", "/info")[1])["DefaultRuntime"]


def _mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def test_info_lists_runtimes_and_bad_names_are_refused(docker, berthd):
    info = json.loads(berthd.request("GET", "/info")[1])
    rt = info["DefaultRuntime"]
    assert rt in ("runc", "crun") and "berth" in info["Runtimes"] and info["Runtimes"][rt]["path"]
    r = docker("run", "--rm", "--runtime", "nosuch", "busybox", "true")
    assert r.returncode == 125 and "unknown or invalid runtime name: nosuch" in r.stderr
    status, body = berthd.request("POST", "/containers/create", json.dumps(
        {"Image": "busybox", "HostConfig": {"Runtime": "nosuch"}}).encode(), {"Content-Type": "application/json"})
    assert status == 400 and json.loads(body)["message"] == "unknown or invalid runtime name: nosuch"
    # berth's own runtime by name, beside the default one
    r = docker("run", "--rm", "--runtime", "berth", "busybox", "sh", "-c", "echo own")
    assert (r.returncode, r.stdout) == (0, "own\n"), r.stderr
    cid = docker("create", "busybox", "true").stdout.strip()
    assert docker("inspect", "-f", "{{.HostConfig.Runtime}}", cid).stdout.strip() == rt
    docker("rm", cid)


def test_rootfs_mounted_while_running_and_gone_after(docker, berthd):
    cid = docker("run", "-d", "busybox", "sleep", "30").stdout.strip()
    rootfs = str(berthd.data_root / "containers" / cid / "rootfs")
    assert _mounted(rootfs)  # the engine mounted it on the host for the runtime
    assert docker("stop", "-t", "0", cid).returncode == 0
    assert not _mounted(rootfs)  # the shim unmounted it at exit
    assert not (berthd.exec_root / "runtimes" / _runtime(berthd) / cid).exists()
    docker("rm", cid)


def test_live_restore_across_kill9_of_berthd(docker, berthd):
    cid = docker("run", "-d", "busybox", "sh", "-c", "echo before; sleep 300").stdout.strip()
    pid = int(docker("inspect", "-f", "{{.State.Pid}}", cid).stdout)
    berthd.kill9()
    berthd.start()
    try:
        assert docker("inspect", "-f", "{{.State.Running}} {{.State.Pid}}", cid).stdout.split() == ["true", str(pid)]
        r = docker("exec", cid, "sh", "-c", "echo after; exit 3")
        assert (r.returncode, r.stdout) == (3, "after\n")
        assert docker("logs", cid).stdout == "before\n"
        assert docker("kill", cid).returncode == 0
        assert docker("wait", cid).stdout.strip() == "137"
    finally:
        docker("rm", "-f", cid)


def test_kill9_of_the_shim_is_cleaned_up(docker, berthd):
    cid = docker("run", "-d", "busybox", "sleep", "300").stdout.strip()
    rootfs = str(berthd.data_root / "containers" / cid / "rootfs")
    pid = int(docker("inspect", "-f", "{{.State.Pid}}", cid).stdout)
    ppid = int(next(line for line in open(f"/proc/{pid}/status") if line.startswith("PPid:")).split()[1])
    assert ppid in berthd.shim_pids()  # the runtime has exited: its container's init is the shim's
    os.kill(ppid, signal.SIGKILL)
    assert docker("wait", cid).returncode == 0
    deadline = time.monotonic() + 5
    while (_mounted(rootfs) or os.path.exists(f"/proc/{pid}")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _mounted(rootfs)
    assert not os.path.exists(f"/proc/{pid}/status") or "Z" in open(f"/proc/{pid}/status").read().split("State:")[1][:4]
    assert not (berthd.exec_root / "runtimes" / _runtime(berthd) / cid).exists()
    assert docker("rm", cid).returncode == 0


def test_daemon_json_runtimes_default_and_sighup_reload() -> None:
    """daemon.json's runtimes (with runtimeArgs) and default-runtime; a SIGHUP that adds a
    runtime reaches the next create, and /info shows it."""
    import shutil
    import subprocess

    from tests.integration.ops.test_daemon_config import ConfiguredDaemon
    runc = shutil.which("runc")
    if runc is None:
        pytest.fail("runc is not installed (Debian's runc package; .ci/run installs it)")
    d = ConfiguredDaemon({"runtimes": {"r1": {"path": runc, "runtimeArgs": ["--debug"]}}, "default-runtime": "r1"})
    d.start()
    try:
        d.import_busybox()

        def dk(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["/usr/local/bin/docker", *args], env=d.env, capture_output=True, text=True, timeout=60)
        r = dk("run", "--rm", "busybox", "sh", "-c", "echo r1")
        assert (r.returncode, r.stdout) == (0, "r1\n"), r.stderr
        assert "unknown or invalid runtime name: r2" in dk("run", "--rm", "--runtime", "r2", "busybox", "true").stderr
        d.write({"hosts": [d.host], "data-root": str(d.data_root), "exec-root": str(d.exec_root),
                 "runtimes": {"r1": {"path": runc}, "r2": {"path": runc}}, "default-runtime": "r1"})
        assert d.proc is not None
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "r2" not in json.loads(d.request("GET", "/info")[1])["Runtimes"] and time.monotonic() < deadline:
            time.sleep(0.05)
        r = dk("run", "--rm", "--runtime", "r2", "busybox", "sh", "-c", "echo r2")
        assert (r.returncode, r.stdout) == (0, "r2\n"), r.stderr
    finally:
        d.cleanup()
